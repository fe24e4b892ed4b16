"""The human ceiling: human–human agreement and the paired leave-one-out comparison."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from judge.calibration import ScaleSpec, consensus, human_agreement, loo_ceiling
from judge.errors import CalibrationError

LABELS = ScaleSpec.categorical(["a", "b", "c"])


def _noisy(truth: np.ndarray, p: float, rng: np.random.Generator, k: int = 3) -> np.ndarray:
    """Truth, or with probability p one of the other labels."""
    other = (truth + rng.integers(1, k, truth.size)) % k
    return np.where(rng.random(truth.size) < p, other, truth).astype(float)


def _raters(n: int = 600, r: int = 4, p: float = 0.25, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    return truth, np.stack([_noisy(truth, p, rng) for _ in range(r)], 1), rng


def test_judge_as_noisy_as_a_rater_is_within_the_ceiling():
    truth, m, rng = _raters()
    rep = loo_ceiling(m, _noisy(truth, 0.25, rng), LABELS, n_boot=300)
    assert rep.stat == "cohen_kappa"
    assert rep.gap.low <= 0 <= rep.gap.high
    assert rep.human.low <= rep.judge.value <= rep.human.high


def test_noisier_judge_shows_a_positive_gap_and_a_cleaner_one_a_negative_gap():
    truth, m, rng = _raters(seed=1)
    worse = loo_ceiling(m, _noisy(truth, 0.5, rng), LABELS, n_boot=300)
    better = loo_ceiling(m, truth.astype(float), LABELS, n_boot=300)
    assert worse.gap.low > 0
    assert better.gap.high < 0
    # the human side does not depend on the judge
    assert worse.human == better.human
    assert "gap (human − judge)" in worse.summary()


def test_two_raters_loo_equals_pooled_cohen_kappa():
    # with two raters the consensus of "the others" is the other rater: no ties, no choice
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 300)
    r0, r1, judge = (_noisy(truth, 0.3, rng) for _ in range(3))
    rep = loo_ceiling(np.stack([r0, r1], 1), judge, LABELS, n_boot=100,
                      with_human_agreement=False)
    codes = [0, 1, 2]
    human_ref = cohen_kappa_score(np.r_[r1, r0], np.r_[r0, r1], labels=codes)
    judge_ref = cohen_kappa_score(np.r_[r1, r0], np.r_[judge, judge], labels=codes)
    assert rep.human.value == pytest.approx(human_ref)
    assert rep.judge.value == pytest.approx(judge_ref)
    assert rep.gap.value == pytest.approx(human_ref - judge_ref)
    assert rep.figures["exact_agreement"]["human"].value == pytest.approx(np.mean(r0 == r1))


def test_human_agreement_matches_library_and_pairwise_mean():
    truth, m, _ = _raters(n=300, r=3, p=0.2, seed=4)
    m[0, 0] = np.nan
    ha = human_agreement(m, LABELS, n_boot=200)
    ref = krippendorff.alpha(reliability_data=m.T, level_of_measurement="nominal")
    assert ha.estimates["krippendorff_alpha_nominal"].value == pytest.approx(ref)
    pairs = []
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        ok = np.isfinite(m[:, a]) & np.isfinite(m[:, b])
        pairs.append(cohen_kappa_score(m[ok, a], m[ok, b], labels=[0, 1, 2]))
    assert ha.estimates["pairwise_cohen_kappa_mean"].value == pytest.approx(np.mean(pairs))
    assert ha.n_raters == 3


def test_likert_ceiling_uses_median_consensus_and_reports_mae():
    rng = np.random.default_rng(6)
    truth = rng.integers(1, 6, 400)
    m = np.stack([np.clip(truth + rng.integers(-1, 2, 400), 1, 5) for _ in range(3)], 1)
    scale = ScaleSpec.likert(1, 5)
    harsh = np.clip(truth - 1, 1, 5).astype(float)
    rep = loo_ceiling(m.astype(float), harsh, scale, n_boot=200)
    assert rep.stat == "cohen_kappa_quadratic"
    assert rep.figures["mae"]["gap"].low > 0  # the harsh judge is further off than people
    cons = consensus(m.astype(float), scale)
    assert np.array_equal(cons, np.median(m, axis=1))


def test_consensus_is_majority_with_seeded_tie_break():
    m = np.array([[0, 0, 1], [2, 1, np.nan], [np.nan, np.nan, np.nan]], float)
    c1, c2 = consensus(m, LABELS, seed=1), consensus(m, LABELS, seed=1)
    assert c1[0] == 0 and c1[1] in (1, 2) and np.isnan(c1[2])
    assert np.array_equal(c1[:2], c2[:2])


def test_ceiling_needs_multiply_rated_items():
    m = np.array([[0.0], [1.0], [2.0]])
    with pytest.raises(CalibrationError, match="at least 2 ratings"):
        loo_ceiling(m, np.array([0.0, 1.0, 2.0]), LABELS)
