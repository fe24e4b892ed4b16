"""``judge worker``, ``judge serve`` and ``judge tokens``: run the service's processes and
issue API tokens."""

from __future__ import annotations

import os
import sys

import click

from judge.cli._output import console, emit_json
from judge.errors import JudgeError

#: The Celery application, by name (module:attribute), as `celery -A` takes it.
CELERY_APP = "tasks.celery:app"


@click.command()
@click.option("--concurrency", "-c", default=4, show_default=True, type=int,
              help="Chunks this worker runs at once (threads sharing one event loop).")
@click.option("--pool", type=click.Choice(["threads", "solo", "prefork"]), default="threads",
              show_default=True,
              help="Celery pool. threads (default) suits chunks that wait on HTTP; prefork "
                   "also enforces Celery's soft/hard time limits (chunks have their own).")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--queue", "-Q", default=None, help="Queue to consume (default $JUDGE_QUEUE or judge).")
def worker(concurrency: int, pool: str, loglevel: str, queue: str | None) -> None:
    """Start a Celery worker on the judge queue (broker: $JUDGE_BROKER_URL).

    Every worker runs each chunk's judge calls with asyncio on one event loop per
    process, shares the Redis rate limit, and sweeps up chunks left by lost workers.
    """
    if concurrency < 1:
        raise JudgeError(f"--concurrency must be at least 1, got {concurrency}.")
    from judge.service import ServiceSettings

    settings = ServiceSettings.from_env()
    # The Celery app lives in tasks/, above the library: it is named, never imported here
    # (judge/ does not import tasks/). exec keeps this process's pid for the worker.
    argv = [sys.executable, "-m", "celery", "-A", CELERY_APP, "worker",
            "-Q", queue or settings.queue, "-P", pool, "-c", str(concurrency),
            "--loglevel", loglevel, "-n", f"judge-{os.getpid()}@%h",
            # Faster start, and nothing the chunks need: they coordinate through the store.
            "--without-gossip", "--without-mingle"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve the HTTP API (jobs on the workers with $JUDGE_BROKER_URL, else in-process)."""
    import uvicorn

    from judge.api import create_app

    uvicorn.run(create_app(), host=host, port=port, log_level="info")


@click.group()
def tokens() -> None:
    """Create, list and revoke API tokens (stored hashed; shown once)."""


@tokens.command("create")
@click.option("--role", required=True,
              type=click.Choice(["admin", "submitter", "rater", "viewer"]))
@click.option("--name", default=None, help="Who or what the token is for.")
@click.option("--json", "as_json", is_flag=True)
def tokens_create(role: str, name: str | None, as_json: bool) -> None:
    """Create a token with ROLE and print it once."""
    from judge.store import Store

    with Store.open() as store:
        issued = store.create_token(role, name or f"{role}-token")
    if as_json:
        emit_json(issued.model_dump(mode="json"))
        return
    console.print(f"token for {issued.name} ({issued.role}), shown once, store it now:")
    click.echo(issued.token)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True)
def tokens_list(as_json: bool) -> None:
    """List tokens (never their values)."""
    from judge.store import Store

    with Store.open() as store:
        rows = store.list_tokens()
    if as_json:
        emit_json([t.model_dump(mode="json") for t in rows])
        return
    for t in rows:
        console.print(f"{t.id}  {t.role:<9} {t.name}  "
                      f"{'revoked ' + str(t.revoked_at) if t.revoked_at else 'active'}")


@tokens.command("revoke")
@click.argument("token_id")
def tokens_revoke(token_id: str) -> None:
    """Revoke the token with TOKEN_ID."""
    from judge.store import Store

    with Store.open() as store:
        if not store.revoke_token(token_id):
            raise JudgeError(f"Unknown or already revoked token id '{token_id}'. "
                             "See `judge tokens list`.")
    console.print(f"revoked {token_id}")
