"""Bias probes: verbosity, position and self-preference, each with bootstrap intervals.

A probe reports ``detected`` only when its interval excludes "no bias", so noise alone
does not raise a flag.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from judge.calibration.agreement import Estimate, bootstrap_indices, estimate
from judge.errors import CalibrationError


@dataclass(frozen=True)
class ProbeResult:
    """One bias probe: its named figures, whether bias was found, and why."""

    probe: str
    detected: bool
    figures: dict[str, Estimate]
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"probe": self.probe, "detected": self.detected, "detail": self.detail,
                "figures": {k: v.to_dict() for k, v in self.figures.items()}}


def _clean(*arrays: Any) -> tuple[np.ndarray, ...]:
    arrs = [np.asarray(a, float) for a in arrays]
    if len({a.shape for a in arrs}) != 1:
        raise CalibrationError(f"Probe inputs must be aligned; got shapes {[a.shape for a in arrs]}.")
    keep = np.logical_and.reduce([np.isfinite(a) for a in arrs])
    return tuple(a[keep] for a in arrs)


def verbosity_bias(judge: Sequence[float] | np.ndarray, human: Sequence[float] | np.ndarray,
                   lengths: Sequence[float] | np.ndarray, *, n_boot: int = 1000,
                   seed: int | None = 0) -> ProbeResult:
    """Does the judge − human residual grow with output length?

    Figures: ``spearman`` (residual vs length) and ``slope`` (least-squares residual
    points per 1000 length units — characters or tokens, whichever ``lengths`` counts).
    Detected when the Spearman interval excludes 0.
    """
    j, h, ln = _clean(judge, human, lengths)
    n = int(j.size)
    if n < 3:
        raise CalibrationError(f"The verbosity probe needs at least 3 items; got {n}.")
    resid = j - h
    idx = bootstrap_indices(n, n_boot, seed)
    rb, lb = resid[idx], ln[idx]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = stats.spearmanr(resid, ln).statistic
        rr, lr = stats.rankdata(rb, axis=1), stats.rankdata(lb, axis=1)
        rho_b = _corr_rows(rr, lr)
        slope = stats.linregress(ln, resid).slope * 1000 if np.ptp(ln) > 0 else math.nan
        lc = lb - lb.mean(1, keepdims=True)
        slope_b = (lc * (rb - rb.mean(1, keepdims=True))).sum(1) / (lc * lc).sum(1) * 1000
    figs = {"spearman": estimate(rho, rho_b, n), "slope_per_1000": estimate(slope, slope_b, n)}
    s = figs["spearman"]
    detected = bool(math.isfinite(s.low) and (s.low > 0 or s.high < 0))
    direction = "longer outputs score higher" if s.value > 0 else "longer outputs score lower"
    detail = (f"residual (judge − human) vs length: Spearman {s}; "
              + (f"bias detected: {direction} than people rate them." if detected
                 else "no length bias detected (interval includes 0)."))
    return ProbeResult("verbosity", detected, figs, detail)


def _corr_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


_SWAP = {"a": "b", "b": "a", "tie": "tie"}


def unswap(verdicts: Sequence[str | None]) -> list[str | None]:
    """Verdicts given on the swapped order ('a' = the output shown first, i.e. item's
    ``output_b``) expressed in terms of the item's outputs."""
    return [None if v is None else _SWAP[str(v).lower()] for v in verdicts]


