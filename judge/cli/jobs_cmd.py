"""``judge submit`` and ``judge jobs``: queue a job (on the workers with
``JUDGE_BROKER_URL``, else in this process) and follow, read, cancel or re-log it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from judge.cli._output import console, emit_json, warn
from judge.cli.run_cmd import (
    build_judges,
    check_gates,
    judge_options,
    parse_fail_under,
    print_summary,
)

TERMINAL = ("succeeded", "failed", "cancelled", "budget_exceeded")


def _store() -> Any:
    from judge.store import Store

    return Store.open()


def _wait(store: Any, job_id: str, *, show_bar: bool, timeout: float | None = None) -> Any:
    """Poll the store until the job ends (sweeping its lost chunks on the way)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from judge.client import Client

    handle = Client(store=store).job(job_id)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True,
                  disable=not show_bar) as bar:
        job = store.get_job(job_id)
        task = bar.add_task(f"job {job_id[:8]}", total=job.total_units or None)

        def progress(state: dict[str, Any]) -> None:
            bar.update(task, completed=state["done_units"],
                       description=f"job {job_id[:8]} {state['status']}")

        handle.wait(timeout=timeout, poll=0.5, on_progress=progress)
    return store.get_job(job_id)


def _report(job: Any, as_json: bool, gates: list[tuple[str, str, float]] | None = None) -> None:
    from judge.client import job_view

    summary = (job.summary or {}).get("rubrics", {})
    failed = check_gates(summary, gates) if gates and job.status == "succeeded" else []
    if as_json:
        emit_json({**job_view(job), "gates_failed": failed})
    else:
        if summary:
            print_summary(summary, title=f"job {job.id}")
        console.print(f"status {job.status}: {job.done_units}/{job.total_units} units, "
                      f"{job.error_units} errors, {job.calls} provider calls, "
                      f"${job.cost_usd:.4f}; MLflow run: {job.mlflow_run_id or '-'}")
        if job.error:
            warn(job.error)
        for f in failed:
            console.print(f"[red]gate failed:[/red] {f}")
    if failed or job.status in ("failed", "budget_exceeded"):
        raise SystemExit(1)


@click.command()
@judge_options
@click.option("--wait", "wait_", is_flag=True, help="Wait for the job, with a progress bar.")
@click.option("--idempotency-key", help="Resubmitting the same spec with this key returns "
                                        "the existing job.")
@click.option("--max-cost", type=float, help="Stop the job (budget_exceeded) past this USD cost.")
@click.option("--max-calls", type=int, help="Stop the job (budget_exceeded) past this many calls.")
@click.option("--tpm", type=int, help="Tokens per minute allowed per judge model (shared).")
@click.option("--no-mlflow", is_flag=True, help="Do not log the finished job to MLflow.")
@click.option("--fail-under", "fail_under", multiple=True,
              help="With --wait: exit 1 if RUBRIC's mean (or RUBRIC:pass_rate) is below VALUE.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def submit(dataset: Path, pack: str | None, rubric_ids: tuple[str, ...],
           judge_models: tuple[str, ...], api_base: str | None, samples: int,
           temperature: float, max_tokens: int, timeout: float, max_attempts: int,
           rpm: int | None, concurrency: int, jury: str, mapping: tuple[str, ...],
           experiment: str, no_cache: bool, wait_: bool, idempotency_key: str | None,
           max_cost: float | None, max_calls: int | None, tpm: int | None, no_mlflow: bool,
           fail_under: tuple[str, ...], as_json: bool) -> None:
    """Queue a job grading DATASET: on the Celery workers when $JUDGE_BROKER_URL is set,
    else run it here. Prints the job id (or, with --wait, the summary like `judge run`).

    \b
    --json prints the job: {"id", "status", "total_units", "done_units", "error_units",
      "calls", "cost_usd", "summary", "mlflow_run_id", "created", "gates_failed", ...}
    """
    from judge import service
    from judge.config import get_settings
    from judge.datasets import dataset_hash, read_items

    gates = parse_fail_under(fail_under)
    items = read_items(dataset, list(mapping) or None)
    rubrics = service.resolve_rubrics(pack, rubric_ids)
    judges = build_judges(judge_models, api_base, temperature, max_tokens, timeout,
                          max_attempts, rpm)
    spec = service.make_spec(
        dataset=str(dataset), dataset_hash=dataset_hash(dataset), pack=pack, rubrics=rubrics,
        judges=judges, samples=samples, concurrency=concurrency, jury=jury,
        use_cache=not no_cache, experiment=experiment, tpm=tpm, track=not no_mlflow,
        budget=service.Budget(max_cost_usd=max_cost, max_calls=max_calls))
    store = _store()
    broker = get_settings().broker_url
    # Without a broker the job runs here, in the foreground: there is nobody else to run it.
    job, created = service.submit(store, spec, items, idempotency_key=idempotency_key,
                                  background=False if not broker else True)
    if not created and not as_json:
        console.print(f"idempotency key '{idempotency_key}' already names job {job.id}")
    if wait_ and not job.status.terminal:
        job = _wait(store, job.id, show_bar=not as_json and console.is_terminal)
    if wait_ or job.status.terminal:
        if as_json:
            from judge.client import job_view

            summary = (job.summary or {}).get("rubrics", {})
            failed = check_gates(summary, gates) if gates and job.status == "succeeded" else []
            emit_json({**job_view(job), "created": created, "gates_failed": failed})
            if failed or job.status in ("failed", "budget_exceeded"):
                raise SystemExit(1)
            return
        _report(job, False, gates)
        return
    if as_json:
        from judge.client import job_view

        emit_json({**job_view(job), "created": created})
    else:
        console.print(f"queued job {job.id} ({job.total_units} units); follow it with "
                      f"`judge jobs wait {job.id}`")
        click.echo(job.id)


