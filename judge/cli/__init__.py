"""The ``judge`` command line.

Subcommands live one module per group in this package and are imported lazily, so
``judge --help`` stays fast and ``judge packs list`` never imports litellm or MLflow.
A :class:`~judge.errors.JudgeError` prints one line and exits with its code (2 for a
user error); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from judge import __version__
from judge.errors import JudgeError

# command name -> (module in judge.cli, attribute)
_COMMANDS: dict[str, tuple[str, str]] = {
    "packs": ("packs_cmd", "packs"),
    "rubrics": ("rubrics_cmd", "rubrics"),
    "run": ("run_cmd", "run"),
    "submit": ("jobs_cmd", "submit"),
    "jobs": ("jobs_cmd", "jobs"),
    "worker": ("service_cmd", "worker"),
    "serve": ("service_cmd", "serve"),
    "tokens": ("service_cmd", "tokens"),
    "ratings": ("ratings_cmd", "ratings"),
    "judgments": ("ratings_cmd", "judgments"),
    "calibrate": ("calibrate_cmd", "calibrate"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        present = [
            name for name, (mod, _) in _COMMANDS.items()
            if importlib.util.find_spec(f"judge.cli.{mod}") is not None
        ]
        return sorted(set(present) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in _COMMANDS:
            return None
        mod, attr = _COMMANDS[cmd_name]
        if importlib.util.find_spec(f"judge.cli.{mod}") is None:
            return None
        return getattr(importlib.import_module(f"judge.cli.{mod}"), attr)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            from judge.errors import UnknownNameError

            raise click.UsageError(str(UnknownNameError("command", name, self.list_commands(ctx))))
        return super().resolve_command(ctx, args)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="judge")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """judge: grade LLM outputs with calibrated judge models and domain packs."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI, turning JudgeErrors into one-line exits."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rc = cli.main(args=argv, prog_name="judge", standalone_mode=False)
    except JudgeError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    # Without standalone mode click returns ctx.exit()'s code instead of exiting.
    if isinstance(rc, int) and rc:
        sys.exit(rc)
