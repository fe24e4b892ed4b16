"""Running the real ``judge`` entry point in-process, as tests do everywhere."""

from __future__ import annotations

import pytest

from judge.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``judge ARGS`` through :func:`judge.cli.main`; return (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """:func:`run` with the arguments as a list first."""
    return run(capsys, *args)
