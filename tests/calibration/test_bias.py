"""Bias probes find planted biases and stay quiet on unbiased data."""

from __future__ import annotations

import numpy as np
import pytest

from judge.calibration import position_bias, same_model, self_preference, unswap, verbosity_bias
from judge.errors import CalibrationError


def _scores(n: int, seed: int):
    rng = np.random.default_rng(seed)
    human = rng.integers(1, 6, n).astype(float)
    lengths = rng.integers(50, 3000, n).astype(float)
    return rng, human, lengths


def test_verbosity_bias_is_detected_with_its_slope():
    rng, human, lengths = _scores(600, 0)
    judge = human + 0.001 * lengths + rng.normal(0, 0.5, 600)  # +1 point per 1000 chars
    res = verbosity_bias(judge, human, lengths, n_boot=400)
    assert res.detected
    assert res.figures["spearman"].low > 0
    slope = res.figures["slope_per_1000"]
    # a single draw: the estimate is near the planted slope (a 95% interval covers it
    # only most of the time, so the test does not rely on that)
    assert slope.value == pytest.approx(1.0, abs=0.15)
    assert slope.low > 0


def test_no_verbosity_bias_on_unbiased_data():
    rng, human, lengths = _scores(600, 1)
    judge = human + rng.normal(0, 0.5, 600)
    res = verbosity_bias(judge, human, lengths, n_boot=400)
    assert not res.detected
    assert res.figures["spearman"].low <= 0 <= res.figures["spearman"].high


def test_position_bias_detects_planted_order_flips():
    rng = np.random.default_rng(2)
    n = 400
    truth = rng.choice(["a", "b"], n)
    # in 30% of pairs the judge picks whichever output is shown first
    biased = rng.random(n) < 0.3
    ab = np.where(biased, "a", truth)  # shown first in ab order: output a
    ba = np.where(biased, "b", truth)  # shown first in ba order: output b
    res = position_bias(list(ab), list(ba), n_boot=400)
    assert res.detected
    flip = res.figures["flip_rate"]
    assert flip.low > 0.1
    assert res.figures["first_position_preference"].low > 0
    assert "first" in res.detail


def test_no_position_bias_for_a_consistent_judge():
    rng = np.random.default_rng(3)
    verdicts = list(rng.choice(["a", "b", "tie"], 300))
    # the swapped run names positions: output b was shown first
    shown = unswap(verdicts)
    res = position_bias(verdicts, unswap(shown), n_boot=200)
    assert not res.detected
    assert res.figures["flip_rate"].value == 0


def test_position_bias_rejects_unknown_verdicts():
    with pytest.raises(CalibrationError, match=r"Unknown pairwise verdict.*a, b, tie"):
        position_bias(["a", "left"], ["a", "b"])


def test_self_preference_is_detected_and_absent_when_not_planted():
    rng = np.random.default_rng(4)
    n = 500
    human = rng.integers(1, 6, n).astype(float)
    authors = rng.choice(["openai/gpt-4o-2024-08-06", "claude-3-5-sonnet", "llama-3-70b"], n)
    own = np.array([same_model(a, "gpt-4o") for a in authors])
    noise = rng.normal(0, 0.5, n)
    biased = self_preference(human + noise + 0.8 * own, human, list(authors), "gpt-4o",
                             n_boot=400)
    assert biased.detected
    d = biased.figures["difference"]
    assert d.low <= 0.8 <= d.high
    fair = self_preference(human + noise, human, list(authors), "gpt-4o", n_boot=400)
    assert not fair.detected
    assert fair.to_dict()["figures"]["difference"]["n"] == n


def test_same_model_ignores_provider_case_and_date():
    assert same_model("openai/GPT-4o-2024-08-06", "gpt-4o")
    assert same_model("anthropic/claude-3-5-sonnet-latest", "claude-3-5-sonnet")
    assert not same_model("gpt-4o-mini", "gpt-4o")
    assert not same_model(None, "gpt-4o")
