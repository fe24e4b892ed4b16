"""``judge run``: grade a dataset in-process on the embedded defaults."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from judge.cli._output import console, emit_json, warn
from judge.errors import JudgeError


def judge_options(f: Any) -> Any:
    """Options shared by ``judge run`` and ``judge submit``."""
    options = [
        click.argument("dataset", type=click.Path(dir_okay=False, path_type=Path)),
        click.option("--pack", "-p", help="Pack whose rubrics to use (all of them unless --rubric)."),
        click.option("--rubric", "-r", "rubric_ids", multiple=True,
                     help="Rubric id to use; repeat for several."),
        click.option("--judge-model", "-m", "judge_models", multiple=True,
                     help="litellm model string, e.g. openai/gpt-4.1-mini; repeat for a jury. "
                          "Default: $JUDGE_MODEL."),
        click.option("--api-base", help="Base URL of an OpenAI-compatible or self-hosted server."),
        click.option("--samples", default=1, show_default=True, type=int,
                     help="Verdicts per item, rubric and judge (needs --temperature > 0)."),
        click.option("--temperature", default=0.0, show_default=True, type=float,
                     help="Judge sampling temperature; 0 gives repeatable verdicts."),
        click.option("--max-tokens", default=1024, show_default=True, type=int),
        click.option("--timeout", default=60.0, show_default=True, type=float,
                     help="Seconds per judge call."),
        click.option("--max-attempts", default=4, show_default=True, type=int,
                     help="Provider attempts per call (429/5xx/timeouts)."),
        click.option("--rpm", type=int, help="Requests per minute allowed per judge model."),
        click.option("--concurrency", "-c", default=16, show_default=True,
                     type=click.IntRange(min=1),
                     help="Judge calls in flight per judge model."),
        click.option("--jury", type=click.Choice(["mean", "median", "majority"]), default="mean",
                     show_default=True, help="How several judge models combine per item."),
        click.option("--map", "mapping", multiple=True,
                     help="Column mapping FIELD=COLUMN, e.g. input=question,output=answer."),
        click.option("--experiment", default="judge", show_default=True,
                     help="MLflow experiment name."),
        click.option("--no-cache", is_flag=True, help="Call the judges even for cached verdicts."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_judges(judge_models: tuple[str, ...], api_base: str | None, temperature: float,
                 max_tokens: int, timeout: float, max_attempts: int, rpm: int | None) -> list[Any]:
    """Judge models from the CLI options (``$JUDGE_MODEL`` when none is given)."""
    from judge.models import JudgeModel

    names = list(judge_models) or ([os.environ["JUDGE_MODEL"]] if os.environ.get("JUDGE_MODEL")
                                   else [])
    if not names:
        raise JudgeError("No judge model: pass --judge-model (e.g. openai/gpt-4.1-mini) or set "
                         "JUDGE_MODEL. Any litellm model string works.")
    if len(set(names)) != len(names):
        raise JudgeError(f"A judge model is named twice: {names}.")
    # parse() turns a bad setting (--temperature 5, --timeout 0) into a ConfigError that
    # names it: a user error (exit 2), not a traceback.
    return [
        JudgeModel.parse(n, api_base=api_base, temperature=temperature, max_tokens=max_tokens,
                         timeout=timeout, max_attempts=max_attempts, rpm=rpm)
        for n in names
    ]


def parse_fail_under(specs: tuple[str, ...]) -> list[tuple[str, str, float]]:
    """``RUBRIC=VALUE`` (mean) or ``RUBRIC:pass_rate=VALUE`` into (rubric, stat, value)."""
    out = []
    for spec in specs:
        if "=" not in spec:
            raise JudgeError(f"Bad --fail-under '{spec}': expected RUBRIC=VALUE or "
                             "RUBRIC:pass_rate=VALUE, e.g. healthcare/triage=3.5.")
        left, value = spec.rsplit("=", 1)
        rubric, _, stat = left.partition(":")
        stat = stat or "mean"
        if stat not in ("mean", "pass_rate"):
            raise JudgeError(f"Bad --fail-under statistic '{stat}': use mean or pass_rate.")
        try:
            out.append((rubric, stat, float(value)))
        except ValueError:
            raise JudgeError(f"Bad --fail-under value '{value}' in '{spec}': not a number.") from None
    return out


def print_summary(summary: dict[str, Any], title: str = "Summary") -> None:
    """The per-rubric table printed at the end of a run.

    ``summary`` maps a row label (a rubric id, or ``rubric · judge`` for a jury's
    per-judge rows) to :meth:`RubricSummary.as_dict` figures. A ``flips`` column
    (pairwise verdicts that changed with the order) appears when any row has one.
    """
    from rich.table import Table

    pairwise = any(s.get("inconsistent") for s in summary.values())
    # Short headers that never wrap: the table must stay readable in 80 columns.
    legend = ("pass: pass rate; err: errors (no verdict); abst: abstained; check: settled "
              "by a failed deterministic check")
    cols = ["mean", "pass", "n", "err", "abst", "check", "cost $"]
    if pairwise:
        cols.insert(6, "flips")
        legend += "; flips: pairs whose verdict changed with the order (no verdict)"
    table = Table(title=title, caption=legend, caption_justify="left")
    table.add_column("rubric", justify="left", no_wrap=True)
    for col in cols:
        table.add_column(col, justify="right", no_wrap=True)

    def fmt(v: Any, spec: str = ".3f") -> str:
        return "-" if v is None else format(v, spec)

    for rid, s in summary.items():
        row = [rid, fmt(s["mean"]), fmt(s["pass_rate"], ".1%"), str(s["n"]),
               str(s["errors"]), str(s["abstained"]), str(s["check_failed"]),
               fmt(s["cost_usd"], ".4f")]
        if pairwise:
            row.insert(7, str(s.get("inconsistent", 0)))
        table.add_row(*row)
    # Never squeeze the table into a narrow (or non-terminal, 80-column) console: that
    # truncates rubric ids and numbers. Render it at its natural width instead.
    from rich.console import Console
    from rich.measure import Measurement

    needed = Measurement.get(console, console.options.update_width(1000), table).maximum
    out = console if needed <= console.width else Console(
        file=console.file, width=needed, force_terminal=console.is_terminal,
        no_color=console.no_color, highlight=False)
    out.print(table)


def check_gates(summary: dict[str, Any], gates: list[tuple[str, str, float]]) -> list[str]:
    """The --fail-under gates that failed, as messages."""
    failed = []
    for rubric, stat, threshold in gates:
        if rubric not in summary:
            raise JudgeError(f"--fail-under names rubric '{rubric}', which this job did not use. "
                             f"Rubrics: {', '.join(summary)}.")
        value = summary[rubric][stat]
        if value is None or value < threshold:
            failed.append(f"{rubric} {stat} {value if value is not None else 'n/a'} < {threshold}")
    return failed


@click.command()
@judge_options
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every judgment to this JSONL file.")
@click.option("--fail-under", "fail_under", multiple=True,
              help="Exit 1 if RUBRIC's mean (or RUBRIC:pass_rate) is below VALUE; repeatable.")
@click.option("--require-calibrated", is_flag=True,
              help="Refuse judges not approved by `judge calibrate` for a rubric.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def run(dataset: Path, pack: str | None, rubric_ids: tuple[str, ...],
        judge_models: tuple[str, ...], api_base: str | None, samples: int, temperature: float,
        max_tokens: int, timeout: float, max_attempts: int, rpm: int | None, concurrency: int,
        jury: str, mapping: tuple[str, ...], experiment: str, no_cache: bool, out: Path | None,
        fail_under: tuple[str, ...], require_calibrated: bool, as_json: bool) -> None:
    """Grade DATASET (JSONL or CSV) in this process and print a summary per rubric.

    Judgments go to the store ($JUDGE_DATABASE_URL, default SQLite under $JUDGE_HOME) and
    one MLflow run per job ($MLFLOW_TRACKING_URI, default SQLite under $JUDGE_HOME).
    Exit codes: 0 done, 1 a --fail-under gate failed (or no judgment got a verdict:
    every call failed), 2 a user error.

    \b
    --json prints: {"job_id", "status", "mlflow_run_id", "provider_calls",
      "summary": {RUBRIC: {"mean", "std", "pass_rate", "n", "errors", "abstained",
                           "check_failed", "total", "cost_usd", ...}},
      "summary_by_judge": {"RUBRIC · MODEL": {...}} (juries only),
      "skipped_missing_inputs": {RUBRIC: N}, "gates_failed": [...], "warnings": [...]}
    """
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from judge.datasets import dataset_hash, read_items
    from judge.engine import count_units
    from judge.judgments import ERROR_STATUSES
    from judge.service import make_spec, resolve_rubrics, run_inprocess

    gates = parse_fail_under(fail_under)
    items = read_items(dataset, list(mapping) or None)
    rubrics = resolve_rubrics(pack, rubric_ids)
    # A gate on a rubric the job does not use is a typo: say so before any call is made.
    known = [r.id for r in rubrics]
    for rubric_id, _stat, _value in gates:
        if rubric_id not in known:
            from judge.errors import UnknownNameError

            raise UnknownNameError("--fail-under rubric", rubric_id, known)
    judges = build_judges(judge_models, api_base, temperature, max_tokens, timeout,
                          max_attempts, rpm)
    spec = make_spec(dataset=str(dataset), dataset_hash=dataset_hash(dataset), pack=pack,
                     rubrics=rubrics, judges=judges, samples=samples, concurrency=concurrency,
                     jury=jury, use_cache=not no_cache, experiment=experiment)
    from judge.store import Store

    store = Store.open()
    _check_calibrated(store, rubrics, judges, require_calibrated)
    total = count_units(items, rubrics, judges, samples)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True,
                  disable=as_json or not console.is_terminal) as bar:
        task = bar.add_task("judging", total=total)
        outcome = run_inprocess(items, rubrics, judges, spec, store=store,
                                progress=lambda _j: bar.advance(task))
    result = outcome.result
    summary = {rid: s.as_dict() for rid, s in result.summary.items()}
    by_judge = ({f"{rid} · {model}": s.as_dict()
                 for (rid, model), s in result.summary_by_judge.items()}
                if len(judges) > 1 else {})
    # No verdict at all (every call failed: endpoint down, wrong key, wrong model) is a
    # failure of the work, whatever the gates say.
    judged = [j for j in result.judgments if j.status not in ERROR_STATUSES]
    all_failed = bool(result.judgments) and not judged
    if out is not None:
        with out.open("w", encoding="utf-8") as fh:
            for j in result.judgments:
                fh.write(json.dumps(j.model_dump(mode="json"), ensure_ascii=False) + "\n")
    failed = check_gates(summary, gates)
    skipped = result.extra.get("skipped_missing_inputs", {})
    if as_json:
        emit_json({"job_id": outcome.job_id, "status": outcome.status,
                   "mlflow_run_id": outcome.mlflow_run_id, "provider_calls": result.provider_calls,
                   "summary": summary, "summary_by_judge": by_judge,
                   "skipped_missing_inputs": skipped, "gates_failed": failed,
                   "warnings": outcome.warnings})
    else:
        for w in outcome.warnings:
            warn(w)
        print_summary(summary, title=f"job {outcome.job_id}")
        if by_judge:
            print_summary(by_judge, title="per judge model")
        cached = sum(1 for j in result.judgments if j.cached)
        console.print(f"{len(result.judgments)} judgments ({cached} cached), "
                      f"{result.provider_calls} provider calls, {result.elapsed_s:.1f}s",
                      soft_wrap=True, highlight=False)
        console.print(f"MLflow run: {outcome.mlflow_run_id or '-'}", soft_wrap=True,
                      highlight=False)
        for rid, n in skipped.items():
            console.print(f"{rid}: {n} item(s) skipped: they lack a field this rubric needs.",
                          soft_wrap=True)
        for f in failed:
            console.print(f"[red]gate failed:[/red] {escape(f)}", soft_wrap=True)
    if all_failed:
        warn(f"every judgment of job {outcome.job_id} failed ({len(result.judgments)} with "
             "status provider_error or invalid_output); see their `error` field, e.g.: "
             f"{result.judgments[0].error}")
        raise SystemExit(1)
    if failed:
        raise SystemExit(1)


def _check_calibrated(store: Any, rubrics: list[Any], judges: list[Any], require: bool) -> None:
    unapproved = []
    for r in rubrics:
        for j in judges:
            cal = store.latest_calibration(r.id, r.content_hash, j.model)
            if cal is None or not getattr(cal, "approved", False):
                unapproved.append(f"{j.model} on {r.id}")
    if not unapproved:
        return
    msg = ("judge not approved by calibration for: " + ", ".join(unapproved[:6])
           + (" …" if len(unapproved) > 6 else "")
           + ". Run `judge calibrate --rubric ID --judge-model M` against human ratings.")
    if require:
        raise JudgeError("--require-calibrated: " + msg)
    warn(msg)
