"""Calibrate one judge model on one rubric against the stored human ratings.

:func:`calibrate` gathers the rated items (:mod:`judge.calibration.human`), gets the
judge's verdicts on them — judgments imported for that judge model
(``judge judgments import``) when there are any, else a run of the engine (cache on) —
and compares them with the human consensus: agreement with bootstrap intervals, the
leave-one-out human ceiling, a calibration map with k-fold held-out figures, bias
probes, and the gate. The result is stored as a new calibration version keyed by
(rubric id, version, hash, judge model, prompt hash).
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from judge.calibration.agreement import AgreementReport, ScaleSpec, agreement
from judge.calibration.bias import (
    ProbeResult,
    position_bias,
    same_model,
    self_preference,
    unswap,
    verbosity_bias,
)
from judge.calibration.ceiling import CeilingReport, consensus, loo_ceiling
from judge.calibration.gate import GateDecision, gate
from judge.calibration.human import load_human
from judge.calibration.importer import IMPORT_PREFIX
from judge.calibration.maps import MapFit, fit_map
from judge.errors import CalibrationError

if TYPE_CHECKING:
    from judge.calibration.align import AlignmentResult
    from judge.datasets import Item
    from judge.judgments import Judgment
    from judge.models import JudgeModel
    from judge.rubrics import Rubric
    from judge.store import CalibrationRecord, Store

#: item metadata keys that may name the model that wrote the output (self-preference).
AUTHOR_KEYS = ("model", "output_model", "generator", "source_model", "author_model", "llm")


@dataclass
class CalibrateOptions:
    """Settings of one calibration (the CLI options)."""

    min_kappa: float = 0.6
    max_gap: float = 0.1
    folds: int = 5
    split: str = "all"
    seed: int = 0
    n_boot: int = 1000
    use_cache: bool = True
    dataset: str | None = None
    align: bool = False
    align_examples: int = 3
    align_out: Path | None = None
    concurrency: int = 16


@dataclass
class RatedItems:
    """The rated items, aligned: one row per (dataset, item)."""

    keys: list[tuple[str, str]]
    items: list[Item]
    matrix: np.ndarray  # items × raters (codes), raters namespaced by dataset
    human: np.ndarray  # consensus code per item

    def subset(self, idx: np.ndarray) -> RatedItems:
        return RatedItems([self.keys[i] for i in idx], [self.items[i] for i in idx],
                          self.matrix[idx], self.human[idx])


@dataclass
class Verdicts:
    """The judge's verdict code per rated item, and where they came from."""

    codes: np.ndarray
    judgments: list[Judgment]
    source: str  # "engine" or "imported"
    prompt_hash: str | None
    provider_calls: int = 0


@dataclass
class CalibrationOutcome:
    """Everything one calibration found; ``to_dict`` is the ``--json`` shape."""

    rubric: Rubric
    judge_model: str
    scale: ScaleSpec
    split: str
    source: str
    prompt_hash: str | None
    provider_calls: int
    n_rated: int
    n_used: int
    judge: np.ndarray
    human: np.ndarray
    agreement: AgreementReport
    ceiling: CeilingReport | None
    map_fit: MapFit | None
    probes: dict[str, ProbeResult | str]
    gate: GateDecision
    options: CalibrateOptions
    notes: list[str] = field(default_factory=list)
    alignment: AlignmentResult | None = None
    record: CalibrationRecord | None = None
    mlflow_run_id: str | None = None

    @property
    def approved(self) -> bool:
        return self.gate.approved

    def figures(self) -> dict[str, Any]:
        """Every figure with its interval (stored with the calibration)."""
        return {
            "n_rated_items": self.n_rated,
            "n_items": self.n_used,
            "source": self.source,
            "provider_calls": self.provider_calls,
            "agreement": self.agreement.to_dict(),
            "ceiling": None if self.ceiling is None else self.ceiling.to_dict(),
            "calibration_map": None if self.map_fit is None else {
                k: v for k, v in self.map_fit.to_dict().items() if k != "map"},
            "bias": {k: (v.to_dict() if isinstance(v, ProbeResult) else {"skipped": v})
                     for k, v in self.probes.items()},
            "gate": {**self.gate.to_dict(), "min_kappa": self.options.min_kappa,
                     "max_gap": self.options.max_gap},
            "alignment": None if self.alignment is None else self.alignment.to_dict(),
            "notes": list(self.notes),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "rubric_id": self.rubric.id,
            "rubric_version": self.rubric.version,
            "rubric_hash": self.rubric.content_hash,
            "judge_model": self.judge_model,
            "prompt_hash": self.prompt_hash,
            "split": self.split,
            "approved": self.approved,
            "calibration_id": None if self.record is None else self.record.id,
            "mlflow_run_id": self.mlflow_run_id,
            **self.figures(),
            "map": None if self.map_fit is None else self.map_fit.map.to_dict(),
        }

    def metrics(self) -> dict[str, Any]:
        """Flat ``stat -> estimate dict`` for MLflow (``calibration/<rubric>/<stat>``)."""
        out: dict[str, Any] = {k: v.to_dict() for k, v in self.agreement.estimates.items()}
        if self.ceiling is not None:
            for side in ("human", "judge", "gap"):
                out[f"ceiling_{side}"] = getattr(self.ceiling, side).to_dict()
        if self.map_fit is not None:
            for side in ("before", "after", "improvement"):
                for k, v in getattr(self.map_fit, side).items():
                    out[f"map_{side}_{k}"] = v.to_dict()
        for name, p in self.probes.items():
            if isinstance(p, ProbeResult):
                for k, v in p.figures.items():
                    out[f"bias_{name}_{k}"] = v.to_dict()
        if self.alignment is not None:
            out["align_before"] = self.alignment.before.kappa.to_dict()
            out["align_after"] = self.alignment.after.kappa.to_dict()
        out["approved"] = 1.0 if self.approved else 0.0
        out["n_items"] = float(self.n_used)
        return out


