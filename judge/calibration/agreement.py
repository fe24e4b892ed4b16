"""Agreement between a judge and people, each figure with a bootstrap confidence interval.

Point estimates come from the library references (scikit-learn, scipy, krippendorff).
The bootstrap resamples *items* with replacement; for speed, the resampled figures are
computed in one vectorised pass from per-item contributions (confusion cells, value
counts, moments), and the tests check that pass against the library on every resample
they try. Percentile intervals, 95% by default, reproducible with ``seed``.

Which figures apply is decided by a :class:`ScaleSpec`: every scale gets exact agreement,
Cohen's kappa, Krippendorff's alpha (nominal) and the confusion matrix; label and binary
scales get macro F1; ordered scales (likert, labels with scores) add weighted kappas,
Spearman, Kendall tau-b, Pearson, MAE and ordinal/interval alpha.

Categorical figures (kappa, exact agreement, F1, alpha, confusion) need levels: a
fractional likert value (the mean of several judge samples, the median of an even number
of raters) is rounded to the nearest level, half up. Correlations and MAE use raw values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import krippendorff
import numpy as np
from scipy import stats
from sklearn.metrics import cohen_kappa_score, confusion_matrix, f1_score

from judge.errors import CalibrationError

ScaleKind = Literal["likert", "labels", "binary"]
AlphaLevel = Literal["nominal", "ordinal", "interval"]

_PASS_WORDS = {"pass", "passed", "true", "yes", "1", "1.0", "ok"}
_FAIL_WORDS = {"fail", "failed", "false", "no", "0", "0.0"}


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A figure with its 95% confidence interval over ``n`` items."""

    value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; NaN becomes None."""
        return {"value": _num(self.value), "low": _num(self.low), "high": _num(self.high),
                "n": int(self.n)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Estimate:
        def f(x: Any) -> float:
            return float("nan") if x is None else float(x)

        return cls(f(data["value"]), f(data["low"]), f(data["high"]), int(data["n"]))

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n})"


@dataclass
class AgreementReport:
    """Named estimates of judge–human agreement, plus the confusion matrix.

    ``primary`` names the figure a gate reads (Cohen's kappa, quadratic-weighted on
    ordered scales).
    """

    estimates: dict[str, Estimate]
    primary: str
    n_items: int
    labels: list[str] = field(default_factory=list)
    confusion: list[list[int]] | None = None

    def __getitem__(self, name: str) -> Estimate:
        try:
            return self.estimates[name]
        except KeyError:
            raise CalibrationError(
                f"No figure '{name}' in this agreement report. "
                f"Available: {', '.join(sorted(self.estimates))}."
            ) from None

    @property
    def kappa(self) -> Estimate:
        """The primary figure."""
        return self[self.primary]

    def to_dict(self) -> dict[str, Any]:
        return {
            "primary": self.primary,
            "n_items": self.n_items,
            "estimates": {k: v.to_dict() for k, v in self.estimates.items()},
            "confusion": {"labels": self.labels, "matrix": self.confusion}
            if self.confusion is not None else None,
        }


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


# --- scales ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleSpec:
    """What the ratings are, which decides how they are encoded and which figures apply.

    Values are encoded to float codes: a likert score is its own code; label ``i`` of
    ``labels`` is code ``i``; binary fail/pass is 0/1. Missing values are NaN.
    """

    kind: ScaleKind
    min: int | None = None
    max: int | None = None
    labels: tuple[str, ...] = ()
    scores: tuple[float, ...] | None = None
    pass_threshold: float | None = None

    @classmethod
    def likert(cls, min: int, max: int, pass_threshold: float | None = None) -> ScaleSpec:
        if not min < max:
            raise CalibrationError(f"A likert scale needs min < max; got {min}..{max}.")
        return cls("likert", min=int(min), max=int(max), pass_threshold=pass_threshold)

    @classmethod
    def categorical(cls, labels: Sequence[str], scores: Sequence[float] | None = None,
                    pass_threshold: float | None = None) -> ScaleSpec:
        """Named labels; with ``scores`` the labels are ordered by them (ordinal)."""
        labels = tuple(str(x) for x in labels)
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise CalibrationError(f"A label scale needs two or more unique labels; got {labels}.")
        if scores is not None and len(scores) != len(labels):
            raise CalibrationError(
                f"{len(scores)} scores given for {len(labels)} labels {list(labels)}."
            )
        if scores is not None:
            order = np.argsort(np.asarray(scores, float), kind="stable")
            labels = tuple(labels[i] for i in order)
            scores = tuple(float(scores[i]) for i in order)
        return cls("labels", labels=labels, scores=None if scores is None else tuple(scores),
                   pass_threshold=pass_threshold)

    @classmethod
    def binary(cls) -> ScaleSpec:
        return cls("binary", labels=("fail", "pass"))

    @classmethod
    def from_rubric(cls, rubric_or_scale: Any) -> ScaleSpec:
        """From a :class:`judge.rubrics.Rubric` (or its ``scale``)."""
        scale = getattr(rubric_or_scale, "scale", rubric_or_scale)
        threshold = getattr(rubric_or_scale, "pass_threshold", None)
        kind = getattr(scale, "type", None)
        if kind == "likert":
            return cls.likert(scale.min, scale.max, threshold)
        if kind == "binary":
            return cls.binary()
        if kind == "categorical":
            return cls.categorical([x.label for x in scale.labels],
                                   [x.score for x in scale.labels], threshold)
        if kind == "pairwise":
            labels = ("a", "tie", "b") if scale.allow_tie else ("a", "b")
            return cls.categorical(labels)
        raise CalibrationError(
            f"Cannot calibrate scale type {kind!r}. Options: likert, binary, categorical, pairwise."
        )

    @property
    def ordered(self) -> bool:
        return self.kind == "likert" or (self.kind == "labels" and self.scores is not None)

    @property
    def codes(self) -> np.ndarray:
        """Every level's code, in order."""
        if self.kind == "likert":
            assert self.min is not None and self.max is not None
            return np.arange(self.min, self.max + 1, dtype=float)
        return np.arange(len(self.labels), dtype=float)

    @property
    def level_names(self) -> list[str]:
        if self.kind == "likert":
            return [str(int(c)) for c in self.codes]
        return list(self.labels)

    @property
    def level_values(self) -> np.ndarray:
        """The numeric value of every level (for correlations, MAE, interval alpha)."""
        if self.kind == "labels" and self.scores is not None:
            return np.asarray(self.scores, float)
        return self.codes

    @property
    def primary(self) -> str:
        return "cohen_kappa_quadratic" if self.ordered else "cohen_kappa"

    def to_value(self, codes: Sequence[float] | np.ndarray) -> np.ndarray:
        """Numeric values of codes (identity except for labels with scores)."""
        codes = np.asarray(codes, float)
        if self.kind == "labels" and self.scores is not None:
            return np.interp(codes, self.codes, self.level_values)
        return codes

    def to_level(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """Round (possibly fractional) codes to the nearest level, half up; NaN stays."""
        values = np.asarray(values, float)
        lo, hi = self.codes[0], self.codes[-1]
        return np.clip(np.floor(values + 0.5), lo, hi)

    def encode(self, values: Iterable[Any]) -> np.ndarray:
        """Raw ratings (labels, numbers, booleans, strings of numbers) to float codes."""
        out = []
        for v in values:
            out.append(self._encode_one(v))
        return np.asarray(out, float)

    def decode(self, codes: Iterable[float]) -> list[Any]:
        """Codes back to labels (label scales) or scores (likert)."""
        names = self.level_names
        res: list[Any] = []
        for c in codes:
            if c is None or not math.isfinite(c):
                res.append(None)
            elif self.kind == "likert":
                res.append(float(c))
            else:
                res.append(names[int(round(c))])
        return res

    def _encode_one(self, v: Any) -> float:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return math.nan
        if isinstance(v, str):
            v = v.strip()
            if v == "":
                return math.nan
        if self.kind == "likert":
            try:
                x = float(v)
            except (TypeError, ValueError):
                raise CalibrationError(
                    f"Rating {v!r} is not a number on the likert scale {self.min}..{self.max}."
                ) from None
            if not (self.min is not None and self.max is not None and self.min <= x <= self.max):
                raise CalibrationError(
                    f"Rating {x:g} is outside the likert scale {self.min}..{self.max}."
                )
            return x
        if self.kind == "binary":
            if isinstance(v, bool):
                return float(v)
            key = str(v).strip().lower()
            if key in _PASS_WORDS:
                return 1.0
            if key in _FAIL_WORDS:
                return 0.0
            raise CalibrationError(
                f"Rating {v!r} is not a pass/fail value. Options: "
                f"{', '.join(sorted(_PASS_WORDS | _FAIL_WORDS))}."
            )
        s = str(v)
        if s in self.labels:
            return float(self.labels.index(s))
        lowered = [x.lower() for x in self.labels]
        if s.lower() in lowered:
            return float(lowered.index(s.lower()))
        from judge.errors import did_you_mean

        close = did_you_mean(s, self.labels)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise CalibrationError(
            f"Unknown label {s!r} for this scale.{hint} Labels: {', '.join(self.labels)}."
        )

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "min": self.min, "max": self.max, "labels": list(self.labels),
                "scores": None if self.scores is None else list(self.scores),
                "pass_threshold": self.pass_threshold}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScaleSpec:
        scores = data.get("scores")
        return cls(data["kind"], data.get("min"), data.get("max"), tuple(data.get("labels", ())),
                   None if scores is None else tuple(scores), data.get("pass_threshold"))


