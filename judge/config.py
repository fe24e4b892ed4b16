"""Settings read from the environment, at call time so tests and workers can change them.

| variable | meaning | default |
| --- | --- | --- |
| ``JUDGE_HOME`` | where the embedded stores and installed packs live | ``~/.judge`` |
| ``JUDGE_DATABASE_URL`` | SQLAlchemy URL of the store | SQLite ``$JUDGE_HOME/judge.db`` |
| ``MLFLOW_TRACKING_URI`` | MLflow tracking store | SQLite ``$JUDGE_HOME/mlflow.db`` |
| ``JUDGE_BROKER_URL`` | Celery broker (Redis) | unset: in-process execution |
| ``JUDGE_MODEL`` | default judge model (a litellm model string) | unset |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BROKER_URL = "redis://localhost:6379/0"


@dataclass(frozen=True)
class Settings:
    """A snapshot of the environment's settings."""

    home: Path
    database_url: str
    mlflow_tracking_uri: str
    broker_url: str | None
    judge_model: str | None

    @property
    def pack_home(self) -> Path:
        """Where ``judge packs install`` puts data-only packs."""
        return self.home / "packs"


def judge_home() -> Path:
    """The judge home directory (created on first use)."""
    home = Path(os.environ.get("JUDGE_HOME") or Path.home() / ".judge").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def get_settings() -> Settings:
    """Read the settings from the environment now."""
    home = judge_home()
    return Settings(
        home=home,
        database_url=os.environ.get("JUDGE_DATABASE_URL") or f"sqlite:///{home / 'judge.db'}",
        mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{home / 'mlflow.db'}",
        broker_url=os.environ.get("JUDGE_BROKER_URL") or None,
        judge_model=os.environ.get("JUDGE_MODEL") or None,
    )
