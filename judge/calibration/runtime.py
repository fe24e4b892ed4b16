"""Stored calibration maps as callables the engine applies to raw scores.

:func:`load_calibrators` returns, for every (rubric, judge) pair with a stored
calibration carrying a map, a function from the judgment's raw ``score`` to its
``calibrated_score`` — the form ``judge.engine.evaluate_async(calibrators=…)`` takes.
Likert: the isotonic map. Categorical and binary: the score's label is relabelled by
the confusion map and its score returned. Pairwise verdicts carry no score: no
calibrator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from judge.models import JudgeModel
    from judge.rubrics import Rubric
    from judge.store import Store

Calibrator = Callable[[float], float]


def calibrator_from_map(data: dict[str, Any]) -> Calibrator | None:
    """A float → float calibrator from a stored map (None if it cannot act on scores)."""
    # Imported here: the maps need scikit-learn, which a run without calibrations never does.
    import numpy as np

    from judge.calibration.maps import IsotonicMap, LabelMap, load_map

    cmap = load_map(data)
    if isinstance(cmap, IsotonicMap):
        return lambda score: float(cmap.apply(float(score)))
    assert isinstance(cmap, LabelMap)
    scale = cmap.scale
    if scale.kind == "labels" and scale.scores is None:
        return None  # pairwise or unscored labels: the judgment's score is not a level
    values = scale.level_values
    names = scale.level_names

    def apply(score: float, cmap: Any = cmap) -> float:
        i = int(np.argmin(np.abs(values - float(score))))
        return float(values[names.index(cmap.apply(names[i]))])

    return apply


def load_calibrators(store: Store, rubrics: Sequence[Rubric],
                     judges: Sequence[JudgeModel | str]) -> dict[tuple[str, str], Calibrator]:
    """Calibrators keyed by (rubric content hash, judge model), from the newest stored
    calibration of each pair that has a map (approved or not: the map is the best
    estimate of what people would say either way)."""
    out: dict[tuple[str, str], Calibrator] = {}
    for r in rubrics:
        for j in judges:
            model = j if isinstance(j, str) else j.model
            rec = store.latest_calibration(r.id, r.content_hash, model)
            if rec is None or not rec.map:
                continue
            fn = calibrator_from_map(dict(rec.map))
            if fn is not None:
                out[(r.content_hash, model)] = fn
    return out
