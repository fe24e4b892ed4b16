"""Dependencies point down: the library never imports the Celery tasks above it."""

from __future__ import annotations

import ast
from pathlib import Path

JUDGE = Path(__file__).resolve().parent.parent / "judge"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_judge_never_imports_tasks() -> None:
    offenders = {
        str(path.relative_to(JUDGE.parent)): sorted(n for n in _imports(path)
                                                    if n == "tasks" or n.startswith("tasks."))
        for path in JUDGE.rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}


def test_the_check_sees_imports() -> None:
    # The walker must find a real import, or the test above could pass vacuously.
    assert "judge.errors" in _imports(JUDGE / "cli" / "service_cmd.py")