# --- rated items ---------------------------------------------------------------------------


def rated_items(store: Store, rubric: Rubric, scale: ScaleSpec, *, dataset: str | None = None,
                seed: int = 0) -> RatedItems:
    """The rated items of ``rubric`` that the store holds and the rubric can judge."""
    from judge.engine import missing_inputs

    keys: list[tuple[str, str]] = []
    items: list[Item] = []
    blocks: list[np.ndarray] = []
    skipped = 0
    for h in load_human(store, rubric, dataset):
        found = store.get_items(h.dataset_id, h.item_ids)
        rows = []
        for i, iid in enumerate(h.item_ids):
            item = found.get(iid)
            if item is None or missing_inputs(rubric, item):
                skipped += 1
                continue
            rows.append(i)
            keys.append((h.dataset_id, iid))
            items.append(item)
        blocks.append(h.matrix[rows])
    if not items:
        raise CalibrationError(
            f"None of the items rated on '{rubric.id}' can be judged: their items are not "
            f"stored or lack a field the rubric needs ({', '.join(rubric.inputs)}).")
    width = sum(b.shape[1] for b in blocks)
    matrix = np.full((len(items), width), np.nan)
    r = c = 0
    for b in blocks:  # block diagonal: raters of one dataset never rate another's items
        matrix[r:r + b.shape[0], c:c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return RatedItems(keys, items, matrix, consensus(matrix, scale, seed=seed))


# --- the judge's verdicts ------------------------------------------------------------------


def verdict_code(rubric: Rubric, scale: ScaleSpec, verdict: Any) -> float:
    """The scale code of an aggregated item verdict (:class:`judge.summary.ItemVerdict`)."""
    if verdict is None or verdict.status != "ok":
        return math.nan
    if scale.kind == "likert":
        return math.nan if verdict.score is None else float(verdict.score)
    if scale.kind == "binary":
        return math.nan if verdict.passed is None else float(bool(verdict.passed))
    label = verdict.label
    if rubric.pairwise:
        label = {"output": "a", "output_b": "b", "tie": "tie"}.get(label or "", label)
    return math.nan if label is None else float(scale.encode([label])[0])


def imported_judgments(store: Store, rubric: Rubric, judge_model: str) -> list[Judgment]:
    """``ok`` judgments of ``judge_model`` on this exact rubric imported from a file."""
    from judge.judgments import Status

    return [j for j in store.iter_judgments(rubric_id=rubric.id, judge_model=judge_model)
            if j.rubric_hash == rubric.content_hash and j.status == Status.OK
            and (j.prompt_hash or "").startswith(IMPORT_PREFIX)]


def _codes(rubric: Rubric, scale: ScaleSpec, rated: RatedItems,
           judgments: list[Judgment]) -> np.ndarray:
    from judge.engine import aggregate

    by_item = {v.item_id: v for v in aggregate(judgments, {rubric.id: rubric})}
    return np.array([verdict_code(rubric, scale, by_item.get(k[1])) for k in rated.keys])


def judge_items(store: Store, rubric: Rubric, judge: JudgeModel, rated: RatedItems,
                scale: ScaleSpec, *, use_cache: bool = True, concurrency: int = 16) -> Verdicts:
    """Judge the rated items with the engine (one job per dataset, cache on by default)."""
    from judge.engine import evaluate_async
    from judge.prompts import build_messages

    judgments: list[Judgment] = []
    calls = 0
    by_ds: dict[str, list[Item]] = {}
    for (ds, _), item in zip(rated.keys, rated.items, strict=True):
        by_ds.setdefault(ds, []).append(item)
    for ds, items in by_ds.items():
        job, _ = store.create_job(
            {"kind": "calibration", "rubric": rubric.id, "rubric_hash": rubric.content_hash,
             "judge_model": judge.model, "api_base": judge.api_base}, dataset_id=ds,
            total_units=len(items) * (2 if rubric.pairwise else 1))
        store.set_job_status(job.id, "running")
        try:
            res = asyncio.run(evaluate_async(items, [rubric], [judge], store=store,
                                             job_id=job.id, use_cache=use_cache,
                                             concurrency=concurrency))
        except BaseException:
            store.set_job_status(job.id, "failed", error="calibration run failed")
            raise
        store.set_job_status(job.id, "succeeded")
        judgments += res.judgments
        calls += res.provider_calls
    prompt_hash = build_messages(rubric, rated.items[0]).prompt_hash
    return Verdicts(_codes(rubric, scale, rated, judgments), judgments, "engine", prompt_hash,
                    calls)


def get_verdicts(store: Store, rubric: Rubric, judge: JudgeModel, rated: RatedItems,
                 scale: ScaleSpec, *, use_cache: bool = True, concurrency: int = 16) -> Verdicts:
    """Imported verdicts of this judge model when there are any, else the engine's."""
    imported = imported_judgments(store, rubric, judge.model)
    if imported:
        ph = Counter(j.prompt_hash for j in imported).most_common(1)[0][0]
        return Verdicts(_codes(rubric, scale, rated, imported), imported, "imported", ph, 0)
    return judge_items(store, rubric, judge, rated, scale, use_cache=use_cache,
                       concurrency=concurrency)


# --- splits and probes ---------------------------------------------------------------------


def parse_split(split: str) -> float | None:
    """``all`` → None; ``holdout=0.3`` (or ``0.3``) → the held-out fraction."""
    s = split.strip().lower()
    if s == "all":
        return None
    value = s.split("=", 1)[1] if s.startswith("holdout=") else s
    try:
        frac = float(value)
    except ValueError:
        frac = math.nan
    if not 0 < frac < 1:
        raise CalibrationError(f"Bad --split '{split}'. Options: all (every rated item), or "
                               f"holdout=F with 0 < F < 1 (figures on a held-out fraction F).")
    return frac


def split_indices(n: int, frac: float | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: a seeded shuffle, ``frac`` of it held out (half when None)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * (0.5 if frac is None else frac))))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _author(item: Item) -> str | None:
    for k in AUTHOR_KEYS:
        v = item.metadata.get(k)
        if isinstance(v, str) and v.strip():
            return v
    return None


