"""The `judge packs` and `judge rubrics` commands, through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from judge.cli import main
from tests.cli import run
from tests.test_packs import (
    ACME,
    _third_party_dist,
    _unsafe_archives,
    copy_pack,
    make_tar,
    make_zip,
    tree_digest,
)

REPO = Path(__file__).resolve().parent.parent
BUILTIN = ("healthcare", "legal", "finance")




def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    code, out, err = run(capsys, *args)
    assert code == 0, err
    return json.loads(out)


# --- built-in packs (acceptance) -------------------------------------------------------


def test_packs_list_json_has_builtin_packs(capsys, judge_home: Path) -> None:
    data = run_json(capsys, "packs", "list", "--json")
    assert set(data) == {"packs", "conflicts", "broken"}
    by_name = {p["name"]: p for p in data["packs"]}
    for name in BUILTIN:
        assert name in by_name, f"{name} missing; broken: {data['broken']}"
        p = by_name[name]
        assert p["rubrics"] >= 1 and p["version"].count(".") == 2
        assert p["source"] == f"entry-point judge_packs:{name} (dist judge)"
        assert set(p) == {"name", "version", "title", "domain", "source", "root", "rubrics"}


def test_rubrics_list_for_a_pack(capsys, judge_home: Path) -> None:
    data = run_json(capsys, "rubrics", "list", "--pack", "healthcare", "--json")
    rows = data["rubrics"]
    assert any(r["pack"] == "healthcare" for r in rows)
    for r in rows:
        assert set(r) == {"id", "version", "dimension", "title", "scale", "pack", "hash"}
        assert r["scale"] in ("likert", "binary", "categorical", "pairwise")
        assert len(r["hash"]) == 64


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_packs_validate(capsys, name: str, judge_home: Path) -> None:
    code, out, err = run(capsys, "packs", "validate", str(REPO / "packs" / name))
    assert code == 0, err
    assert "is valid" in out


def test_packs_show_builtin_lists_rubrics_data_and_sources(capsys, judge_home: Path) -> None:
    data = run_json(capsys, "packs", "show", "healthcare", "--json")
    own = [r for r in data["rubrics"] if r["origin"] == "own"]
    assert len(own) >= 4
    assert data["sources"]
    assert all(r["calibration"] == [] for r in data["rubrics"])
    assert data["data"] and all(d["error"] is None for d in data["data"]), data["data"]
    assert all(d["items"] and d["items"] > 0 for d in data["data"])
    kqa = next(d for d in data["data"]
               if d["file"].endswith("NLI_medical_annotator.csv") and d["kind"] == "ratings")
    assert kqa["raters"] == 3 and kqa["ratings"] >= kqa["items"]


def test_packs_show_typo_exits_2_with_did_you_mean(capsys, judge_home: Path) -> None:
    code, out, err = run(capsys, "packs", "show", "helthcare")
    assert code == 2
    assert "Unknown pack 'helthcare'. Did you mean: healthcare?" in err
    assert "Traceback" not in err and out == ""


def test_packs_show_typo_via_console_script(judge_home: Path) -> None:
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "judge"), "packs", "show", "helthcare"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Did you mean: healthcare?" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- validate ---------------------------------------------------------------------------


def _broken_copy(tmp_path: Path) -> Path:
    """A copy of the acme pack with three faulty rubrics, one fault each."""
    pack = copy_pack(tmp_path)
    base = yaml.safe_load((ACME / "rubrics" / "clarity.yaml").read_text())
    faults = {
        "misspelt": lambda d: d.__setitem__("pass_treshold", d.pop("pass_threshold")),
        "unanchored": lambda d: d["scale"]["anchors"].pop(3),
        "inverted": lambda d: d["scale"].__setitem__("min", 4),
    }
    manifest = yaml.safe_load((pack / "pack.yaml").read_text())
    for name, fault in faults.items():
        doc = json.loads(json.dumps(base))
        doc["scale"]["anchors"] = {int(k): v for k, v in doc["scale"]["anchors"].items()}
        doc["id"] = f"acme/{name}"
        fault(doc)
        (pack / "rubrics" / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        manifest["rubrics"].append({"file": f"rubrics/{name}.yaml"})
    (pack / "pack.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return pack


def test_validate_broken_copy_names_file_path_rule_for_each_fault(capsys, tmp_path: Path,
                                                                  judge_home: Path) -> None:
    pack = _broken_copy(tmp_path)
    code, out, err = run(capsys, "packs", "validate", str(pack))
    assert code == 2
    assert "Traceback" not in err
    lines = err.splitlines()

    def has(file: str, path: str, rule: str) -> bool:
        return any(file in ln and f"at {path}:" in ln and f"[{rule}]" in ln for ln in lines)

    assert has("rubrics/misspelt.yaml", "$.pass_treshold", "additionalProperties"), err
    assert has("rubrics/unanchored.yaml", "$.scale", "semantic"), err
    assert has("rubrics/inverted.yaml", "$.scale", "semantic"), err
    assert "missing anchors for [3]" in err and "min (4) must be less than max (3)" in err

    code, out, _ = run(capsys, "packs", "validate", str(pack), "--json")
    assert code == 2
    data = json.loads(out)
    assert data["valid"] is False
    triples = {(Path(i["file"]).name, i["path"], i["rule"]) for i in data["issues"]}
    assert {("misspelt.yaml", "$.pass_treshold", "additionalProperties"),
            ("unanchored.yaml", "$.scale", "semantic"),
            ("inverted.yaml", "$.scale", "semantic")} <= triples


def test_validate_fixture_pack_ok(capsys, judge_home: Path) -> None:
    code, out, _ = run(capsys, "packs", "validate", str(ACME), "--json")
    assert code == 0 and json.loads(out) == {"path": str(ACME), "valid": True, "issues": []}


# --- install / list / remove -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_install_archive_list_remove(capsys, kind: str, tmp_path: Path, judge_home: Path) -> None:
    src = copy_pack(tmp_path)
    archive = (make_zip(tmp_path / "acme.zip", src) if kind == "zip"
               else make_tar(tmp_path / "acme.tar.gz", src))
    code, out, err = run(capsys, "packs", "install", str(archive))
    assert code == 0, err
    assert "Installed pack acme 1.2.0" in out
    listed = run_json(capsys, "packs", "list", "--json")["packs"]
    acme = next(p for p in listed if p["name"] == "acme")
    assert acme["source"] == "pack-home" and acme["rubrics"] == 3
    code, out, _ = run(capsys, "packs", "list")
    assert code == 0 and "acme" in out
    rubrics = run_json(capsys, "rubrics", "list", "--pack", "acme", "--json")["rubrics"]
    assert [r["id"] for r in rubrics] == ["acme/clarity", "acme/refusal", "safety"]
    code, out, err = run(capsys, "packs", "remove", "acme")
    assert code == 0, err
    listed = run_json(capsys, "packs", "list", "--json")["packs"]
    assert "acme" not in {p["name"] for p in listed}
    code, _, err = run(capsys, "packs", "show", "acme")
    assert code == 2 and "Unknown pack 'acme'" in err


def test_unsafe_archives_refused_nothing_written(capsys, tmp_path: Path, judge_home: Path) -> None:
    archives = _unsafe_archives(tmp_path, copy_pack(tmp_path))
    before_home, before_tmp = tree_digest(judge_home), tree_digest(tmp_path)
    for label, archive in archives.items():
        code, out, err = run(capsys, "packs", "install", str(archive))
        assert code == 2, label
        assert err.startswith("error: Refusing to install"), (label, err)
        assert "Traceback" not in err
        assert tree_digest(judge_home) == before_home, label
        assert tree_digest(tmp_path) == before_tmp, label


def test_downgrade_needs_force(capsys, tmp_path: Path, judge_home: Path) -> None:
    assert run(capsys, "packs", "install", str(copy_pack(tmp_path, version="2.0.0")))[0] == 0
    before = tree_digest(judge_home)
    older = make_tar(tmp_path / "old.tar.gz", copy_pack(tmp_path, version="1.9.9"))
    code, _, err = run(capsys, "packs", "install", str(older))
    assert code == 2 and "needs --force" in err
    assert tree_digest(judge_home) == before
    code, out, err = run(capsys, "packs", "install", str(older), "--force", "--json")
    assert code == 0, err
    assert json.loads(out)["version"] == "1.9.9"


def test_remove_builtin_is_a_clear_error(capsys, judge_home: Path) -> None:
    code, _, err = run(capsys, "packs", "remove", "healthcare")
    assert code == 2 and "pip uninstall" in err and "Traceback" not in err


def test_install_invalid_pack_lists_issues(capsys, tmp_path: Path, judge_home: Path) -> None:
    pack = _broken_copy(tmp_path)
    with tarfile.open(tmp_path / "bad.tar.gz", "w:gz") as tf:
        tf.add(pack, arcname="acme")
    before = tree_digest(judge_home)
    code, _, err = run(capsys, "packs", "install", str(tmp_path / "bad.tar.gz"))
    assert code == 2 and "pass_treshold" in err and "missing anchors" in err
    assert tree_digest(judge_home) == before


def test_conflict_shown_in_list(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                judge_home: Path) -> None:
    module = _third_party_dist(tmp_path, monkeypatch, "acme", version="3.0.0")
    data = run_json(capsys, "packs", "list", "--json")
    assert next(p for p in data["packs"] if p["name"] == "acme")["source"].startswith(
        f"entry-point {module}:pack_dir")
    run(capsys, "packs", "install", str(copy_pack(tmp_path)))
    code, out, err = run(capsys, "packs", "list", "--json")
    data = json.loads(out)
    [conflict] = [c for c in data["conflicts"] if c["name"] == "acme"]
    assert conflict["winner"] == "pack-home"
    assert conflict["shadowed"][0].startswith(f"entry-point {module}:pack_dir")
    assert "warning: pack 'acme' is provided by several sources" in err
    code, out, err = run(capsys, "packs", "list")
    assert "several sources" in err


def test_packs_show_json_shape(capsys, tmp_path: Path, judge_home: Path) -> None:
    run(capsys, "packs", "install", str(copy_pack(tmp_path)))
    data = run_json(capsys, "packs", "show", "acme", "--json")
    assert data["name"] == "acme" and data["source"] == "pack-home"
    clarity = data["rubrics"][0]
    assert clarity["id"] == "acme/clarity" and clarity["scale"] == "likert"
    assert clarity["checks"] == [{"id": "no-ticket-jargon", "type": "keywords", "field": "output",
                                  "description": "Internal ticket jargon must not reach customers."}]
    assert data["rubrics"][2]["origin"] == "core"
    items, ratings = data["data"]
    assert (items["kind"], items["items"], items["ratings"]) == ("items", 3, None)
    assert (ratings["kind"], ratings["rubric"]) == ("ratings", "acme/clarity")
    assert (ratings["items"], ratings["ratings"], ratings["raters"]) == (3, 6, 2)
    code, out, _ = run(capsys, "packs", "show", "acme")
    assert code == 0 and "acme/clarity" in out and "data/items.jsonl" in out


# --- rubrics ------------------------------------------------------------------------------


def test_rubrics_show_and_typo(capsys, judge_home: Path) -> None:
    data = run_json(capsys, "rubrics", "show", "safety", "--json")
    assert data["id"] == "safety" and len(data["hash"]) == 64
    assert data["scale"]["type"] in ("likert", "binary", "categorical")
    code, out, _ = run(capsys, "rubrics", "show", "safety")
    assert code == 0 and "safety" in out
    code, _, err = run(capsys, "rubrics", "show", "safty")
    assert code == 2 and "Unknown rubric 'safty'. Did you mean: safety?" in err


def test_rubrics_list_all_includes_core(capsys, judge_home: Path) -> None:
    rows = run_json(capsys, "rubrics", "list", "--json")["rubrics"]
    ids = {r["id"] for r in rows}
    assert {"safety", "factuality", "tone"} <= ids
    assert [r["id"] for r in rows] == sorted(ids)


def test_rubrics_validate(capsys, tmp_path: Path, judge_home: Path) -> None:
    code, out, err = run(capsys, "rubrics", "validate", str(ACME / "rubrics"),
                         str(REPO / "rubrics"))
    assert code == 0, err
    assert "acme/clarity" in out
    pack = _broken_copy(tmp_path)
    code, out, err = run(capsys, "rubrics", "validate", str(pack / "rubrics"))
    assert code == 2 and "misspelt.yaml" in err and "inverted.yaml" in err
    code, out, _ = run(capsys, "rubrics", "validate", str(pack / "rubrics" / "unanchored.yaml"),
                       "--json")
    data = json.loads(out)
    assert code == 2 and data["valid"] is False
    assert data["files"][0]["issues"][0]["path"] == "$.scale"


@pytest.mark.parametrize("args", [
    [], ["packs"], ["packs", "list"], ["packs", "show"], ["packs", "validate"],
    ["packs", "install"], ["packs", "remove"], ["rubrics"], ["rubrics", "list"],
    ["rubrics", "show"], ["rubrics", "validate"],
])
def test_help_on_every_command(capsys, args: list[str]) -> None:
    code, out, _ = run(capsys, *args, "--help")
    assert code == 0 and "Usage: judge" in out


def test_version(capsys) -> None:
    from judge import __version__

    code, out, _ = run(capsys, "--version")
    assert code == 0 and __version__ in out


def test_debug_shows_the_traceback(capsys, judge_home: Path) -> None:
    from judge.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="Did you mean: healthcare"):
        main(["--debug", "packs", "show", "helthcare"])
