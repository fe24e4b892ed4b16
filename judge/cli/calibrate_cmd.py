"""``judge calibrate``: calibrate a judge model on a rubric against stored human ratings."""

from __future__ import annotations

from pathlib import Path

import click

from judge.cli._output import console, emit_json, warn


@click.command()
@click.option("--rubric", "-r", "rubric_id", required=True, help="Rubric to calibrate on.")
@click.option("--judge-model", "-m", "judge_model", help="litellm model string (default "
              "$JUDGE_MODEL); imported judgments of that name are used when present.")
@click.option("--api-base", help="Base URL of an OpenAI-compatible or self-hosted server.")
@click.option("--min-kappa", default=0.6, show_default=True, type=float,
              help="Least agreement (the scale's primary kappa) to approve.")
@click.option("--max-gap", default=0.1, show_default=True, type=float,
              help="Largest gap below typical human (leave-one-out) agreement to approve.")
@click.option("--folds", default=5, show_default=True, type=int,
              help="k of the cross-validation of the calibration map.")
@click.option("--split", default="all", show_default=True,
              help="all, or holdout=F: figures and gate on a seeded held-out fraction F.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--bootstrap", "n_boot", default=1000, show_default=True, type=int,
              help="Bootstrap resamples for every interval.")
@click.option("--dataset", help="Only the ratings of this dataset (name or id).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write report.md, report.html and PNG plots here.")
@click.option("--align", is_flag=True,
              help="Try a new rubric version with few-shot examples where the judge "
                   "disagreed most; keep it only if held-out agreement improves.")
@click.option("--align-examples", default=3, show_default=True, type=int)
@click.option("--align-out", type=click.Path(file_okay=False, path_type=Path),
              help="Where the new rubric YAML goes (default: --report DIR, else .).")
@click.option("--temperature", default=0.0, show_default=True, type=float)
@click.option("--timeout", default=60.0, show_default=True, type=float)
@click.option("--max-attempts", default=4, show_default=True, type=int)
@click.option("--concurrency", "-c", default=16, show_default=True, type=int)
@click.option("--no-cache", is_flag=True, help="Call the judge even for cached verdicts.")
@click.option("--no-mlflow", is_flag=True, help="Do not log an MLflow run.")
@click.option("--json", "as_json", is_flag=True, help="Print every figure with its interval.")
def calibrate(rubric_id: str, judge_model: str | None, api_base: str | None, min_kappa: float,
              max_gap: float, folds: int, split: str, seed: int, n_boot: int,
              dataset: str | None, report_dir: Path | None, align: bool, align_examples: int,
              align_out: Path | None, temperature: float, timeout: float, max_attempts: int,
              concurrency: int, no_cache: bool, no_mlflow: bool, as_json: bool) -> None:
    """Judge the rated items of RUBRIC with the judge model, compare with the human
    consensus, fit a calibration map, probe for bias, and approve the judge or not.

    The calibration is stored (versioned by rubric id, version and hash, judge model and
    prompt hash); `judge run --require-calibrated` refuses judges it did not approve.
    Exit codes: 0 approved, 1 refused by the gate, 2 a user error.
    """
    from judge.calibration.calibrate import CalibrateOptions
    from judge.calibration.calibrate import calibrate as run_calibration
    from judge.calibration.report import log_to_mlflow, write_report
    from judge.cli.run_cmd import build_judges
    from judge.packs import find_rubric
    from judge.store import Store

    rubric = find_rubric(rubric_id)
    (judge,) = build_judges((judge_model,) if judge_model else (), api_base, temperature,
                            1024, timeout, max_attempts, None)
    opts = CalibrateOptions(min_kappa=min_kappa, max_gap=max_gap, folds=folds, split=split,
                            seed=seed, n_boot=n_boot, use_cache=not no_cache, dataset=dataset,
                            align=align, align_examples=align_examples,
                            align_out=align_out or report_dir, concurrency=concurrency)
    store = Store.open()
    outcome = run_calibration(store, rubric, judge, opts)
    if report_dir is not None:
        write_report(outcome, report_dir)
    warnings: list[str] = []
    if not no_mlflow:
        try:
            outcome.mlflow_run_id = log_to_mlflow(outcome, report_dir)
        except Exception as exc:  # noqa: BLE001 - the calibration is stored; MLflow is extra
            warnings.append(f"MLflow logging failed: {exc}")
    if as_json:
        emit_json({**outcome.to_dict(), "warnings": warnings})
    else:
        for w in warnings:
            warn(w)
        _print(outcome, report_dir)
    if not outcome.approved:
        raise SystemExit(1)


def _print(o: object, report_dir: Path | None) -> None:
    from judge.calibration.calibrate import CalibrationOutcome
    from judge.calibration.report import _fmt

    assert isinstance(o, CalibrationOutcome)
    p = console.print
    p(f"{o.judge_model} on {o.rubric.id} {o.rubric.version}: {o.n_used} items, verdicts from "
      f"{o.source} ({o.provider_calls} provider calls), split {o.split}", highlight=False,
      soft_wrap=True)
    a = o.agreement
    p(f"  {a.primary}: {_fmt(a.kappa)}", highlight=False)
    for k in ("exact_agreement", "krippendorff_alpha_nominal", "mae"):
        if k in a.estimates:
            p(f"  {k}: {_fmt(a.estimates[k])}", highlight=False)
    if o.ceiling is not None:
        p(f"  ceiling: {o.ceiling.summary()}", highlight=False, soft_wrap=True)
    if o.map_fit is not None:
        mf = o.map_fit
        for k in mf.before:
            p(f"  map ({mf.map.kind}) held-out {k}: before {_fmt(mf.before[k])}, after "
              f"{_fmt(mf.after[k])}", highlight=False, soft_wrap=True)
    for name, pr in o.probes.items():
        p(f"  bias {name}: {pr if isinstance(pr, str) else pr.detail}", highlight=False,
          soft_wrap=True)
    if o.alignment is not None:
        al = o.alignment
        p(f"  align: {al.old_version} {_fmt(al.before.kappa)} → {al.new_version} "
          f"{_fmt(al.after.kappa)} held-out; {'kept: ' + str(al.path) if al.kept else 'discarded'}",
          highlight=False, soft_wrap=True)
    for n in o.notes:
        p(f"  note: {n}", highlight=False, soft_wrap=True)
    for r in o.gate.reasons:
        p(f"  gate: {r}", highlight=False, soft_wrap=True)
    p(("[green]APPROVED[/green]" if o.approved else "[red]NOT APPROVED[/red]")
      + (f" (calibration {o.record.id})" if o.record else "")
      + (f"; report in {report_dir}" if report_dir else ""))