# --- bootstrap machinery ---------------------------------------------------------------


def bootstrap_weights(n: int, n_boot: int = 1000, seed: int | None = 0) -> np.ndarray:
    """How often each of ``n`` items is drawn in each of ``n_boot`` resamples (B × n)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    offsets = (np.arange(n_boot) * n)[:, None]
    return np.bincount((idx + offsets).ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(
        float)


def bootstrap_indices(n: int, n_boot: int = 1000, seed: int | None = 0) -> np.ndarray:
    """The resampled item indices (B × n), drawn exactly as :func:`bootstrap_weights`."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n))


def weights_from_indices(idx: np.ndarray, n: int) -> np.ndarray:
    b = idx.shape[0]
    offsets = (np.arange(b) * n)[:, None]
    return np.bincount((idx + offsets).ravel(), minlength=b * n).reshape(b, n).astype(float)


def estimate(value: float, replicates: np.ndarray, n: int, level: float = 0.95) -> Estimate:
    """A point estimate with the percentile interval of its bootstrap replicates."""
    value = float(value)
    reps = np.asarray(replicates, float)
    reps = reps[np.isfinite(reps)]
    if not math.isfinite(value) or reps.size == 0:
        return Estimate(value, math.nan, math.nan, n)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(reps, [tail, 100 - tail])
    return Estimate(value, float(low), float(high), n)


