"""Calibration maps: isotonic for likert, relabelling for labels, held-out before/after."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from judge.calibration import IsotonicMap, LabelMap, ScaleSpec, fit_map, load_map
from judge.errors import CalibrationError

LIKERT = ScaleSpec.likert(1, 5)
LABELS = ScaleSpec.categorical(["x", "y", "z"])


def _harsh(n: int = 500, seed: int = 0):
    rng = np.random.default_rng(seed)
    human = rng.integers(2, 6, n).astype(float)
    noise = np.where(rng.random(n) < 0.15, rng.choice([-1.0, 1.0], n), 0.0)
    judge = np.clip(human - 1 + noise, 1, 5)
    return judge, human


def test_isotonic_map_on_a_harsh_judge_lowers_held_out_mae():
    judge, human = _harsh()
    fit = fit_map(judge, human, LIKERT, folds=5, n_boot=300, seed=1)
    assert isinstance(fit.map, IsotonicMap)
    assert fit.after["mae"].value < fit.before["mae"].value
    assert fit.improvement["mae"].low > 0
    assert fit.after["cohen_kappa_quadratic"].value > fit.before["cohen_kappa_quadratic"].value
    # a judge score of 2 meant a human 3, most of the time
    assert abs(fit.map.apply(2.0) - 3.0) < 0.5


def test_isotonic_map_round_trips_through_json_and_matches_sklearn():
    judge, human = _harsh(seed=2)
    fit = fit_map(judge, human, LIKERT, n_boot=50)
    data = json.loads(json.dumps(fit.to_dict()))
    restored = load_map(data["map"])
    ref = IsotonicRegression(y_min=1, y_max=5, out_of_bounds="clip").fit(judge, human)
    grid = np.linspace(0, 6, 61)  # includes scores outside the fitted range: clipped
    assert np.allclose(restored.apply(grid), ref.predict(grid))
    assert restored.apply(None) is None
    assert isinstance(restored.apply(3), float)


def test_label_map_undoes_a_systematic_relabelling():
    rng = np.random.default_rng(4)
    human = rng.integers(0, 3, 400).astype(float)
    judge = np.where(rng.random(400) < 0.1, rng.integers(0, 3, 400), (human + 1) % 3)
    fit = fit_map(judge.astype(float), human, LABELS, n_boot=200)
    assert isinstance(fit.map, LabelMap)
    assert fit.map.mapping == {"y": "x", "z": "y", "x": "z"}
    assert fit.after["cohen_kappa"].value > fit.before["cohen_kappa"].value
    assert fit.improvement["cohen_kappa"].low > 0
    restored = load_map(json.loads(json.dumps(fit.map.to_dict())))
    assert restored.apply("y") == "x"
    assert sum(restored.probabilities["y"].values()) == pytest.approx(1.0)
    with pytest.raises(CalibrationError, match="Unknown label 'w'.*x, y, z"):
        restored.apply("w")


def test_label_map_keeps_a_good_judge_unchanged():
    rng = np.random.default_rng(5)
    human = rng.integers(0, 3, 300).astype(float)
    judge = np.where(rng.random(300) < 0.2, rng.integers(0, 3, 300), human).astype(float)
    fit = fit_map(judge, human, LABELS, n_boot=50)
    assert fit.map.mapping == {"x": "x", "y": "y", "z": "z"}


def test_fit_map_needs_enough_items():
    with pytest.raises(CalibrationError, match="needs at least 10 items"):
        fit_map(np.ones(6), np.ones(6), LIKERT, folds=5)
