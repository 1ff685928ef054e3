"""Drift detection on text: the reference sample and its fitted projection, the test battery
(label share, score KS, word count, OOV rate, MMD with a permutation p-value, a domain
classifier, and for a transformer champion MMD on its own pooled embeddings), Holm's
correction, window verdicts and the Markdown report with its plots."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer

from sentiment.data.splits import RATING, TEXT, quarantine_reasons, read_raw
from sentiment.data.text import Tokenizer, clean_text
from sentiment.fileio import atomic_path
from sentiment.models.predictor import Predictor, label_ids
from sentiment.models.trust import load_skops, save_skops

TOKENIZER = Tokenizer(emoji_mode="keep")


TESTS = (
    "label_share",
    "score_ks",
    "word_count",
    "oov_rate",
    "mmd",
    "domain_auc",
    "embedding_mmd",  # a transformer champion's own pooled vectors; absent for the others
)


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
class Reference:
    texts: list[str]
    scores: np.ndarray
    labels: np.ndarray
    vocabulary: set[str]
    projection: Pipeline

    def save(self, directory: Path) -> None:
        with atomic_path(directory) as tmp:
            tmp.mkdir()
            pd.DataFrame({"text": self.texts}).to_parquet(tmp / "sample.parquet")
            pd.DataFrame({"score": self.scores, "predicted": self.labels}).to_parquet(
                tmp / "scores.parquet"
            )
            (tmp / "vocabulary.json").write_text(json.dumps(sorted(self.vocabulary)))
            save_skops(self.projection, tmp / "projection.skops")

    @classmethod
    def load(cls, directory: Path) -> Reference:
        sample = pd.read_parquet(directory / "sample.parquet")
        scores = pd.read_parquet(directory / "scores.parquet")
        return cls(
            sample["text"].tolist(),
            scores["score"].to_numpy(),
            scores["predicted"].to_numpy(),
            set(json.loads((directory / "vocabulary.json").read_text())),
            load_skops(directory / "projection.skops"),
        )


def raw_traffic(raw_csv: Path) -> pd.DataFrame:
    """Every valid raw review (cleaned ``text``, ``rating``, ``month``), repeats kept:
    reviews as traffic brings them.

    prepare keeps one row per distinct review ("Good" once); traffic repeats it hundreds
    of times, so drift compares windows with a sample of these rows, not of the splits.
    """
    raw = read_raw(raw_csv)
    valid = raw[quarantine_reasons(raw) == ""]
    return pd.DataFrame(
        {
            "text": valid[TEXT].map(clean_text).tolist(),
            "rating": valid[RATING].astype(int).tolist(),
            "month": valid["Month"].tolist() if "Month" in valid else None,
        }
    )


def build_reference(
    rows: list[str], predictor: Predictor, params: dict[str, Any], holdout: int
) -> tuple[Reference, np.ndarray]:
    """Reference artefacts from reviews at their natural multiplicity, and a held-out pool.

    A seeded row-level split of ``rows`` (not a split by distinct text: "Good" must reach
    every part in proportion, as it reaches every window of traffic) gives the reference
    sample (``reference_size`` rows), the indices of ``holdout`` rows never used here (for
    in-distribution windows), and the rest, on which the vocabulary and the TF-IDF->SVD
    projection are fitted: a frequent text is then known to both, a rare one to neither, as with new
    traffic. The champion's scores are those of the reference rows themselves.
    """
    rng = np.random.default_rng(params["seed"])
    order = rng.permutation(len(rows))
    size = min(params["reference_size"], len(rows) // 3)
    sample = [rows[i] for i in order[:size]]
    held = order[size : size + holdout]
    rest = [rows[i] for i in order[size + holdout :]]
    vocabulary = {token for text in rest for token in TOKENIZER(text)}
    projection = Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    tokenizer=TOKENIZER,
                    token_pattern=None,
                    lowercase=False,
                    sublinear_tf=True,
                    min_df=2,
                ),
            ),
            ("svd", TruncatedSVD(params["svd_components"], random_state=params["seed"])),
            ("l2", Normalizer()),
        ]
    ).fit(rest)
    proba = predictor.predict_proba(sample)
    threshold = predictor.meta.get("threshold")
    return Reference(
        sample, proba[:, -1], label_ids(proba, threshold), vocabulary, projection
    ), held


class DriftDetector:
    """Runs the battery on windows of current texts against one reference."""

    def __init__(self, reference: Reference, predictor: Predictor | None, params: dict[str, Any]):
        self.ref = reference
        self.predictor = predictor
        self.params = params
        self.ref_words = word_counts(reference.texts)
        self.ref_oov = oov_rates(reference.texts, reference.vocabulary)
        self.ref_embedding = reference.projection.transform(reference.texts)
        self.ref_semantic = (
            unit_rows(predictor.embeddings(reference.texts))
            if getattr(predictor, "has_embedding", False)
            else None
        )

    def test_window(
        self,
        texts: list[str],
        scores: np.ndarray | None = None,
        seed: int | None = None,
        embeddings: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """All tests on one window; ``scores`` (champion P(positive)) and ``embeddings``
        (its pooled vectors) skip re-scoring.

        Windows are taken as they arrive, repeats included: the reference is sampled from
        the training reviews at the same natural multiplicity (``build_reference``).
        """
        params = self.params
        if len(texts) < params["min_window"]:
            return {
                "status": "insufficient data",
                "drift_detected": False,
                "n": len(texts),
                "min_window": params["min_window"],
            }
        rng = np.random.default_rng(params["seed"] if seed is None else seed)
        # Raw texts on purpose: a format change (e.g. a scraping artifact) is drift too.
        if scores is None:
            proba = self.predictor.predict_proba(texts)
            scores = proba[:, -1]
            predicted = label_ids(proba, self.predictor.meta.get("threshold"))
        else:
            threshold = self.predictor.meta.get("threshold") if self.predictor else None
            predicted = label_ids(np.c_[1 - scores, scores], threshold)
        results: dict[str, dict[str, float]] = {}

        results["label_share"] = label_share_test(self.ref.labels, predicted)
        ks = stats.ks_2samp(self.ref.scores, scores)
        results["score_ks"] = {"p_value": float(ks.pvalue), "effect": float(ks.statistic)}
        words = word_counts(texts)
        mw = stats.mannwhitneyu(words, self.ref_words, alternative="two-sided")
        results["word_count"] = {
            "p_value": float(mw.pvalue),
            "effect": float(np.median(words) - np.median(self.ref_words)),
        }
        oov = oov_rates(texts, self.ref.vocabulary)
        mw = stats.mannwhitneyu(oov, self.ref_oov, alternative="greater")
        results["oov_rate"] = {
            "p_value": float(mw.pvalue),
            "effect": float(oov.mean() - self.ref_oov.mean()),
        }

        embedding = self.ref.projection.transform(texts)
        mmd, p_value = mmd_permutation_test(
            self.ref_embedding, embedding, params["permutations"], rng
        )
        results["mmd"] = {"p_value": p_value, "effect": mmd}
        results["domain_auc"] = domain_classifier_test(
            self.ref_embedding, embedding, self.ref.texts + texts, rng
        )
        if self.ref_semantic is not None:  # what the transformer itself sees
            vectors = unit_rows(
                self.predictor.embeddings(texts) if embeddings is None else embeddings
            )
            mmd, p_value = mmd_permutation_test(
                self.ref_semantic, vectors, params["permutations"], rng
            )
            results["embedding_mmd"] = {"p_value": p_value, "effect": mmd}

        adjusted = holm({name: r["p_value"] for name, r in results.items()})
        for name, result in results.items():
            result["p_adjusted"] = adjusted[name]
            result["drift"] = adjusted[name] < params["alpha"]
        drifting = any(r["drift"] for r in results.values())
        return {
            "status": "drift" if drifting else "no drift",
            "drift_detected": drifting,
            "n": len(texts),
            "tests": results,
            "length": {"reference": self.ref_words.tolist(), "current": words.tolist()},
            "scores": {"reference": self.ref.scores.tolist(), "current": scores.tolist()},
        }


def read_frame(path: Path, suffix: str) -> pd.DataFrame:
    """One CSV, Parquet or JSONL file as a frame with a 'text' column (clear errors)."""
    readers = {
        ".csv": pd.read_csv,
        ".parquet": pd.read_parquet,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
    }
    reader = readers.get(suffix.lower())
    if reader is None:
        raise ValueError(f"{path}: unsupported format {suffix!r} (csv, parquet, jsonl)")
    try:
        frame = reader(path)
    except Exception as err:
        raise ValueError(f"{path}: cannot read as {suffix[1:]}: {err}") from err
    if "text" not in frame.columns and not frame.empty:
        raise ValueError(f"{path}: no 'text' column (columns: {list(frame.columns)})")
    return frame


def read_current(path: Path) -> list[str]:
    """Texts from a CSV, Parquet or JSONL file with a 'text' column, or from a directory of
    inference logs (every worker's ``*.jsonl`` and rotated ``*.jsonl.<n>``, in time order)."""
    if path.is_dir():
        logs = sorted(p for p in path.iterdir() if re.fullmatch(r".+\.jsonl(\.\d+)?", p.name))
        if not logs:
            raise ValueError(f"{path}: no inference logs (*.jsonl) in it")
        frame = pd.concat([read_frame(p, ".jsonl") for p in logs], ignore_index=True)
        if "timestamp" in frame.columns:
            frame = frame.sort_values("timestamp", kind="stable")
    elif path.is_file():
        frame = read_frame(path, path.suffix)
    else:
        raise ValueError(f"{path}: no such file or directory")
    if "text" not in frame.columns:
        raise ValueError(f"{path}: no texts")
    texts = frame["text"].dropna().astype(str)
    return texts[texts.str.strip() != ""].tolist()


def windows_verdict(results: list[dict], retrain_after: int) -> dict[str, Any]:
    """Longest run of consecutive drifting windows and the retrain rule."""
    longest = run = 0
    for result in results:
        run = run + 1 if result["drift_detected"] else 0
        longest = max(longest, run)
    return {
        "windows": len(results),
        "drifting": sum(r["drift_detected"] for r in results),
        "longest_drifting_run": longest,
        "retrain": longest >= retrain_after,
    }


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The metrics part of one window's result (no raw distributions)."""
    return {k: v for k, v in result.items() if k not in ("length", "scores")}


def write_report(results: dict[str, dict], report_md: Path, plots: Path) -> None:
    """``report_md``: a tests table per current set, and its PNG plots in ``plots`` (a
    folder beside it, the report's links are relative)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [
        "# Drift report",
        "",
        "| current set | n | verdict | " + " | ".join(TESTS) + " |",
        "|---" * (3 + len(TESTS)) + "|",
    ]
    plots.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    images: list[str] = []
    for name, result in results.items():
        tests = result.get("tests", {})
        cells = [
            f"{tests[t]['p_adjusted']:.3g}{' ⚠' if tests[t]['drift'] else ''}"
            if t in tests
            else "-"
            for t in TESTS
        ]
        rows.append(f"| {name} | {result['n']} | {result['status']} | " + " | ".join(cells) + " |")
        if "length" in result:
            fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
            for key, ax, title in (
                ("length", left, "words per text"),
                ("scores", right, "champion P(positive)"),
            ):
                ax.hist(
                    result[key]["reference"], bins=30, alpha=0.5, density=True, label="reference"
                )
                ax.hist(result[key]["current"], bins=30, alpha=0.5, density=True, label=name)
                ax.set_title(title)
                ax.legend()
            fig.tight_layout()
            fig.savefig(plots / f"{name}.png", dpi=80)
            plt.close(fig)
            images += ["", f"![{name}]({plots.name}/{name}.png)"]
    lines += [*rows, "", "Cells: Holm-adjusted p-values; ⚠ marks a test below the family alpha."]
    lines += images
    with atomic_path(report_md) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