# --- vectorised figures (B resamples at once) ------------------------------------------


def pair_confusions(a: np.ndarray, b: np.ndarray, k: int, weights: np.ndarray) -> np.ndarray:
    """Weighted confusion matrices (B × k × k) of level indices ``a`` (rows) vs ``b``."""
    cells = np.zeros((a.size, k * k))
    cells[np.arange(a.size), a * k + b] = 1.0
    return (weights @ cells).reshape(-1, k, k)


def kappa_from_confusion(conf: np.ndarray, weights: str | None = None) -> np.ndarray:
    """Cohen's kappa of each confusion matrix (… × k × k), as sklearn computes it."""
    k = conf.shape[-1]
    total = conf.sum(axis=(-2, -1), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = conf.sum(-1, keepdims=True) * conf.sum(-2, keepdims=True) / total
        i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
        if weights is None:
            w = (i != j).astype(float)
        elif weights == "linear":
            w = np.abs(i - j).astype(float)
        else:
            w = ((i - j) ** 2).astype(float)
        return 1 - (w * conf).sum(axis=(-2, -1)) / (w * expected).sum(axis=(-2, -1))


def f1_macro_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Macro F1 over the labels that occur (in truth or prediction), as sklearn does."""
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    fp = conf.sum(-2) - tp  # predicted (columns) but wrong
    fn = conf.sum(-1) - tp
    denom = 2 * tp + fp + fn
    present = denom > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(present, 2 * tp / np.where(present, denom, 1), 0.0)
        return f1.sum(-1) / present.sum(-1)


def alpha_from_coincidence(o: np.ndarray, values: np.ndarray, level: AlphaLevel) -> np.ndarray:
    """Krippendorff's alpha from coincidence matrices (… × V × V) over ordered ``values``."""
    n_c = o.sum(-1)
    n = n_c.sum(-1)
    v = np.asarray(values, float)
    if level == "nominal":
        delta = np.broadcast_to(1.0 - np.eye(v.size), o.shape)
    elif level == "interval":
        delta = np.broadcast_to((v[:, None] - v[None, :]) ** 2, o.shape)
    else:  # ordinal: (sum of marginals from c to k, minus half the ends) squared
        cum = np.cumsum(n_c, axis=-1)
        c_idx, k_idx = np.meshgrid(np.arange(v.size), np.arange(v.size), indexing="ij")
        lo, hi = np.minimum(c_idx, k_idx), np.maximum(c_idx, k_idx)
        before_lo = np.where(lo > 0, np.take(cum, np.maximum(lo - 1, 0), axis=-1), 0.0)
        span = np.take(cum, hi, axis=-1) - before_lo
        ends = (np.take(n_c, c_idx, axis=-1) + np.take(n_c, k_idx, axis=-1)) / 2
        delta = (span - ends) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        d_o = (o * delta).sum(axis=(-2, -1))
        d_e = (n_c[..., :, None] * n_c[..., None, :] * delta).sum(axis=(-2, -1))
        return 1 - (n - 1) * d_o / d_e


def unit_coincidences(counts: np.ndarray) -> np.ndarray:
    """Per-item contributions (n × V²) to the coincidence matrix, from value counts (n × V)."""
    m = counts.sum(1)
    pairable = m >= 2
    outer = counts[:, :, None] * counts[:, None, :]
    outer -= np.einsum("ij,jk->ijk", counts, np.eye(counts.shape[1]))
    with np.errstate(invalid="ignore", divide="ignore"):
        contrib = np.where(pairable[:, None, None], outer / np.maximum(m - 1, 1)[:, None, None], 0)
    return contrib.reshape(counts.shape[0], -1)


def level_counts(matrix: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Value counts (items × levels) of a ratings matrix (items × raters, NaN = missing)."""
    matrix = np.asarray(matrix, float)
    return np.stack([(matrix == c).sum(1) for c in codes], axis=1).astype(float)


def krippendorff_alpha(matrix: np.ndarray, scale: ScaleSpec, level: AlphaLevel = "nominal",
                       n_boot: int = 1000, seed: int | None = 0) -> Estimate:
    """Krippendorff's alpha of a ratings matrix (items × raters, codes, NaN missing).

    Any number of raters, any missing pattern; items with fewer than two ratings add
    nothing (they are not pairable). The point estimate is ``krippendorff.alpha``.
    """
    matrix = scale.to_level(np.asarray(matrix, float))
    codes = scale.codes
    counts = level_counts(matrix, codes)
    values = codes if level == "nominal" else (
        scale.level_values if level == "interval" else codes)
    point = _kripp(counts, values, level)
    n = int(counts.shape[0])
    w = bootstrap_weights(n, n_boot, seed)
    o = (w @ unit_coincidences(counts)).reshape(n_boot, codes.size, codes.size)
    return estimate(point, alpha_from_coincidence(o, values, level), n)


def _kripp(counts: np.ndarray, values: np.ndarray, level: AlphaLevel) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(krippendorff.alpha(value_counts=counts, value_domain=values,
                                            level_of_measurement=level))
        except (ValueError, ZeroDivisionError):
            return math.nan


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from category counts per item (items × categories).

    Items may have different numbers of raters: each item's observed agreement
    ``P_i = (sum_j n_ij² − n_i) / (n_i (n_i − 1))`` is averaged with equal weight over
    the items that have two or more ratings, and the chance agreement uses the category
    shares over all of their ratings. With a constant number of raters this is Fleiss
    (1971) exactly; items with fewer than two ratings are dropped.
    """
    return float(_fleiss_batch(np.asarray(counts, float), None)[0])


def _fleiss_batch(counts: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    m = counts.sum(1)
    keep = m >= 2
    counts, m = counts[keep], m[keep]
    w = np.ones((1, counts.shape[0])) if weights is None else weights[:, keep]
    p_i = ((counts ** 2).sum(1) - m) / (m * (m - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        p_bar = (w @ p_i) / w.sum(1)
        shares = w @ counts
        shares = shares / shares.sum(1, keepdims=True)
        p_e = (shares ** 2).sum(1)
        return (p_bar - p_e) / (1 - p_e)


def fleiss(matrix: np.ndarray, scale: ScaleSpec, n_boot: int = 1000,
           seed: int | None = 0) -> Estimate:
    """Fleiss' kappa of a ratings matrix (items × raters) with a bootstrap interval."""
    counts = level_counts(scale.to_level(matrix), scale.codes)
    counts = counts[counts.sum(1) >= 2]
    n = int(counts.shape[0])
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    w = bootstrap_weights(n, n_boot, seed)
    return estimate(fleiss_kappa(counts), _fleiss_batch(counts, w), n)


# --- judge vs people -------------------------------------------------------------------


def agreement(judge: Sequence[float] | np.ndarray, human: Sequence[float] | np.ndarray,
              scale: ScaleSpec, *, n_boot: int = 1000, seed: int | None = 0) -> AgreementReport:
    """Every applicable figure of agreement between a judge and people, one value per item.

    Args:
        judge: the judge's codes per item (:meth:`ScaleSpec.encode`; for likert, a score
            or the mean over samples).
        human: the human consensus codes per item, aligned with ``judge``.
        scale: decides encoding and which figures apply.
        n_boot: bootstrap resamples over items.
        seed: seed of the resampling.

    Items where either side is missing (NaN) are left out.
    """
    j = np.asarray(judge, float)
    h = np.asarray(human, float)
    if j.shape != h.shape or j.ndim != 1:
        raise CalibrationError(
            f"judge and human must be 1-d and aligned; got shapes {j.shape} and {h.shape}."
        )
    keep = np.isfinite(j) & np.isfinite(h)
    j, h = j[keep], h[keep]
    n = int(j.size)
    if n < 2:
        raise CalibrationError(f"Agreement needs at least 2 items rated by both; got {n}.")
    codes = scale.codes
    k = codes.size
    jl, hl = scale.to_level(j), scale.to_level(h)
    ji = np.searchsorted(codes, jl)
    hi = np.searchsorted(codes, hl)
    idx = bootstrap_indices(n, n_boot, seed)
    w = weights_from_indices(idx, n)
    conf_b = pair_confusions(hi, ji, k, w)  # rows human (truth), columns judge
    est: dict[str, Estimate] = {}
    est["exact_agreement"] = estimate(
        float(np.mean(jl == hl)),
        np.trace(conf_b, axis1=1, axis2=2) / conf_b.sum(axis=(1, 2)), n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kinds: list[tuple[str, str | None]] = [("cohen_kappa", None)]
        if scale.ordered:
            kinds += [("cohen_kappa_linear", "linear"), ("cohen_kappa_quadratic", "quadratic")]
        for name, wt in kinds:
            point = cohen_kappa_score(hl, jl, labels=codes, weights=wt)
            est[name] = estimate(point, kappa_from_confusion(conf_b, wt), n)
        if scale.kind in ("labels", "binary"):
            est["f1_macro"] = estimate(f1_score(hl, jl, average="macro"),
                                       f1_macro_from_confusion(conf_b), n)
        if scale.pass_threshold is not None:
            hp = scale.to_value(h) >= scale.pass_threshold
            jp = scale.to_value(j) >= scale.pass_threshold
            conf_p = pair_confusions(hp.astype(int), jp.astype(int), 2, w)
            est["f1_pass_fail"] = estimate(f1_score(hp, jp, average="macro"),
                                           f1_macro_from_confusion(conf_p), n)
        # alpha over the two "raters" (judge, human consensus) per item
        pair_counts = level_counts(np.stack([jl, hl], 1), codes)
        o = (w @ unit_coincidences(pair_counts)).reshape(n_boot, k, k)
        levels: list[AlphaLevel] = ["nominal"]
        if scale.ordered:
            levels += ["ordinal", "interval"]
        for lvl in levels:
            values = scale.level_values if lvl == "interval" else codes
            point = _kripp(pair_counts, values, lvl)
            est[f"krippendorff_alpha_{lvl}"] = estimate(
                point, alpha_from_coincidence(o, values, lvl), n)
        if scale.ordered:
            jv, hv = scale.to_value(j), scale.to_value(h)
            jb, hb = jv[idx], hv[idx]
            est["spearman"] = estimate(stats.spearmanr(jv, hv).statistic,
                                       _pearson_rows(stats.rankdata(jb, axis=1),
                                                     stats.rankdata(hb, axis=1)), n)
            est["kendall_tau_b"] = estimate(
                stats.kendalltau(jv, hv, variant="b").statistic,
                np.array([stats.kendalltau(a, b, variant="b").statistic
                          for a, b in zip(jb, hb, strict=True)]), n)
            est["pearson"] = estimate(stats.pearsonr(jv, hv).statistic, _pearson_rows(jb, hb), n)
            est["mae"] = estimate(float(np.mean(np.abs(jv - hv))),
                                  np.abs(jb - hb).mean(1), n)
    conf = confusion_matrix(hl, jl, labels=codes)
    return AgreementReport(est, scale.primary, n, scale.level_names, conf.tolist())


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def cohen_kappa(a: np.ndarray, b: np.ndarray, scale: ScaleSpec, weights: str | None = None,
                n_boot: int = 1000, seed: int | None = 0) -> Estimate:
    """Cohen's kappa of two raters' codes (items where both rated), with an interval."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    al, bl = scale.to_level(a[keep]), scale.to_level(b[keep])
    n = int(al.size)
    if n < 2:
        return Estimate(math.nan, math.nan, math.nan, n)
    codes = scale.codes
    w = bootstrap_weights(n, n_boot, seed)
    conf_b = pair_confusions(np.searchsorted(codes, al), np.searchsorted(codes, bl), codes.size, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        point = cohen_kappa_score(al, bl, labels=codes, weights=weights)
    return estimate(point, kappa_from_confusion(conf_b, weights), n)
