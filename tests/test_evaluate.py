"""evaluate's building blocks: metrics, champion choice, slices and the behavioural suite."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentiment.evaluation.behaviour import EMOJI, SHORT, negation_cases, run_suite
from sentiment.evaluation.metrics import bootstrap_ci, expected_calibration_error, macro_f1
from sentiment.models.candidates import (
    choose_champion,
    crossfit_macro_f1,
    fit_decision,
    headline,
    pr_points,
    score,
    slices,
    unseen,
)
from sentiment.models.predictor import EnsemblePredictor, best_threshold, label_ids


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.8, y, 1 - y)
    low, high = bootstrap_ci(y, pred, 1000, seed=3)
    assert low < macro_f1(y, pred) < high
    assert (low, high) == bootstrap_ci(y, pred, 1000, seed=3)


def test_expected_calibration_error() -> None:
    y = np.array([1, 1, 0, 0])
    confident_right = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert expected_calibration_error(y, confident_right) == 0
    confident_wrong = confident_right[::-1]
    assert expected_calibration_error(y, confident_wrong) == pytest.approx(1.0)


def test_score_reports_every_metric() -> None:
    y = [0, 0, 1, 1, 1, 1]
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9], [0.6, 0.4]])
    result = score(y, proba, 0.5, {"bootstrap_resamples": 200, "seed": 0}, ["neg", "pos"])
    assert set(result) == {
        "macro_f1",
        "macro_f1_ci",
        "accuracy",
        "per_class",
        "roc_auc",
        "pr_auc",
        "pr_auc_negative",
        "brier",
        "ece",
    }
    assert result["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert list(result["per_class"]) == ["neg", "pos"]


def test_precision_recall_is_drawn_for_each_class() -> None:
    y = [0, 0, 1, 1, 1, 1]
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9], [0.6, 0.4]])
    negative = pr_points(y, proba, 0)
    # Thresholds on P(negative), low to high: 0.1, 0.2, 0.3 and 0.6 are positives' scores,
    # 0.4 and 0.9 the negatives'.
    assert [(p["recall"], p["precision"]) for p in negative] == [
        (1.0, 0.3333),
        (1.0, 0.4),
        (1.0, 0.5),
        (1.0, 0.6667),
        (0.5, 0.5),
        (0.5, 1.0),
        (0.0, 1.0),
    ]
    assert negative != pr_points(y, proba, 1) == pr_points(y, proba, -1)


def test_headline_holds_the_champion_and_each_candidates_val_and_test() -> None:
    def split(f1: float) -> dict:
        return {"macro_f1": f1, "macro_f1_ci": [f1 - 0.02, f1 + 0.02]}

    metrics = {
        name: {"val": split(v), "test": split(t), "val_crossfit_macro_f1": v - 0.01}
        for name, v, t in [
            ("classical", 0.84, 0.83),
            ("transformer", 0.87, 0.86),
            ("ensemble", 0.88, 0.87),
        ]
    } | {"champion": {"name": "transformer", "val": {"macro_f1": 0.87}, "test": {"macro_f1": 0.86}}}
    assert headline(metrics) == {
        "champion": {
            "name": "transformer",
            "val_macro_f1": 0.87,
            "test_macro_f1": 0.86,
            "test_ci_low": 0.84,
            "test_ci_high": 0.88,
        },
        "val_macro_f1": {"classical": 0.84, "transformer": 0.87, "ensemble": 0.88},
        "test_macro_f1": {"classical": 0.83, "transformer": 0.86, "ensemble": 0.87},
        "val_crossfit_macro_f1": {"classical": 0.83, "transformer": 0.86, "ensemble": 0.87},
    }


def two_members(n: int = 400, seed: int = 0) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Labels, an informative member's and a pure-noise member's probabilities."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.7).astype(int)
    good = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.25, n), 0.01, 0.99)
    noise = rng.random(n)
    return y.tolist(), np.c_[1 - good, good], np.c_[1 - noise, noise]


def test_the_ensemble_weight_goes_to_the_member_that_helps_on_validation() -> None:
    y, good, noise = two_members()
    assert fit_decision(y, [noise, good])["weight"] == 1.0
    assert fit_decision(y, [good, noise])["weight"] == 0.0
    assert fit_decision(y, [good, good])["weight"] == 0.5  # a tie: the even split
    single = fit_decision(y, [good])
    assert single["threshold"] == best_threshold(y, good[:, 1])


def test_cross_fitting_scores_rows_with_parameters_fitted_without_them() -> None:
    y, good, noise = two_members()
    # On noise, a threshold fitted on the same rows finds a lucky cut; cross-fitted, it cannot.
    in_sample = macro_f1(y, label_ids(noise, fit_decision(y, [noise])["threshold"]))
    assert crossfit_macro_f1(y, [noise], seed=1) < in_sample
    assert crossfit_macro_f1(y, [noise, good], seed=1) > 0.8
    assert crossfit_macro_f1(y, [good], seed=1) == crossfit_macro_f1(y, [good], seed=1)


class Fixed:
    def __init__(self, proba: list[float]) -> None:
        self.meta: dict = {}
        self.proba = np.array(proba)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.tile(self.proba, (len(texts), 1))


def test_the_ensemble_predictor_applies_its_weights() -> None:
    members = [Fixed([0.9, 0.1]), Fixed([0.1, 0.9])]
    weighted = EnsemblePredictor(members, {"weights": [0.2, 0.8]}).predict_proba(["a"])
    np.testing.assert_allclose(weighted, [[0.26, 0.74]])
    even = EnsemblePredictor(members, {}).predict_proba(["a", "b"])
    np.testing.assert_allclose(even, [[0.5, 0.5], [0.5, 0.5]])


def test_champion_is_the_cheapest_within_min_gain_of_the_best_validation_score() -> None:
    cost = {"classical": 3.0, "transformer": 87.0, "ensemble": 90.0}
    val = {"classical": 0.847, "transformer": 0.8753, "ensemble": 0.8758}
    assert choose_champion(val, cost, 0.005) == ("transformer", "ensemble")
    assert choose_champion(val, cost, 0.0) == ("ensemble", "transformer")
    assert choose_champion(val, cost, 0.03) == ("classical", "ensemble")
    just_outside = val | {"transformer": 0.8707}
    assert choose_champion(just_outside, cost, 0.005) == ("ensemble", "transformer")
    tied = {"a": 0.85, "b": 0.85}
    assert choose_champion(tied, {"a": 1.0, "b": 1.0}, 0.0) == ("a", "b")  # by name
    assert choose_champion(tied, {"a": 2.0, "b": 1.0}, 0.0) == ("b", "a")  # by cost


def test_test_unseen_keeps_only_texts_absent_from_train() -> None:
    test = (["good", "bad", "nice one", "good"], [1, 0, 1, 1])
    assert unseen(test, ["good", "awful"]) == (["bad", "nice one"], [0, 1])


def test_threshold_and_decision() -> None:
    y = [0, 0, 1, 1]
    positive = np.array([0.2, 0.65, 0.7, 0.9])
    threshold = best_threshold(y, positive)
    assert 0.65 < threshold <= 0.7
    proba = np.c_[1 - positive, positive]
    assert label_ids(proba, threshold).tolist() == [0, 0, 1, 1]
    assert label_ids(np.array([[0.2, 0.5, 0.3]]), None).tolist() == [1]


def test_slices_split_short_long_and_emoji() -> None:
    texts = ["good 👍", "bad", "this is a long review of the shuttle"]
    result = slices(texts, [1, 0, 1], np.array([1, 0, 1]))
    assert result["short"]["rows"] == 2 and result["long"]["rows"] == 1
    assert result["emoji"]["rows"] == 1 and result["no_emoji"]["rows"] == 2


def keyword_model(texts: list[str]) -> np.ndarray:
    """A transparent rule model: negative words or 'not' or a thumbs-down make it negative."""
    negative = (
        "bad",
        "worst",
        "waste",
        "poor",
        "damaged",
        "broke",
        "fake",
        "👎",
        "😡",
        "😞",
        "not ",
    )
    return np.array([0 if any(w in t.lower() for w in negative) else 1 for t in texts])


def test_behaviour_suite_scores_a_rule_model() -> None:
    rates = run_suite(keyword_model)
    assert rates["negation"] == 1.0
    assert rates["invariance_names"] == 1.0 and rates["invariance_numbers"] == 1.0
    assert rates["emoji"] == 1.0 and rates["short"] == 1.0


def test_behaviour_suite_penalises_a_constant_model() -> None:
    rates = run_suite(lambda texts: np.ones(len(texts), dtype=int))
    assert rates["negation"] == 0.0
    assert rates["invariance_names"] == 1.0  # constant is invariant, by definition
    assert rates["emoji"] == pytest.approx(np.mean(list(EMOJI.values())), abs=1e-4)
    assert rates["short"] == pytest.approx(np.mean(list(SHORT.values())), abs=1e-4)
    assert len(negation_cases()) == 24


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=200),
    st.booleans(),
)
def test_macro_f1_is_scikit_learns_to_the_last_bit(pairs, as_bool) -> None:
    from sklearn.metrics import f1_score

    y_true = np.array([t for t, _ in pairs])
    y_pred = np.array([p for _, p in pairs])
    if as_bool:  # as best_threshold compares: P(positive) >= t
        y_pred = y_pred >= 1
    assert macro_f1(y_true, y_pred) == f1_score(y_true, y_pred, average="macro", zero_division=0)
