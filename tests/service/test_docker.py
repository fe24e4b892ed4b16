"""docker/: the compose file and the Dockerfile agree with the settings the code reads.

Docker does not run on the development machines; this parses the files instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import click
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _env_read_by_code() -> set[str]:
    """Every environment variable judge/ and tasks/ read by name."""
    names: set[str] = set()
    pattern = re.compile(r"""(?:environ(?:\.get)?\(|environ\[|_env_float\()\s*["']([A-Z][A-Z0-9_]+)["']""")
    for path in [*REPO.joinpath("judge").rglob("*.py"), *REPO.joinpath("tasks").rglob("*.py")]:
        names |= set(pattern.findall(path.read_text()))
    return names


def test_services_and_their_roles(compose):
    services = compose["services"]
    assert set(services) == {"redis", "postgres", "mlflow", "api", "worker"}
    assert services["api"]["command"][:2] == ["judge", "serve"]
    assert services["worker"]["command"][:2] == ["judge", "worker"]
    # `docker compose up --scale worker=4`: no fixed name or host port on the worker
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    for name in ("api", "worker", "mlflow"):
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"
        assert (DOCKER / services[name]["build"]["context"] / "docker" / "Dockerfile").is_file()


def test_environment_matches_the_settings_the_code_reads(compose, monkeypatch, tmp_path):
    from judge.config import get_settings
    from judge.service import ServiceSettings

    read = _env_read_by_code()
    core = {"JUDGE_BROKER_URL", "JUDGE_DATABASE_URL", "MLFLOW_TRACKING_URI", "JUDGE_HOME"}
    assert core <= read
    for name in ("api", "worker"):
        env = compose["services"][name]["environment"]
        assert core <= set(env), name
        unknown = {k for k in env if k.startswith("JUDGE_")} - read
        assert not unknown, f"{name} sets variables nothing reads: {unknown}"
        for key, value in env.items():
            if key in core or key.startswith("JUDGE_"):
                monkeypatch.setenv(key, str(value))
        assert env["JUDGE_HOME"] == "/data/judge"  # the image's volume
        monkeypatch.setenv("JUDGE_HOME", str(tmp_path))  # not creatable here
        settings = get_settings()
        assert settings.broker_url == env["JUDGE_BROKER_URL"]
        assert settings.database_url == env["JUDGE_DATABASE_URL"]
        assert settings.mlflow_tracking_uri == env["MLFLOW_TRACKING_URI"]
        ServiceSettings.from_env()  # the tuning values parse and are consistent
    env = compose["services"]["worker"]["environment"]
    hosts = {urlparse(env[k]).hostname for k in
             ("JUDGE_BROKER_URL", "JUDGE_DATABASE_URL", "MLFLOW_TRACKING_URI")}
    assert hosts == {"redis", "postgres", "mlflow"}
    pg = compose["services"]["postgres"]["environment"]
    db = urlparse(env["JUDGE_DATABASE_URL"])
    assert (db.username, db.password, db.path.lstrip("/")) == (
        pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    assert "5000" in compose["services"]["mlflow"]["command"]


def test_commands_are_real_cli_options(compose):
    from judge.cli.service_cmd import serve, worker

    def options(cmd: click.Command) -> set[str]:
        return {o for p in cmd.params for o in getattr(p, "opts", [])}

    for service, cmd in (("api", serve), ("worker", worker)):
        args = compose["services"][service]["command"][2:]
        assert {a for a in args if a.startswith("--")} <= options(cmd)


def test_dockerfile_installs_the_project_as_a_non_root_user():
    text = (DOCKER / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0].startswith("FROM python:3.1")
    assert any(ln.startswith("RUN pip install .") for ln in lines)
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    copied = {ln.split()[1] for ln in lines if ln.startswith("COPY ")}
    for needed in ("judge", "tasks", "packs", "rubrics", "pyproject.toml"):
        assert any(c.startswith(needed) for c in copied), needed
    assert "JUDGE_HOME=/data/judge" in text
    assert '"judge", "serve"' in text
