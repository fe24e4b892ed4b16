"""judge: an LLM-as-judge evaluation service with domain packs.

The public face of the library. Heavy parts (the engine, which imports litellm) are
imported lazily on first use so that ``import judge`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from judge.datasets import Item, read_items
from judge.errors import JudgeError
from judge.judgments import Judgment, Status
from judge.rubrics import Rubric, load_rubric

__all__ = [
    "Item",
    "Judgment",
    "JudgeError",
    "Rubric",
    "Status",
    "__version__",
    "evaluate",
    "load_rubric",
    "read_items",
]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from judge.engine import evaluate

        return evaluate
    raise AttributeError(f"module 'judge' has no attribute {name!r}")
