"""Output helpers shared by the CLI commands: JSON for pipelines, rich for people."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (the stable machine-readable shape)."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    """Print a warning on stderr."""
    from rich.markup import escape

    # Messages carry rule names in brackets ("[exists]"): not rich markup.
    err_console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)
