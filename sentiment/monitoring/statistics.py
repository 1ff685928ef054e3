"""The drift battery: each test compares a window of current texts with the reference, as
a p-value and an effect size; ``BATTERY`` names them, in the order they run, and every
caller (the detector, the report, Prometheus, the calibration bench, the docs' count, the
tests) reads it. Holm's correction makes them one family.

A test sees the two sides as ``Side`` records (the texts and what was measured of them) and
the run's random generator, which the permutation and split tests draw from in battery
order (so a seeded window gives the same p-values).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupShuffleSplit

from sentiment.data.text import Tokenizer

TOKENIZER = Tokenizer(emoji_mode="keep")
Result = dict[str, float]  # p_value and effect


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    ordered = sorted(p_values.items(), key=lambda kv: kv[1])
    m, running, adjusted = len(ordered), 0.0, {}
    for rank, (name, p) in enumerate(ordered):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[name] = running
    return adjusted


def word_counts(texts: list[str]) -> np.ndarray:
    return np.array([len(t.split()) for t in texts], dtype=float)


def oov_rates(texts: list[str], vocabulary: set[str]) -> np.ndarray:
    rates = []
    for text in texts:
        tokens = TOKENIZER(text)
        rates.append(sum(t not in vocabulary for t in tokens) / len(tokens) if tokens else 0.0)
    return np.array(rates)


def label_share_test(reference: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Chi-square test of the predicted-label shares against the reference labels.

    A class that neither side has is dropped; one that only one side has stays (a window
    predicted all one class is the most extreme shift, and the table is valid while every
    column total is positive).
    """
    n_classes = max(int(reference.max()), int(predicted.max())) + 1
    table = np.array(
        [np.bincount(reference, minlength=n_classes), np.bincount(predicted, minlength=n_classes)]
    )
    table = table[:, table.sum(axis=0) > 0]
    chi2 = stats.chi2_contingency(table) if table.shape[1] > 1 else None
    return {
        "p_value": 1.0 if chi2 is None else float(chi2.pvalue),
        "effect": float(predicted.mean() - reference.mean()),
    }


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length: squared distances become 2 - 2 cos (a cosine kernel)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def mmd_permutation_test(
    x: np.ndarray, y: np.ndarray, permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Biased MMD^2 with a median-heuristic RBF kernel and its permutation p-value."""
    pooled = np.vstack([x, y])
    sq = np.sum(pooled**2, axis=1)
    distances = np.maximum(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0)
    bandwidth = np.median(distances[np.triu_indices_from(distances, k=1)])
    kernel = np.exp(-distances / max(bandwidth, 1e-12))
    n, m = len(x), len(pooled)
    # Column j of `signs` weights the pooled rows as one split: +1/n (first) and -1/(m-n).
    assignments = np.vstack([np.arange(m)] + [rng.permutation(m) for _ in range(permutations)])
    signs = np.where(assignments < n, 1.0 / n, -1.0 / (m - n)).T
    statistics = np.einsum("ij,ij->j", signs, kernel @ signs)
    observed = statistics[0]
    p_value = (np.sum(statistics[1:] >= observed) + 1) / (permutations + 1)
    return float(observed), float(p_value)


def domain_classifier_test(
    reference: np.ndarray, current: np.ndarray, texts: list[str], rng: np.random.Generator
) -> dict[str, float]:
    """A classifier told to tell the window from the reference: its AUC, and the one-sided
    Mann-Whitney p-value of that AUC.

    Fitted on one half of the pooled rows, scored on the other half: scores of texts the
    classifier never saw keep the p-value valid (out-of-fold scores from k-fold models share
    training data and are not). A text in both the reference and the window stays on one
    side of the split (grouped by ``texts``, the pooled texts in row order), so the
    classifier cannot score by recognising it.
    """
    features = np.vstack([reference, current])
    domain = np.r_[np.zeros(len(reference)), np.ones(len(current))]
    groups = pd.factorize(pd.Series(texts))[0]
    split = GroupShuffleSplit(1, test_size=0.5, random_state=int(rng.integers(2**31)))
    fit_idx, test_idx = next(split.split(features, domain, groups))
    classifier = LogisticRegression(max_iter=1000).fit(features[fit_idx], domain[fit_idx])
    held_out = classifier.predict_proba(features[test_idx])[:, 1]
    held_domain = domain[test_idx]
    mw = stats.mannwhitneyu(
        held_out[held_domain == 1], held_out[held_domain == 0], alternative="greater"
    )
    auc = mw.statistic / ((held_domain == 1).sum() * (held_domain == 0).sum())
    return {"p_value": float(mw.pvalue), "effect": float(auc)}


@dataclass
class Side:
    """One side of a comparison: texts, the champion's scores and labels for them, their
    word counts and out-of-vocabulary rates, their TF-IDF->SVD projection, and the
    transformer champion's unit-length pooled embeddings (None for other champions)."""

    texts: list[str]
    scores: np.ndarray
    labels: np.ndarray
    words: np.ndarray
    oov: np.ndarray
    projected: np.ndarray
    semantic: np.ndarray | None


@dataclass(frozen=True)
class DriftTest:
    """One test of the battery: what it measures, and how (None: it does not apply)."""

    what: str
    run: Callable[[Side, Side, np.random.Generator, int], Result | None]
    transformer_only: bool = False  # needs the champion's own embeddings


def _score_ks(ref: Side, cur: Side, rng: np.random.Generator, permutations: int) -> Result:
    ks = stats.ks_2samp(ref.scores, cur.scores)
    return {"p_value": float(ks.pvalue), "effect": float(ks.statistic)}


def _word_count(ref: Side, cur: Side, rng: np.random.Generator, permutations: int) -> Result:
    mw = stats.mannwhitneyu(cur.words, ref.words, alternative="two-sided")
    return {
        "p_value": float(mw.pvalue),
        "effect": float(np.median(cur.words) - np.median(ref.words)),
    }


def _oov_rate(ref: Side, cur: Side, rng: np.random.Generator, permutations: int) -> Result:
    mw = stats.mannwhitneyu(cur.oov, ref.oov, alternative="greater")
    return {"p_value": float(mw.pvalue), "effect": float(cur.oov.mean() - ref.oov.mean())}


def _mmd(ref: Side, cur: Side, rng: np.random.Generator, permutations: int) -> Result:
    mmd, p_value = mmd_permutation_test(ref.projected, cur.projected, permutations, rng)
    return {"p_value": p_value, "effect": mmd}


def _embedding_mmd(
    ref: Side, cur: Side, rng: np.random.Generator, permutations: int
) -> Result | None:
    if ref.semantic is None or cur.semantic is None:
        return None
    mmd, p_value = mmd_permutation_test(ref.semantic, cur.semantic, permutations, rng)
    return {"p_value": p_value, "effect": mmd}


BATTERY: dict[str, DriftTest] = {
    "label_share": DriftTest(
        "predicted-label share (chi-square)",
        lambda ref, cur, rng, permutations: label_share_test(ref.labels, cur.labels),
    ),
    "score_ks": DriftTest("champion scores (Kolmogorov-Smirnov)", _score_ks),
    "word_count": DriftTest("words per text (Mann-Whitney)", _word_count),
    "oov_rate": DriftTest("out-of-vocabulary rate (one-sided Mann-Whitney)", _oov_rate),
    "mmd": DriftTest("MMD on the TF-IDF->SVD projection (permutation p-value)", _mmd),
    "domain_auc": DriftTest(
        "a domain classifier's AUC on a held-out half (Mann-Whitney)",
        lambda ref, cur, rng, permutations: domain_classifier_test(
            ref.projected, cur.projected, ref.texts + cur.texts, rng
        ),
    ),
    "embedding_mmd": DriftTest(
        "MMD on a transformer champion's own pooled embeddings (permutation p-value)",
        _embedding_mmd,
        transformer_only=True,
    ),
}
TESTS = tuple(BATTERY)


def run_battery(ref: Side, cur: Side, rng: np.random.Generator, permutations: int) -> dict:
    """Every test that applies, in battery order: its p-value and effect."""
    results = {}
    for name, test in BATTERY.items():
        result = test.run(ref, cur, rng, permutations)
        if result is not None:
            results[name] = result
    return results
