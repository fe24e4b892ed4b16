"""Alignment: few-shot examples where the judge disagreed with people most.

From the training split, the items with the largest judge–human disagreement become
worked examples carrying the human consensus verdict; they are added to a new version
of the rubric (minor version bumped), written as YAML, and the held-out split is judged
again with it. The new version is kept (its file stays) only if held-out agreement —
the scale's primary kappa — improves; both figures are reported either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from judge.calibration.agreement import AgreementReport, ScaleSpec, agreement
from judge.errors import CalibrationError

if TYPE_CHECKING:
    from judge.calibration.calibrate import CalibrateOptions, RatedItems
    from judge.models import JudgeModel
    from judge.rubrics import Rubric
    from judge.store import Store


@dataclass
class AlignmentResult:
    """The candidate version, its examples and held-out agreement before and after."""

    rubric_id: str
    old_version: str
    new_version: str
    new_hash: str
    examples: list[str]
    path: str | None
    before: AgreementReport
    after: AgreementReport
    kept: bool
    n_train: int
    n_test: int
    provider_calls: int

    def to_dict(self) -> dict[str, Any]:
        return {"rubric_id": self.rubric_id, "old_version": self.old_version,
                "new_version": self.new_version, "new_hash": self.new_hash,
                "examples": self.examples, "path": self.path, "kept": self.kept,
                "n_train": self.n_train, "n_test": self.n_test,
                "metric": self.before.primary,
                "held_out_before": self.before.kappa.to_dict(),
                "held_out_after": self.after.kappa.to_dict(),
                "provider_calls": self.provider_calls}


def bump_version(version: str) -> str:
    """``1.2.3`` → ``1.3.0`` (a pre-release suffix is dropped)."""
    m = re.match(r"^(\d+)\.(\d+)\.(\d+)", version)
    if m is None:
        raise CalibrationError(f"Cannot bump rubric version '{version}': not semantic.")
    return f"{m.group(1)}.{int(m.group(2)) + 1}.0"


def _example(rubric: Rubric, scale: ScaleSpec, item: Any, human: float, judge: float,
             n_raters: int) -> dict[str, Any]:
    ex: dict[str, Any] = {f: (item.field(f) or "") for f in rubric.inputs}
    level = float(scale.to_level(np.array([human]))[0])
    name = scale.level_names[int(np.searchsorted(scale.codes, level))]
    jname = scale.level_names[int(np.searchsorted(scale.codes, scale.to_level(
        np.array([judge]))[0]))]
    if scale.kind == "likert":
        ex["score"] = int(level)
    elif scale.kind == "binary":
        ex["passed"] = bool(level)
    else:
        ex["label"] = name
    ex["rationale"] = (f"The consensus of {n_raters} human rater(s) is {name}; an earlier "
                       f"judge said {jname}. (Chosen by `judge calibrate --align` from the "
                       f"training split, item {item.id}.)")
    return ex


def align(store: Store, rubric: Rubric, judge: JudgeModel, data: RatedItems,
          codes: np.ndarray, train: np.ndarray, test: np.ndarray, scale: ScaleSpec,
          opts: CalibrateOptions) -> AlignmentResult:
    """Try a new rubric version with few-shot examples; see the module docstring."""
    from judge.calibration.calibrate import judge_items
    from judge.rubrics import Rubric

    if train.size == 0 or test.size < 2:
        raise CalibrationError(f"Alignment needs a training split and at least 2 held-out "
                               f"items; got {train.size} and {test.size}.")
    jv, hv = scale.to_value(codes[train]), scale.to_value(data.human[train])
    gap = np.abs(jv - hv) if scale.ordered else (codes[train] != data.human[train]).astype(float)
    order = [int(i) for i in np.argsort(-gap, kind="stable") if gap[i] > 0][:opts.align_examples]
    if not order:
        raise CalibrationError("Alignment found no training item where the judge disagreed "
                               "with people: nothing to teach it.")
    chosen = train[order]
    examples = [_example(rubric, scale, data.items[i], data.human[i], codes[i],
                         int(np.isfinite(data.matrix[i]).sum())) for i in chosen]
    body = rubric.model_dump(mode="json", exclude_none=True)
    body["version"] = bump_version(rubric.version)
    body["examples"] = [*body.get("examples", []), *examples]
    new = Rubric.model_validate(body)
    out_dir = Path(opts.align_out or ".")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{rubric.id.rsplit('/', 1)[-1]}-{new.version}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False, allow_unicode=True), encoding="utf-8")
    held = data.subset(test)
    after_v = judge_items(store, new, judge, held, scale, use_cache=opts.use_cache,
                          concurrency=opts.concurrency)
    keep = np.isfinite(after_v.codes)
    before = agreement(codes[test][keep], held.human[keep], scale, n_boot=opts.n_boot,
                       seed=opts.seed)
    after = agreement(after_v.codes[keep], held.human[keep], scale, n_boot=opts.n_boot,
                      seed=opts.seed)
    kept = bool(after.kappa.value > before.kappa.value)
    if not kept:
        path.unlink()
    return AlignmentResult(rubric.id, rubric.version, new.version, new.content_hash,
                           [data.items[i].id for i in chosen], str(path) if kept else None,
                           before, after, kept, int(train.size), int(test.size),
                           after_v.provider_calls)