@click.group()
def jobs() -> None:
    """List, follow, read and cancel jobs in the store ($JUDGE_DATABASE_URL)."""


@jobs.command("list")
@click.option("--status", type=click.Choice(TERMINAL + ("queued", "running")))
@click.option("--limit", default=20, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True)
def list_jobs(status: str | None, limit: int, as_json: bool) -> None:
    """The newest jobs."""
    from rich.table import Table

    from judge.client import job_view

    rows = _store().list_jobs(limit=limit, status=status)
    if as_json:
        emit_json([job_view(j) for j in rows])
        return
    table = Table(title="jobs")
    for col in ("id", "status", "units", "errors", "cost $", "created", "dataset"):
        table.add_column(col, no_wrap=col == "id")
    for j in rows:
        table.add_row(j.id, str(j.status), f"{j.done_units}/{j.total_units}", str(j.error_units),
                      f"{j.cost_usd:.4f}", j.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                      str(j.spec.get("dataset", "")))
    console.print(table)


@jobs.command("status")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def status(job_id: str, as_json: bool) -> None:
    """A job's status, counters and summary."""
    from judge.client import job_view

    job = _store().get_job(job_id)
    if as_json:
        emit_json(job_view(job))
        return
    _report(job, False)


@jobs.command("wait")
@click.argument("job_id")
@click.option("--timeout", type=float, help="Give up (exit 2) after this many seconds.")
@click.option("--json", "as_json", is_flag=True)
def wait(job_id: str, timeout: float | None, as_json: bool) -> None:
    """Wait for a job to end, re-dispatching chunks lost with a worker; print its summary."""
    store = _store()
    job = _wait(store, job_id, show_bar=not as_json and console.is_terminal, timeout=timeout)
    _report(job, as_json)


@jobs.command("results")
@click.argument("job_id")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the judgments as JSONL here (default: stdout).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array instead of JSONL.")
def results(job_id: str, out: Path | None, as_json: bool) -> None:
    """Every stored judgment of a job, streamed as JSONL."""
    store = _store()
    store.get_job(job_id)
    rows = (j.model_dump(mode="json") for j in store.iter_judgments(job_id))
    if as_json and out is None:
        emit_json(list(rows))
        return
    if out is None:
        for r in rows:
            click.echo(json.dumps(r, ensure_ascii=False))
        return
    n = 0
    with out.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    if as_json:
        emit_json({"job_id": job_id, "judgments": n, "out": str(out)})
    else:
        console.print(f"wrote {n} judgments to {out}")


@jobs.command("cancel")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def cancel(job_id: str, as_json: bool) -> None:
    """Cancel a job: remaining chunks stop, finished judgments stay."""
    from judge.client import job_view
    from judge.service import cancel_job

    job = cancel_job(_store(), job_id)
    if as_json:
        emit_json(job_view(job))
    else:
        console.print(f"job {job.id}: {job.status} ({job.done_units}/{job.total_units} done)")


@jobs.command("log-mlflow")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def log_mlflow(job_id: str, as_json: bool) -> None:
    """Log a job's stored judgments to MLflow (e.g. after MLflow was down)."""
    from judge.service import log_stored_job

    started = time.perf_counter()
    run_id = log_stored_job(_store(), job_id)
    if as_json:
        emit_json({"job_id": job_id, "mlflow_run_id": run_id})
    else:
        console.print(f"job {job_id} logged to MLflow run {run_id} "
                      f"({time.perf_counter() - started:.1f}s)")


__all__ = ["jobs", "submit"]
