"""The human ceiling: how well people agree with each other, and whether the judge agrees
with people as well as a typical person does.

Leave-one-out, with the judge *standing in for* a rater: for every rater ``r`` and every
item ``r`` rated, the consensus of the *other* raters is computed once; rater ``r`` is
compared with it, and so is the judge. Both sides therefore face exactly the same targets
(built from the same number of people), and the comparison is paired. All (rater, item)
comparisons are pooled into one confusion matrix per side, so a rater who rated more items
weighs more — "a typical rating", not "a typical rater".

Consensus of the others: the majority level on label and binary scales (ties broken at
random, seeded, independently per comparison); the median on ordered scales (an even
number of others can give a half level, rounded half up for the categorical figures).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score

from judge.calibration.agreement import (
    AlphaLevel,
    Estimate,
    ScaleSpec,
    bootstrap_weights,
    estimate,
    fleiss,
    kappa_from_confusion,
    krippendorff_alpha,
    pair_confusions,
)
from judge.errors import CalibrationError


@dataclass
class HumanAgreement:
    """Agreement among people on the items they share."""

    estimates: dict[str, Estimate]
    n_items: int
    n_raters: int

    def to_dict(self) -> dict[str, Any]:
        return {"n_items": self.n_items, "n_raters": self.n_raters,
                "estimates": {k: v.to_dict() for k, v in self.estimates.items()}}


@dataclass
class CeilingReport:
    """Judge leave-one-out agreement beside typical human leave-one-out agreement.

    ``human``, ``judge`` and ``gap`` (human minus judge) are for ``stat``; ``figures``
    holds the same triple for every other figure computed. A positive gap means the judge
    agrees with people less well than people agree with each other.
    """

    stat: str
    human: Estimate
    judge: Estimate
    gap: Estimate
    n_items: int
    n_raters: int
    figures: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    human_agreement: HumanAgreement | None = None

    def summary(self) -> str:
        """One line: judge agreement vs typical human agreement, with intervals."""
        return (f"{self.stat}: judge {self.judge} vs typical human {self.human}; "
                f"gap (human − judge) {self.gap}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "stat": self.stat,
            "human": self.human.to_dict(),
            "judge": self.judge.to_dict(),
            "gap": self.gap.to_dict(),
            "n_items": self.n_items,
            "n_raters": self.n_raters,
            "figures": {k: {s: e.to_dict() for s, e in v.items()} for k, v in self.figures.items()},
            "human_agreement": None if self.human_agreement is None
            else self.human_agreement.to_dict(),
            "summary": self.summary(),
        }


def human_agreement(matrix: np.ndarray, scale: ScaleSpec, *, n_boot: int = 1000,
                    seed: int | None = 0, max_pairwise_raters: int = 10) -> HumanAgreement:
    """Human–human agreement of a ratings matrix (items × raters, codes, NaN = missing).

    Krippendorff's alpha (nominal; also ordinal and interval on ordered scales), Fleiss'
    kappa, and — with at most ``max_pairwise_raters`` raters, since pairs grow
    quadratically — the mean of Cohen's kappa (the scale's primary weighting) over rater
    pairs sharing two or more items. Only items with two or more ratings count.
    """
    m = np.asarray(matrix, float)
    multi = m[np.isfinite(m).sum(1) >= 2]
    if multi.shape[0] == 0:
        raise CalibrationError("Human agreement needs items rated by two or more people; none are.")
    est: dict[str, Estimate] = {}
    levels: list[AlphaLevel] = ["nominal", "ordinal", "interval"] if scale.ordered else [
        "nominal"]
    for lvl in levels:
        est[f"krippendorff_alpha_{lvl}"] = krippendorff_alpha(multi, scale, lvl, n_boot=n_boot,
                                                              seed=seed)
    est["fleiss_kappa"] = fleiss(multi, scale, n_boot=n_boot, seed=seed)
    n_raters = int((np.isfinite(multi).sum(0) > 0).sum())
    if m.shape[1] <= max_pairwise_raters:
        est["pairwise_cohen_kappa_mean"] = _pairwise_kappa(multi, scale, n_boot, seed)
    return HumanAgreement(est, int(multi.shape[0]), n_raters)


def _pairwise_kappa(m: np.ndarray, scale: ScaleSpec, n_boot: int, seed: int | None) -> Estimate:
    codes = scale.codes
    k = codes.size
    wt = "quadratic" if scale.ordered else None
    lv = scale.to_level(m)
    n = m.shape[0]
    w = bootstrap_weights(n, n_boot, seed)
    points, reps = [], []
    for a, b in combinations(range(m.shape[1]), 2):
        both = np.isfinite(lv[:, a]) & np.isfinite(lv[:, b])
        if both.sum() < 2:
            continue
        ia = np.searchsorted(codes, lv[both, a])
        ib = np.searchsorted(codes, lv[both, b])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            points.append(cohen_kappa_score(lv[both, a], lv[both, b], labels=codes, weights=wt))
        reps.append(kappa_from_confusion(pair_confusions(ia, ib, k, w[:, both]), wt))
    if not points:
        return Estimate(math.nan, math.nan, math.nan, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimate(float(np.nanmean(points)), np.nanmean(np.stack(reps), axis=0), n)


def consensus(matrix: np.ndarray, scale: ScaleSpec, *, seed: int | None = 0) -> np.ndarray:
    """Consensus per item: majority level (seeded random tie-break) or median on ordered
    scales. NaN for items nobody rated."""
    m = np.asarray(matrix, float)
    rated = np.isfinite(m).sum(1) > 0
    if scale.ordered:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.nanmedian(m, axis=1)
    counts = np.stack([(scale.to_level(m) == c).sum(1) for c in scale.codes], 1).astype(float)
    rng = np.random.default_rng(seed)
    pick = np.argmax(counts + rng.random(counts.shape) * 0.5, axis=1)
    return np.where(rated, scale.codes[pick], np.nan)


def loo_ceiling(matrix: np.ndarray, judge: np.ndarray, scale: ScaleSpec, *,
                stat: str | None = None, min_others: int = 1, n_boot: int = 1000,
                seed: int | None = 0, with_human_agreement: bool = True) -> CeilingReport:
    """Leave-one-out comparison of the judge with people (see the module docstring).

    Args:
        matrix: human codes, items × raters, NaN where a rater did not rate an item.
        judge: the judge's code per item (NaN where it gave none).
        scale: the rating scale.
        stat: the headline figure; default the scale's primary kappa.
        min_others: how many other ratings an item needs for a consensus.
        n_boot: bootstrap resamples over items; ``seed`` seeds them and the tie-breaks.
        with_human_agreement: also compute alpha/Fleiss/pairwise kappa among people.
    """
    m = np.asarray(matrix, float)
    j = np.asarray(judge, float)
    if m.ndim != 2 or j.shape != (m.shape[0],):
        raise CalibrationError(
            f"matrix must be items × raters and judge one value per item; got {m.shape} "
            f"and {j.shape}."
        )
    stat = stat or scale.primary
    codes = scale.codes
    k = codes.size
    rng = np.random.default_rng(seed)
    lv = scale.to_level(m)
    counts = np.stack([(lv == c).sum(1) for c in codes], 1).astype(float)
    n_items = m.shape[0]
    h_cells = np.zeros((n_items, k * k))
    j_cells = np.zeros((n_items, k * k))
    h_abs = np.zeros(n_items)
    j_abs = np.zeros(n_items)
    n_cmp = np.zeros(n_items)
    pooled: dict[str, list[np.ndarray]] = {"target": [], "human": [], "judge": []}
    j_level = scale.to_level(j)
    for r in range(m.shape[1]):
        own = m[:, r]
        others_n = np.isfinite(m).sum(1) - np.isfinite(own)
        use = np.isfinite(own) & (others_n >= min_others) & np.isfinite(j)
        if not use.any():
            continue
        if scale.ordered:
            rest = m.copy()
            rest[:, r] = np.nan
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                target = np.nanmedian(rest[use], axis=1)
        else:
            oc = counts[use] - (lv[use, r][:, None] == codes[None, :])
            target = codes[np.argmax(oc + rng.random(oc.shape) * 0.5, axis=1)]
        t_idx = np.searchsorted(codes, scale.to_level(target))
        h_idx = np.searchsorted(codes, lv[use, r])
        jj_idx = np.searchsorted(codes, j_level[use])
        rows = np.flatnonzero(use)
        np.add.at(h_cells, (rows, t_idx * k + h_idx), 1.0)
        np.add.at(j_cells, (rows, t_idx * k + jj_idx), 1.0)
        tv = scale.to_value(target)
        h_abs[rows] += np.abs(scale.to_value(own[use]) - tv)
        j_abs[rows] += np.abs(scale.to_value(j[use]) - tv)
        n_cmp[rows] += 1
        pooled["target"].append(scale.to_level(target))
        pooled["human"].append(lv[use, r])
        pooled["judge"].append(j_level[use])
    keep = n_cmp > 0
    n = int(keep.sum())
    if n < 2:
        raise CalibrationError(
            f"The leave-one-out ceiling needs items with a judge verdict and at least "
            f"{min_others + 1} ratings; found {n}."
        )
    h_cells, j_cells, h_abs, j_abs, n_cmp = (x[keep] for x in (h_cells, j_cells, h_abs, j_abs,
                                                              n_cmp))
    target = np.concatenate(pooled["target"])
    w = bootstrap_weights(n, n_boot, seed)
    h_conf = (w @ h_cells).reshape(-1, k, k)
    j_conf = (w @ j_cells).reshape(-1, k, k)
    figures: dict[str, dict[str, Estimate]] = {}

    def add(name: str, hp: float, jp: float, hb: np.ndarray, jb: np.ndarray) -> None:
        figures[name] = {"human": estimate(hp, hb, n), "judge": estimate(jp, jb, n),
                         "gap": estimate(hp - jp, hb - jb, n)}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weightings: list[tuple[str, str | None]] = [("cohen_kappa", None)]
        if scale.ordered:
            weightings += [("cohen_kappa_linear", "linear"), ("cohen_kappa_quadratic", "quadratic")]
        for name, wt in weightings:
            add(name,
                cohen_kappa_score(target, np.concatenate(pooled["human"]), labels=codes,
                                  weights=wt),
                cohen_kappa_score(target, np.concatenate(pooled["judge"]), labels=codes,
                                  weights=wt),
                kappa_from_confusion(h_conf, wt), kappa_from_confusion(j_conf, wt))
        tot = h_cells.sum()
        add("exact_agreement",
            float(np.mean(target == np.concatenate(pooled["human"]))),
            float(np.mean(target == np.concatenate(pooled["judge"]))),
            np.trace(h_conf, axis1=1, axis2=2) / h_conf.sum(axis=(1, 2)),
            np.trace(j_conf, axis1=1, axis2=2) / j_conf.sum(axis=(1, 2)))
        if scale.ordered:
            wn = w @ n_cmp
            # MAE is lower-is-better: its gap is judge − human so positive still means worse
            figures["mae"] = {
                "human": estimate(h_abs.sum() / tot, (w @ h_abs) / wn, n),
                "judge": estimate(j_abs.sum() / tot, (w @ j_abs) / wn, n),
                "gap": estimate((j_abs.sum() - h_abs.sum()) / tot, (w @ (j_abs - h_abs)) / wn, n),
            }
    if stat not in figures:
        raise CalibrationError(
            f"Unknown ceiling figure '{stat}'. Options: {', '.join(sorted(figures))}."
        )
    ha = human_agreement(m, scale, n_boot=n_boot, seed=seed) if with_human_agreement else None
    n_raters = int((np.isfinite(m).sum(0) > 0).sum())
    f = figures[stat]
    return CeilingReport(stat, f["human"], f["judge"], f["gap"], n, n_raters, figures, ha)
