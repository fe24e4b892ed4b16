"""The gate approves by threshold and by the gap to the human ceiling, naming figures."""

from __future__ import annotations

import numpy as np

from judge.calibration import ScaleSpec, agreement, gate, loo_ceiling

LABELS = ScaleSpec.categorical(["a", "b", "c"])


def _noisy(truth, p, rng):
    other = (truth + rng.integers(1, 3, truth.size)) % 3
    return np.where(rng.random(truth.size) < p, other, truth).astype(float)


def _case(judge_noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, 500)
    raters = np.stack([_noisy(truth, 0.2, rng) for _ in range(3)], 1)
    judge = _noisy(truth, judge_noise, rng)
    human = np.array([np.bincount(r.astype(int), minlength=3).argmax() for r in raters], float)
    report = agreement(judge, human, LABELS, n_boot=200)
    ceiling = loo_ceiling(raters, judge, LABELS, n_boot=200, with_human_agreement=False)
    return report, ceiling


def test_gate_passes_and_fails_by_min_kappa():
    report, ceiling = _case(0.2)
    k = report.kappa.value
    ok = gate(report, min_kappa=k - 0.05, max_gap=0.5, ceiling=ceiling)
    no = gate(report, min_kappa=k + 0.05, max_gap=0.5, ceiling=ceiling)
    assert ok.approved and not no.approved
    assert "cohen_kappa" in no.reasons[0] and "below the minimum" in no.reasons[0]
    assert "reaches the minimum" in ok.reasons[0]


def test_gate_fails_a_judge_far_below_the_human_ceiling():
    report, ceiling = _case(0.5, seed=1)
    assert ceiling.gap.value > 0.1
    decision = gate(report, min_kappa=0.0, max_gap=0.1, ceiling=ceiling)
    assert not decision.approved
    assert any("exceeds the maximum gap 0.1" in r and "gap" in r for r in decision.reasons)
    relaxed = gate(report, min_kappa=0.0, max_gap=ceiling.gap.value + 0.01, ceiling=ceiling)
    assert relaxed.approved


def test_gate_without_a_ceiling_refuses_unless_told_otherwise():
    report, _ = _case(0.1, seed=2)
    refused = gate(report, min_kappa=0.0, max_gap=0.1)
    assert not refused.approved
    assert any("no human ceiling" in r for r in refused.reasons)
    allowed = gate(report, min_kappa=0.0, max_gap=0.1, require_ceiling=False)
    assert allowed.approved
    assert allowed.to_dict()["approved"] is True