def run_probes(rubric: Rubric, scale: ScaleSpec, judge_model: str, rated: RatedItems,
               judge: np.ndarray, judgments: list[Judgment], *, n_boot: int,
               seed: int) -> dict[str, ProbeResult | str]:
    """Verbosity, position (pairwise) and self-preference probes; a string says why one
    was skipped."""
    out: dict[str, ProbeResult | str] = {}
    jv, hv = scale.to_value(judge), scale.to_value(rated.human)
    if scale.ordered or scale.kind == "binary":
        lengths = np.array([len(i.output) for i in rated.items], float)
        try:
            out["verbosity"] = verbosity_bias(jv, hv, lengths, n_boot=n_boot, seed=seed)
        except CalibrationError as exc:
            out["verbosity"] = str(exc)
    else:
        out["verbosity"] = "unordered labels: no residual to relate to length"
    if rubric.pairwise:
        ab: dict[str, str | None] = {}
        ba: dict[str, str | None] = {}
        for j in judgments:
            if j.sample_index == 0 and j.label is not None:
                (ab if j.order != "ba" else ba)[j.item_id] = j.label
        both = [k for k in ab if k in ba]
        try:
            out["position"] = position_bias([ab[k] for k in both], unswap([ba[k] for k in both]),
                                            n_boot=n_boot, seed=seed)
        except CalibrationError as exc:
            out["position"] = str(exc)
    else:
        out["position"] = "not a pairwise rubric"
    authors = [_author(i) for i in rated.items]
    if any(same_model(a, judge_model) for a in authors):
        try:
            out["self_preference"] = self_preference(jv, hv, authors, judge_model,
                                                     n_boot=n_boot, seed=seed)
        except CalibrationError as exc:
            out["self_preference"] = str(exc)
    else:
        out["self_preference"] = (f"no item's metadata ({'/'.join(AUTHOR_KEYS)}) names "
                                  f"'{judge_model}' as the output's author")
    return out