def position_bias(verdict_ab: Sequence[str | None], verdict_ba: Sequence[str | None], *,
                  tolerance: float = 0.1, n_boot: int = 1000,
                  seed: int | None = 0) -> ProbeResult:
    """Share of pairs whose verdict flips when the two outputs swap places.

    Both verdict lists name the *item's* outputs ('a' = ``output``, 'b' = ``output_b``,
    'tie'), whatever order they were shown in (use :func:`unswap` on verdicts that name
    positions). A consistent judge gives the same verdict both ways.

    Figures: ``flip_rate``, and ``first_position_preference`` (share of pairs where the
    output shown first won both times, minus the share where the one shown second did).
    Detected when the flip-rate interval lies above ``tolerance`` or the preference
    interval excludes 0.
    """
    pairs = [(str(a).lower(), str(b).lower()) for a, b in zip(verdict_ab, verdict_ba, strict=True)
             if a is not None and b is not None]
    bad = sorted({v for p in pairs for v in p if v not in _SWAP})
    if bad:
        raise CalibrationError(f"Unknown pairwise verdict(s) {bad}. Options: a, b, tie.")
    n = len(pairs)
    if n < 2:
        raise CalibrationError(f"The position probe needs at least 2 pairs judged both ways; got {n}.")
    ab = np.array([p[0] for p in pairs])
    ba = np.array([p[1] for p in pairs])
    flips = (ab != ba).astype(float)
    # shown first: 'a' in the ab order, 'b' in the ba order
    pref = ((ab == "a") & (ba == "b")).astype(float) - ((ab == "b") & (ba == "a")).astype(float)
    idx = bootstrap_indices(n, n_boot, seed)
    figs = {"flip_rate": estimate(flips.mean(), flips[idx].mean(1), n),
            "first_position_preference": estimate(pref.mean(), pref[idx].mean(1), n)}
    f, p = figs["flip_rate"], figs["first_position_preference"]
    too_many = f.low > tolerance
    leaning = p.low > 0 or p.high < 0
    detected = bool(too_many or leaning)
    parts = [f"flip rate {f}", f"first-position preference {p}"]
    if too_many:
        parts.append(f"flips exceed the tolerance {tolerance:g}")
    if leaning:
        parts.append("favours the output shown " + ("first" if p.value > 0 else "second"))
    if not detected:
        parts.append("no position bias detected")
    return ProbeResult("position", detected, figs, "; ".join(parts) + ".")


def same_model(a: str | None, b: str | None) -> bool:
    """Whether two model names name the same model, ignoring provider prefixes, case and
    a trailing date stamp (``openai/gpt-4o-2024-08-06`` ~ ``gpt-4o``)."""
    if not a or not b:
        return False

    def norm(s: str) -> str:
        s = s.strip().lower().rsplit("/", 1)[-1]
        return re.sub(r"[-@:](\d{4}-?\d{2}-?\d{2}|latest)$", "", s)

    return norm(a) == norm(b)


def self_preference(judge: Sequence[float] | np.ndarray, human: Sequence[float] | np.ndarray,
                    authors: Sequence[str | None], judge_model: str, *, n_boot: int = 1000,
                    seed: int | None = 0) -> ProbeResult:
    """Does the judge favour outputs its own model wrote?

    ``authors`` names, per item, the model that wrote the output (item metadata).
    Figures: mean residual (judge − human) on own and on other outputs, and their
    ``difference`` (own − other). Detected when the difference interval excludes 0.
    Resamples with no own (or no other) items give no replicate.
    """
    j, h = np.asarray(judge, float), np.asarray(human, float)
    own = np.array([same_model(a, judge_model) for a in authors])
    known = np.array([a is not None and a != "" for a in authors])
    keep = np.isfinite(j) & np.isfinite(h) & known
    resid, own = (j - h)[keep], own[keep]
    n = int(resid.size)
    if own.sum() < 2 or (~own).sum() < 2:
        raise CalibrationError(
            f"The self-preference probe needs at least 2 items written by '{judge_model}' "
            f"and 2 by other models; got {int(own.sum())} and {int((~own).sum())}."
        )
    idx = bootstrap_indices(n, n_boot, seed)
    ob = own[idx].astype(float)
    rb = resid[idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        own_b = (rb * ob).sum(1) / ob.sum(1)
        other_b = (rb * (1 - ob)).sum(1) / (1 - ob).sum(1)
    figs = {
        "own_mean_residual": estimate(resid[own].mean(), own_b, int(own.sum())),
        "other_mean_residual": estimate(resid[~own].mean(), other_b, int((~own).sum())),
        "difference": estimate(resid[own].mean() - resid[~own].mean(), own_b - other_b, n),
    }
    d = figs["difference"]
    detected = bool(math.isfinite(d.low) and (d.low > 0 or d.high < 0))
    detail = (f"own − other mean residual {d}; "
              + (("favours its own outputs" if d.value > 0 else "is harsher on its own outputs")
                 if detected else "no self-preference detected (interval includes 0)") + ".")
    return ProbeResult("self_preference", detected, figs, detail)
