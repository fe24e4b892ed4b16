"""Shared fixtures. Fixture modules live in tests/fixtures/, one per boundary."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.home",
    "tests.fixtures.provider",
    "tests.fixtures.store",
    "tests.fixtures.services",
]

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data" / "human-ratings"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def human_ratings_dir() -> Path:
    """The shared public human-rating data (DICES, K-QA); its absence is a failure."""
    assert SHARED_DATA.is_dir(), f"shared human-rating data missing at {SHARED_DATA}"
    return SHARED_DATA


# litellm must never reach the network on its own in tests.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