# --- the whole calibration -------------------------------------------------------------------


def calibrate(store: Store, rubric: Rubric, judge: JudgeModel,
              options: CalibrateOptions | None = None) -> CalibrationOutcome:
    """Calibrate ``judge`` on ``rubric`` against the stored human ratings and store the
    result (see the module docstring). Alignment runs when ``options.align``.

    Raises:
        CalibrationError: no usable ratings, too few items, a bad split.
    """
    opts = options or CalibrateOptions()
    scale = ScaleSpec.from_rubric(rubric)
    frac = parse_split(opts.split)
    rated = rated_items(store, rubric, scale, dataset=opts.dataset, seed=opts.seed)
    verdicts = get_verdicts(store, rubric, judge, rated, scale, use_cache=opts.use_cache,
                            concurrency=opts.concurrency)
    notes: list[str] = []
    usable = np.flatnonzero(np.isfinite(verdicts.codes) & np.isfinite(rated.human))
    if usable.size < len(rated.keys):
        notes.append(f"{len(rated.keys) - usable.size} of {len(rated.keys)} rated items have no "
                     f"judge verdict (errors, abstentions or not in the imported file).")
    if usable.size < 2:
        raise CalibrationError(
            f"Only {usable.size} rated item(s) of '{rubric.id}' have a verdict from "
            f"'{judge.model}'; calibration needs at least 2 (and {2 * opts.folds} for a map).")
    data = rated.subset(usable)
    codes = verdicts.codes[usable]
    train, test = split_indices(len(usable), frac, opts.seed)
    ev = np.arange(len(usable)) if frac is None else test
    split_desc = (f"all;cv{opts.folds};seed={opts.seed}" if frac is None
                  else f"holdout={frac:g};cv{opts.folds};seed={opts.seed}")
    ev_data, ev_codes = data.subset(ev), codes[ev]
    report = agreement(ev_codes, ev_data.human, scale, n_boot=opts.n_boot, seed=opts.seed)
    try:
        ceiling: CeilingReport | None = loo_ceiling(ev_data.matrix, ev_codes, scale,
                                                    n_boot=opts.n_boot, seed=opts.seed)
    except CalibrationError as exc:
        ceiling = None
        notes.append(f"no human ceiling: {exc}")
    try:
        map_fit: MapFit | None = fit_map(ev_codes, ev_data.human, scale, folds=opts.folds,
                                         n_boot=opts.n_boot, seed=opts.seed)
    except CalibrationError as exc:
        map_fit = None
        notes.append(f"no calibration map: {exc}")
    probes = run_probes(rubric, scale, judge.model, ev_data, ev_codes, verdicts.judgments,
                        n_boot=opts.n_boot, seed=opts.seed)
    decision = gate(report, opts.min_kappa, opts.max_gap, ceiling=ceiling)
    outcome = CalibrationOutcome(
        rubric, judge.model, scale, split_desc, verdicts.source, verdicts.prompt_hash,
        verdicts.provider_calls, len(rated.keys), int(ev.size), ev_codes, ev_data.human, report,
        ceiling, map_fit, probes, decision, opts, notes)
    if opts.align:
        from judge.calibration.align import align

        try:
            outcome.alignment = align(store, rubric, judge, data, codes, train, test, scale,
                                      opts)
            outcome.provider_calls += outcome.alignment.provider_calls
        except CalibrationError as exc:  # nothing to align on is a finding, not a failure
            notes.append(f"no alignment: {exc}")
    outcome.record = store.save_calibration(
        rubric_id=rubric.id, rubric_version=rubric.version, rubric_hash=rubric.content_hash,
        judge_model=judge.model, prompt_hash=verdicts.prompt_hash, split=split_desc,
        figures=outcome.figures(), map=None if map_fit is None else map_fit.map.to_dict(),
        approved=decision.approved)
    return outcome
