"""The NBSVM tune family: its log-count ratios as the paper defines them, any number of
classes, scores that do not depend on the batch, and a search that picks and saves it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from sentiment.models.nbsvm import NBLogisticRegression
from sentiment.models.predictor import load_predictor
from stages import tune
from tests.test_tune import BAD, GOOD, TUNE, tiny_project  # noqa: F401 (a fixture)

# Four documents over three features: "great", "awful", "the".
COUNTS = sp.csr_matrix(np.array([[2, 0, 1], [1, 0, 1], [0, 3, 1], [0, 1, 1]], dtype=float))
LABELS = np.array([1, 1, 0, 0])


def test_the_weights_are_the_log_count_ratios_times_the_regression() -> None:
    """r = log((p/|p|1) / (q/|q|1)) over presence counts, alpha-smoothed (Wang and Manning)."""
    model = NBLogisticRegression(alpha=1.0, C=1.0).fit(COUNTS, LABELS)
    p = np.array([2, 0, 2]) + 1.0  # presence of each feature in the positive rows
    q = np.array([0, 2, 2]) + 1.0
    ratio = np.log(p / p.sum()) - np.log(q / q.sum())
    assert ratio[0] > 0 > ratio[1] and ratio[2] == pytest.approx(0.0, abs=1e-12)
    assert model.coef_.shape == (1, 3)
    assert model.coef_[0, 2] == pytest.approx(0.0, abs=1e-12)  # a word both sides use: no say
    assert model.coef_[0, 0] > 0 > model.coef_[0, 1]
    assert model.predict(COUNTS).tolist() == LABELS.tolist()


def test_tf_idf_values_count_when_not_binarized() -> None:
    binary = NBLogisticRegression(binarize=True).fit(COUNTS, LABELS)
    weighted = NBLogisticRegression(binarize=False).fit(COUNTS, LABELS)
    assert not np.allclose(binary.coef_, weighted.coef_)


def test_three_classes_one_vs_rest_with_probabilities_that_sum_to_one() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    counts = sp.csr_matrix(rng.poisson(0.3, (90, 12)) + np.eye(3)[y].repeat(4, axis=1) * 2)
    model = NBLogisticRegression(C=10.0).fit(counts, y)
    proba = model.predict_proba(counts)
    assert model.coef_.shape == (3, 12) and proba.shape == (90, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (model.predict(counts) == y).mean() > 0.9


def test_a_row_scores_the_same_alone_as_in_a_batch() -> None:
    model = NBLogisticRegression().fit(COUNTS, LABELS)
    batch = model.predict_proba(COUNTS)
    alone = np.vstack([model.predict_proba(COUNTS[i]) for i in range(COUNTS.shape[0])])
    np.testing.assert_array_equal(alone, batch)


def test_one_class_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"NBSVM needs two classes or more, got \[1\]"):
        NBLogisticRegression().fit(COUNTS[:2], LABELS[:2])


@pytest.mark.slow
def test_tune_searches_nbsvm_and_saves_a_model_the_predictor_trusts(
    tiny_project: Path,  # noqa: F811 (the fixture)
) -> None:
    best = tune.run_stage(TUNE | {"families": ["nbsvm"], "target": "rating"})
    assert best["best_params"]["classifier"] == "nbsvm"
    assert {"nbsvm_alpha", "nbsvm_C", "nbsvm_binarize"} <= set(best["best_params"])
    predictor = load_predictor(tiny_project / "models" / "classical")  # skops, allowlisted
    classifier = predictor.pipeline.named_steps["classifier"]
    assert isinstance(classifier, NBLogisticRegression) and classifier.coef_.shape[0] == 5
    proba = predictor.predict_proba(GOOD + BAD)
    assert proba.shape == (10, 2) and (proba[:5, 1] > proba[5:, 1].max()).all()
    meta = json.loads((tiny_project / "models" / "classical" / "meta.json").read_text())
    assert meta["target"] == "rating"
