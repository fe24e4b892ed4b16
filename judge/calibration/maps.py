"""Calibration maps: from a judge's raw verdict to what people would have said.

- Likert scores: an isotonic (monotone, piecewise-linear) map from the judge's score — or
  its mean over samples — to the human consensus, clipped to the scale.
- Labels (categorical, binary, pairwise): a confusion-based relabelling. Each judge label
  is mapped to the human label it most often corresponds to in the training data
  (argmax of P(human | judge)); ties keep the judge's own label when it is among the
  tied, and a label the judge never gave maps to itself. The full conditional
  distribution is kept beside the map (``probabilities``) for callers that want a soft
  correction, but ``apply`` is deterministic so every label statistic still applies.

:func:`fit_map` fits on all the data and measures, with seeded k-fold cross-validation,
how agreement changes on held-out folds (before/after MAE and kappa, with intervals).
Maps serialise to JSON (thresholds or a label table) and are applied later with
``apply``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import cohen_kappa_score
from sklearn.model_selection import KFold

from judge.calibration.agreement import (
    Estimate,
    ScaleSpec,
    bootstrap_indices,
    estimate,
    kappa_from_confusion,
    pair_confusions,
    weights_from_indices,
)
from judge.errors import CalibrationError


@dataclass(frozen=True)
class IsotonicMap:
    """Monotone map of likert scores: linear interpolation between fitted thresholds."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    scale: ScaleSpec
    n: int

    kind = "isotonic"

    @classmethod
    def fit(cls, judge: np.ndarray, human: np.ndarray, scale: ScaleSpec) -> IsotonicMap:
        reg = IsotonicRegression(y_min=scale.min, y_max=scale.max, increasing=True,
                                 out_of_bounds="clip")
        reg.fit(np.asarray(judge, float), np.asarray(human, float))
        return cls(tuple(map(float, reg.X_thresholds_)), tuple(map(float, reg.y_thresholds_)),
                   scale, int(len(judge)))

    def apply(self, score: Any) -> Any:
        """The calibrated score of a raw score (a number or an array); None stays None."""
        if score is None:
            return None
        arr = np.asarray(score, float)
        out = np.where(np.isfinite(arr), np.interp(arr, self.x, self.y), np.nan)
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "x": list(self.x), "y": list(self.y), "n": self.n,
                "scale": self.scale.to_dict()}


@dataclass(frozen=True)
class LabelMap:
    """Relabelling of judge labels by the confusion with human labels."""

    mapping: dict[str, str]
    probabilities: dict[str, dict[str, float]]
    scale: ScaleSpec
    n: int

    kind = "labels"

    @classmethod
    def fit(cls, judge: np.ndarray, human: np.ndarray, scale: ScaleSpec) -> LabelMap:
        names = scale.level_names
        k = len(names)
        ji = np.searchsorted(scale.codes, scale.to_level(judge))
        hi = np.searchsorted(scale.codes, scale.to_level(human))
        conf = np.zeros((k, k))
        np.add.at(conf, (ji, hi), 1.0)
        mapping, probs = {}, {}
        for a in range(k):
            row = conf[a]
            if row.sum() == 0:
                mapping[names[a]] = names[a]
                probs[names[a]] = {names[b]: float(a == b) for b in range(k)}
                continue
            best = np.flatnonzero(row == row.max())
            mapping[names[a]] = names[a] if a in best else names[int(best[0])]
            probs[names[a]] = {names[b]: float(row[b] / row.sum()) for b in range(k)}
        return cls(mapping, probs, scale, int(len(judge)))

    def apply(self, label: Any) -> Any:
        """The calibrated label of a raw label; None stays None."""
        if label is None:
            return None
        try:
            return self.mapping[str(label)]
        except KeyError:
            raise CalibrationError(
                f"Unknown label {label!r} for this calibration map. "
                f"Labels: {', '.join(self.mapping)}."
            ) from None

    def apply_codes(self, codes: np.ndarray) -> np.ndarray:
        """Calibrated codes of raw codes (NaN stays NaN)."""
        names = self.scale.level_names
        table = np.array([names.index(self.mapping[nm]) for nm in names], float)
        codes = np.asarray(codes, float)
        out = np.full(codes.shape, np.nan)
        ok = np.isfinite(codes)
        out[ok] = self.scale.codes[table[np.searchsorted(self.scale.codes,
                                                         self.scale.to_level(codes[ok]))]
                                   .astype(int)]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "mapping": dict(self.mapping),
                "probabilities": self.probabilities, "n": self.n, "scale": self.scale.to_dict()}


CalibrationMap = IsotonicMap | LabelMap


