"""Agreement figures against their library references, and the bootstrap intervals."""

from __future__ import annotations

import json

import krippendorff
import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
)

from judge.calibration import ScaleSpec, agreement, fleiss, fleiss_kappa, krippendorff_alpha
from judge.calibration.agreement import (
    _fleiss_batch,
    alpha_from_coincidence,
    bootstrap_indices,
    f1_macro_from_confusion,
    kappa_from_confusion,
    level_counts,
    pair_confusions,
    unit_coincidences,
    weights_from_indices,
)
from judge.errors import CalibrationError

LIKERT = ScaleSpec.likert(1, 5, pass_threshold=3)
LABELS = ScaleSpec.categorical(["x", "y", "z"])
ORDERED = ScaleSpec.categorical(["low", "mid", "high"], scores=[0.0, 0.5, 2.0])


def _likert_pair(n: int = 400, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h = rng.integers(1, 6, n).astype(float)
    j = np.clip(h + rng.integers(-1, 2, n), 1, 5).astype(float)
    return j, h


def _label_pair(n: int = 400, k: int = 3, flip: float = 0.3, seed: int = 2):
    rng = np.random.default_rng(seed)
    h = rng.integers(0, k, n).astype(float)
    j = np.where(rng.random(n) < flip, rng.integers(0, k, n), h).astype(float)
    return j, h


def test_likert_figures_match_library_references():
    j, h = _likert_pair()
    rep = agreement(j, h, LIKERT, n_boot=100)
    assert rep.primary == "cohen_kappa_quadratic"
    assert rep["exact_agreement"].value == pytest.approx(accuracy_score(h, j))
    for name, w in [("cohen_kappa", None), ("cohen_kappa_linear", "linear"),
                    ("cohen_kappa_quadratic", "quadratic")]:
        assert rep[name].value == pytest.approx(cohen_kappa_score(h, j, weights=w))
    for lvl in ("nominal", "ordinal", "interval"):
        ref = krippendorff.alpha(reliability_data=np.stack([j, h]), level_of_measurement=lvl)
        assert rep[f"krippendorff_alpha_{lvl}"].value == pytest.approx(ref)
    assert rep["spearman"].value == pytest.approx(stats.spearmanr(j, h).statistic)
    assert rep["kendall_tau_b"].value == pytest.approx(stats.kendalltau(j, h).statistic)
    assert rep["pearson"].value == pytest.approx(stats.pearsonr(j, h).statistic)
    assert rep["mae"].value == pytest.approx(mean_absolute_error(h, j))
    assert rep["f1_pass_fail"].value == pytest.approx(f1_score(h >= 3, j >= 3, average="macro"))
    assert rep.confusion == confusion_matrix(h, j, labels=[1, 2, 3, 4, 5]).tolist()


def test_weighted_kappa_counts_absent_levels_in_the_distance():
    # level 4 never occurs: sklearn with labels=all levels keeps 3→5 two steps apart
    h = np.array([1, 2, 3, 5, 5, 3, 2, 1, 5, 3], float)
    j = np.array([1, 3, 3, 3, 5, 5, 2, 2, 5, 3], float)
    rep = agreement(j, h, LIKERT, n_boot=50)
    ref = cohen_kappa_score(h, j, labels=[1, 2, 3, 4, 5], weights="linear")
    assert rep["cohen_kappa_linear"].value == pytest.approx(ref)
    assert ref != pytest.approx(cohen_kappa_score(h, j, weights="linear"))


def test_label_figures_match_library_references():
    j, h = _label_pair()
    rep = agreement(j, h, LABELS, n_boot=100)
    assert set(rep.estimates) == {"exact_agreement", "cohen_kappa", "f1_macro",
                                  "krippendorff_alpha_nominal"}
    assert rep["cohen_kappa"].value == pytest.approx(cohen_kappa_score(h, j))
    assert rep["f1_macro"].value == pytest.approx(f1_score(h, j, average="macro"))
    assert rep.labels == ["x", "y", "z"]


def test_ordered_labels_use_their_scores_for_correlation_and_mae():
    j, h = _label_pair(seed=5)
    rep = agreement(j, h, ORDERED, n_boot=50)
    sj, sh = np.array([0.0, 0.5, 2.0])[j.astype(int)], np.array([0.0, 0.5, 2.0])[h.astype(int)]
    assert rep["mae"].value == pytest.approx(mean_absolute_error(sh, sj))
    assert rep["pearson"].value == pytest.approx(stats.pearsonr(sj, sh).statistic)
    ref = krippendorff.alpha(reliability_data=np.stack([sj, sh]), level_of_measurement="interval")
    assert rep["krippendorff_alpha_interval"].value == pytest.approx(ref)


def test_binary_scale_encodes_pass_fail_words():
    scale = ScaleSpec.binary()
    h = scale.encode(["pass", "fail", True, "no", "YES", 0])
    assert h.tolist() == [1, 0, 1, 0, 1, 0]
    j, hh = _label_pair(k=2, seed=3)
    rep = agreement(j, hh, scale, n_boot=50)
    assert rep["f1_macro"].value == pytest.approx(f1_score(hh, j, average="macro"))


def test_vectorised_bootstrap_matches_library_on_resamples():
    j, h = _likert_pair(n=300, seed=7)
    codes = LIKERT.codes
    idx = bootstrap_indices(300, 5, seed=3)
    w = weights_from_indices(idx, 300)
    conf = pair_confusions((h - 1).astype(int), (j - 1).astype(int), 5, w)
    o = (w @ unit_coincidences(level_counts(np.stack([j, h], 1), codes))).reshape(-1, 5, 5)
    for b in range(5):
        hb, jb = h[idx[b]], j[idx[b]]
        for wt in (None, "linear", "quadratic"):
            ref = cohen_kappa_score(hb, jb, labels=codes, weights=wt)
            assert kappa_from_confusion(conf[b], wt) == pytest.approx(ref)
        assert f1_macro_from_confusion(conf[b]) == pytest.approx(
            f1_score(hb, jb, average="macro"))
        for lvl in ("nominal", "ordinal", "interval"):
            ref = krippendorff.alpha(reliability_data=np.stack([jb, hb]), level_of_measurement=lvl)
            assert alpha_from_coincidence(o[b], codes, lvl) == pytest.approx(ref)


def _fleiss_direct(counts: np.ndarray) -> float:
    """Fleiss (1971), written out for a constant number of raters."""
    n_items, _ = counts.shape
    r = counts[0].sum()
    p_j = counts.sum(0) / (n_items * r)
    p_i = (np.square(counts).sum(1) - r) / (r * (r - 1))
    p_e = np.square(p_j).sum()
    return (p_i.mean() - p_e) / (1 - p_e)


def test_fleiss_kappa_matches_the_direct_formula():
    rng = np.random.default_rng(11)
    truth = rng.integers(0, 4, 250)
    ratings = np.stack([np.where(rng.random(250) < 0.4, rng.integers(0, 4, 250), truth)
                        for _ in range(5)], 1).astype(float)
    scale = ScaleSpec.categorical(["a", "b", "c", "d"])
    counts = level_counts(ratings, scale.codes)
    assert fleiss_kappa(counts) == pytest.approx(_fleiss_direct(counts))
    est = fleiss(ratings, scale, n_boot=200, seed=1)
    assert est.value == pytest.approx(_fleiss_direct(counts))
    assert est.low <= est.value <= est.high
    # the vectorised replicates are the formula on each resample
    idx = bootstrap_indices(250, 3, seed=4)
    reps = _fleiss_batch(counts, weights_from_indices(idx, 250))
    for b in range(3):
        assert reps[b] == pytest.approx(_fleiss_direct(counts[idx[b]]))


def test_fleiss_with_varying_raters_averages_items_and_drops_singletons():
    counts = np.array([[2, 0, 1], [1, 1, 0], [0, 4, 0], [1, 0, 0], [0, 2, 2]], float)
    kept = counts[counts.sum(1) >= 2]
    m = kept.sum(1)
    p_bar = np.mean([(np.square(c).sum() - mi) / (mi * (mi - 1)) for c, mi in zip(kept, m, strict=True)])
    shares = kept.sum(0) / kept.sum()
    p_e = np.square(shares).sum()
    assert fleiss_kappa(counts) == pytest.approx((p_bar - p_e) / (1 - p_e))


def test_krippendorff_alpha_many_raters_with_missing_matches_library():
    rng = np.random.default_rng(5)
    truth = rng.integers(1, 6, 120)
    m = np.stack([np.clip(truth + rng.integers(-1, 2, 120), 1, 5) for _ in range(7)], 1).astype(
        float)
    m[rng.random(m.shape) < 0.3] = np.nan
    for lvl in ("nominal", "ordinal", "interval"):
        est = krippendorff_alpha(m, LIKERT, lvl, n_boot=200)
        ref = krippendorff.alpha(reliability_data=m.T, level_of_measurement=lvl)
        assert est.value == pytest.approx(ref)
        assert est.low <= est.value <= est.high


def test_bootstrap_is_reproducible_with_a_seed_and_contains_the_estimate():
    j, h = _likert_pair(n=500, seed=9)
    a = agreement(j, h, LIKERT, n_boot=300, seed=42).to_dict()
    b = agreement(j, h, LIKERT, n_boot=300, seed=42).to_dict()
    c = agreement(j, h, LIKERT, n_boot=300, seed=43).to_dict()
    assert a == b
    assert a != c
    for name, e in a["estimates"].items():
        assert e["low"] <= e["value"] <= e["high"], name
        assert e["high"] - e["low"] > 0, name
    json.dumps(a)


def _implied_kappa(p: float, k: int) -> float:
    """Kappa of a judge that copies a uniform human label, or with probability p picks one
    of the k−1 other labels at random: the two marginals stay uniform."""
    p_o = 1 - p
    p_e = 1 / k
    return (p_o - p_e) / (1 - p_e)


@pytest.mark.parametrize("p", [0.1, 0.25, 0.4])
def test_noisy_judge_kappa_interval_contains_the_flip_rate_value(p):
    rng = np.random.default_rng(int(p * 100))
    n, k = 2000, 3
    human = rng.integers(0, k, n)
    flip = rng.random(n) < p
    other = (human + rng.integers(1, k, n)) % k
    judge = np.where(flip, other, human)
    rep = agreement(judge.astype(float), human.astype(float), LABELS, seed=0)
    kappa = rep["cohen_kappa"]
    assert kappa.low <= _implied_kappa(p, k) <= kappa.high
    assert rep["exact_agreement"].low <= 1 - p <= rep["exact_agreement"].high


def test_missing_values_are_left_out_and_nan_serialises_as_null():
    j, h = _label_pair(n=50)
    j[:5] = np.nan
    rep = agreement(j, h, LABELS, n_boot=50)
    assert rep.n_items == 45
    same = agreement(np.zeros(10), np.zeros(10), LABELS, n_boot=20)
    d = same.to_dict()
    assert d["estimates"]["cohen_kappa"]["value"] is None
    assert d["estimates"]["exact_agreement"]["value"] == 1.0
    json.dumps(d, allow_nan=False)


def test_unknown_label_is_an_error_naming_the_options():
    with pytest.raises(CalibrationError, match=r"Unknown label 'yy'.*Did you mean: y\?.*x, y, z"):
        LABELS.encode(["x", "yy"])
    with pytest.raises(CalibrationError, match="outside the likert scale 1..5"):
        LIKERT.encode([6])


def test_scale_from_rubric():
    from judge.rubrics import Rubric

    rubric = Rubric.model_validate({
        "id": "t/r", "version": "1.0.0", "dimension": "d", "title": "t", "description": "d",
        "inputs": ["output"], "instructions": "grade", "pass_threshold": 1,
        "scale": {"type": "categorical", "labels": [
            {"label": "good", "score": 2, "description": "g"},
            {"label": "bad", "score": 0, "description": "b"},
            {"label": "ok", "score": 1, "description": "o"}]},
    })
    scale = ScaleSpec.from_rubric(rubric)
    assert scale.labels == ("bad", "ok", "good")
    assert scale.ordered and scale.pass_threshold == 1
    assert ScaleSpec.from_dict(scale.to_dict()) == scale
