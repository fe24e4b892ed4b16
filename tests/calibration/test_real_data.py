"""The shared public human ratings: figures computed by the project, checked against the
values the data's README gives."""

from __future__ import annotations

import pytest

from judge.calibration import (
    ScaleSpec,
    fleiss,
    human_agreement,
    krippendorff_alpha,
    ratings_matrix,
    read_ratings,
)


def test_k_qa_three_physicians_fleiss_kappa(human_ratings_dir):
    rf = read_ratings(human_ratings_dir / "k-qa" / "NLI_medical_annotator.csv",
                      "raters=label_0|label_1|label_2")
    scale = ScaleSpec.categorical(["Entailment", "Neutral", "Contradiction"])
    m = ratings_matrix(rf.ratings, scale)
    assert m.values.shape == (len(rf.items), 3)
    kappa = fleiss(m.values, scale, n_boot=300)
    assert kappa.value == pytest.approx(0.72, abs=0.01)
    assert kappa.low < kappa.value < kappa.high
    ha = human_agreement(m.values, scale, n_boot=200)
    assert ha.estimates["fleiss_kappa"].value == kappa.value


def test_dices_crowd_krippendorff_alpha(human_ratings_dir):
    rf = read_ratings(human_ratings_dir / "dices-350" / "dices_350_crowdsourced.json",
                      "records=instances,item=id,values=annotations.safety.individual_human_scores")
    scale = ScaleSpec.categorical(["No", "Yes", "Unsure"])
    m = ratings_matrix(rf.ratings, scale)
    assert m.values.shape[0] == 350
    alpha = krippendorff_alpha(m.values, scale, "nominal", n_boot=300)
    assert alpha.value == pytest.approx(0.16, abs=0.01)
    assert alpha.low < alpha.value < alpha.high