def load_map(data: Mapping[str, Any]) -> CalibrationMap:
    """A map back from :meth:`to_dict` output."""
    kind = data.get("kind")
    scale = ScaleSpec.from_dict(data["scale"])
    if kind == "isotonic":
        return IsotonicMap(tuple(data["x"]), tuple(data["y"]), scale, int(data["n"]))
    if kind == "labels":
        return LabelMap(dict(data["mapping"]), dict(data["probabilities"]), scale, int(data["n"]))
    raise CalibrationError(f"Unknown calibration map kind {kind!r}. Options: isotonic, labels.")


def _fit(judge: np.ndarray, human: np.ndarray, scale: ScaleSpec) -> CalibrationMap:
    if scale.kind == "likert":
        return IsotonicMap.fit(judge, human, scale)
    return LabelMap.fit(judge, human, scale)


def _apply_codes(cmap: CalibrationMap, codes: np.ndarray) -> np.ndarray:
    if isinstance(cmap, IsotonicMap):
        return np.asarray(cmap.apply(codes), float)
    return cmap.apply_codes(codes)


@dataclass
class MapFit:
    """A map fitted on all the data, with held-out agreement before and after it."""

    map: CalibrationMap
    before: dict[str, Estimate]
    after: dict[str, Estimate]
    improvement: dict[str, Estimate]
    folds: int
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "map": self.map.to_dict(),
            "folds": self.folds,
            "n": self.n,
            "held_out": {
                "before": {k: v.to_dict() for k, v in self.before.items()},
                "after": {k: v.to_dict() for k, v in self.after.items()},
                "improvement": {k: v.to_dict() for k, v in self.improvement.items()},
            },
        }


def fit_map(judge: np.ndarray, human: np.ndarray, scale: ScaleSpec, *, folds: int = 5,
            n_boot: int = 1000, seed: int | None = 0) -> MapFit:
    """Fit a calibration map and measure it on held-out folds.

    Args:
        judge: the judge's codes per item (a likert score or mean over samples).
        human: the human consensus codes per item, aligned.
        scale: the rating scale; likert gets an isotonic map, labels a relabelling.
        folds: k of the seeded, shuffled k-fold cross-validation.
        n_boot: bootstrap resamples for the intervals; ``seed`` seeds folds and resamples.

    ``before``/``after`` hold MAE (ordered scales), exact agreement and the primary kappa
    over all held-out predictions; ``improvement`` holds the paired differences (MAE:
    before − after; kappa: after − before), so a positive value is always better.
    """
    j = np.asarray(judge, float)
    h = np.asarray(human, float)
    keep = np.isfinite(j) & np.isfinite(h)
    j, h = j[keep], h[keep]
    n = int(j.size)
    if n < 2 * folds or folds < 2:
        raise CalibrationError(
            f"A calibration map with {folds}-fold cross-validation needs at least "
            f"{2 * max(folds, 2)} items rated by both the judge and people; got {n}."
        )
    held = np.full(n, np.nan)
    for train, test in KFold(n_splits=folds, shuffle=True, random_state=seed).split(j):
        held[test] = _apply_codes(_fit(j[train], h[train], scale), j[test])
    # only the figures reported here, from the same resamples on both sides (paired)
    idx = bootstrap_indices(n, n_boot, seed)
    w = weights_from_indices(idx, n)
    codes, wt = scale.codes, ("quadratic" if scale.ordered else None)
    hl = scale.to_level(h)
    hi = np.searchsorted(codes, hl)
    before: dict[str, Estimate] = {}
    after: dict[str, Estimate] = {}
    improvement: dict[str, Estimate] = {}
    reps: dict[str, dict[str, np.ndarray]] = {"before": {}, "after": {}}
    points: dict[str, dict[str, float]] = {"before": {}, "after": {}}
    for side, pred in (("before", j), ("after", held)):
        pl = scale.to_level(pred)
        hits = (pl == hl).astype(float)
        points[side]["exact_agreement"] = float(hits.mean())
        reps[side]["exact_agreement"] = hits[idx].mean(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            points[side][scale.primary] = float(cohen_kappa_score(hl, pl, labels=codes,
                                                                  weights=wt))
        reps[side][scale.primary] = kappa_from_confusion(
            pair_confusions(hi, np.searchsorted(codes, pl), codes.size, w), wt)
        if scale.ordered:
            err = np.abs(scale.to_value(pred) - scale.to_value(h))
            points[side]["mae"] = float(err.mean())
            reps[side]["mae"] = err[idx].mean(1)
    for name in points["before"]:
        before[name] = estimate(points["before"][name], reps["before"][name], n)
        after[name] = estimate(points["after"][name], reps["after"][name], n)
        sign = -1.0 if name == "mae" else 1.0  # lower MAE is better
        improvement[name] = estimate(
            sign * (points["after"][name] - points["before"][name]),
            sign * (reps["after"][name] - reps["before"][name]), n)
    return MapFit(_fit(j, h, scale), before, after, improvement, folds, n)
