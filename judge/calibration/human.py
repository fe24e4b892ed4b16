"""Stored human ratings as matrices, and how much the people agree.

Ratings are grouped per rubric and dataset (one import of one file): rater ids are only
meaningful inside the file they came from (``#0`` of one crowd file is not ``#0`` of
another), so every matrix has one row per rated item of a dataset and one column per
rater of that dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from judge.calibration.agreement import ScaleSpec
from judge.calibration.ceiling import human_agreement
from judge.calibration.importer import rating_code
from judge.errors import CalibrationError

if TYPE_CHECKING:
    from judge.rubrics import Rubric
    from judge.store import Store


@dataclass
class HumanRatings:
    """One dataset's ratings of one rubric as an items × raters matrix of scale codes."""

    rubric_id: str
    dataset_id: str
    dataset_name: str
    item_ids: list[str]
    rater_ids: list[str]
    matrix: np.ndarray
    versions: list[str]

    @property
    def n_ratings(self) -> int:
        return int(np.isfinite(self.matrix).sum())


def load_human(store: Store, rubric: Rubric, dataset: str | None = None) -> list[HumanRatings]:
    """Every dataset's ratings of ``rubric`` (or only the dataset named or id'd ``dataset``).

    Raises:
        CalibrationError: no ratings, or a stored rating the rubric's scale refuses.
    """
    scale = ScaleSpec.from_rubric(rubric)
    by_ds: dict[str, list[Any]] = {}
    for r in store.ratings(rubric_id=rubric.id):
        by_ds.setdefault(r.dataset_id, []).append(r)
    out = []
    names = {ds: store.get_dataset(ds).name for ds in by_ds}
    for ds, rows in by_ds.items():
        if dataset is not None and dataset not in (ds, names[ds]):
            continue
        items = list(dict.fromkeys(r.item_id for r in rows))
        raters = list(dict.fromkeys(r.rater_id for r in rows))
        ri = {k: i for i, k in enumerate(items)}
        ci = {k: i for i, k in enumerate(raters)}
        m = np.full((len(items), len(raters)), np.nan)
        for r in rows:
            try:
                m[ri[r.item_id], ci[r.rater_id]] = rating_code(scale, r.score, r.label)
            except CalibrationError as exc:
                raise CalibrationError(
                    f"Stored rating of item '{r.item_id}' by '{r.rater_id}' on '{rubric.id}' "
                    f"(version {r.rubric_version}) does not fit the rubric's current scale: "
                    f"{exc}") from None
        versions = sorted({r.rubric_version or "?" for r in rows})
        out.append(HumanRatings(rubric.id, ds, names[ds], items, raters, m, versions))
    if not out:
        where = f" in dataset '{dataset}'" if dataset else ""
        raise CalibrationError(
            f"No human ratings of rubric '{rubric.id}'{where}. Import some with "
            f"`judge ratings import FILE --rubric {rubric.id}`.")
    return out


def ratings_stats(human: HumanRatings, scale: ScaleSpec, *, n_boot: int = 1000,
                  seed: int = 0) -> dict[str, Any]:
    """Counts and human–human agreement (with intervals) of one dataset's ratings."""
    per_item = np.isfinite(human.matrix).sum(1)
    out: dict[str, Any] = {
        "rubric_id": human.rubric_id,
        "dataset": human.dataset_name,
        "dataset_id": human.dataset_id,
        "rubric_versions": human.versions,
        "items": len(human.item_ids),
        "ratings": human.n_ratings,
        "raters": len(human.rater_ids),
        "ratings_per_item": {"mean": float(per_item.mean()), "min": int(per_item.min()),
                             "max": int(per_item.max())},
        "items_with_2plus": int((per_item >= 2).sum()),
        "agreement": None,
    }
    if (per_item >= 2).any():
        ha = human_agreement(human.matrix, scale, n_boot=n_boot, seed=seed)
        out["agreement"] = {k: v.to_dict() for k, v in ha.estimates.items()}
    return out
