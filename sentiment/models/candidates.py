"""How evaluate scores and chooses: per-candidate metrics on every set (bootstrap CI,
slices, behaviour, latency, size), the ensemble's weight and threshold fitted on validation,
cross-fitted validation macro-F1, the champion rule, the plots and the champion's export."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import emoji
import numpy as np
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    RocCurveDisplay,
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)
from sklearn.model_selection import StratifiedKFold

from sentiment.data.labels import label_names, labels_record
from sentiment.evaluation.behaviour import run_suite
from sentiment.evaluation.metrics import bootstrap_ci, expected_calibration_error, macro_f1
from sentiment.fileio import atomic_path, write_json
from sentiment.models.predictor import (
    META_FILE,
    EnsemblePredictor,
    Predictor,
    best_threshold,
    label_ids,
    load_predictor,
    predict,
    read_meta,
)
from sentiment.models.trust import dir_size_mb

MEMBERS = ("classical", "transformer")  # the ensemble's, in its weights' order
CANDIDATES = (*MEMBERS, "ensemble")


PR_PLOTS = {-1: "pr", 0: "pr_negative"}  # precision-recall plots: the most positive class
# and the most negative, where models differ (classes run from most negative to most positive)


WEIGHTS = np.round(np.arange(0.0, 1.001, 0.1), 1)  # the transformer's share in the ensemble


VAL_FOLDS = 5  # cross-fitting folds of validation


def blend(members: list[np.ndarray], weight: float) -> np.ndarray:
    """One member's probabilities, or two members' weighted by ``weight`` on the second."""
    return members[0] if len(members) == 1 else (1 - weight) * members[0] + weight * members[1]


def fit_decision(y: list[int], members: list[np.ndarray]) -> dict[str, float | None]:
    """The weight (two members) and, for two classes, the threshold with the best macro-F1
    on ``y`` (more classes take the argmax); ties go to the weight closest to an even split,
    so equal inputs give the same choice."""
    best: tuple = ()
    for weight in WEIGHTS if len(members) == 2 else [1.0]:
        proba = blend(members, weight)
        threshold = best_threshold(y, proba[:, 1]) if proba.shape[1] == 2 else None
        key = (round(macro_f1(y, label_ids(proba, threshold)), 6), -abs(weight - 0.5))
        if not best or key > best[0]:
            best = (key, float(weight), threshold)
    return {"weight": best[1], "threshold": best[2]}


def crossfit_macro_f1(y: list[int], members: list[np.ndarray], seed: int) -> float:
    """Validation macro-F1 where each row is decided by a weight and threshold fitted on the
    other folds (``fit_decision``): an estimate that did not choose its own parameters."""
    y_arr = np.asarray(y)
    pred = np.empty_like(y_arr)
    folds = StratifiedKFold(VAL_FOLDS, shuffle=True, random_state=seed)
    for fit_rows, held in folds.split(np.zeros(len(y_arr)), y_arr):
        fitted = fit_decision(y_arr[fit_rows].tolist(), [m[fit_rows] for m in members])
        held_proba = blend([m[held] for m in members], fitted["weight"])
        pred[held] = label_ids(held_proba, fitted["threshold"])
    return round(macro_f1(y_arr, pred), 4)


def one_vs_rest_auc(y: list[int], proba: np.ndarray) -> float:
    """ROC AUC of each class against the others, averaged over the classes ``y`` holds
    beside others (an out-of-domain set may lack some)."""
    y_arr = np.asarray(y)
    present = [k for k in range(proba.shape[1]) if 0 < np.sum(y_arr == k) < len(y_arr)]
    return float(np.mean([roc_auc_score(y_arr == k, proba[:, k]) for k in present]))


def ranking_scores(y: list[int], proba: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC of the most positive class and of the most negative, and the Brier
    score. Two classes: of P(positive). More: ROC AUC one-vs-rest (macro over the classes
    present) and the multi-class Brier score (squared error summed over the classes)."""
    y_arr = np.asarray(y)
    top = proba.shape[1] - 1
    if top == 1:
        roc_auc = roc_auc_score(y_arr, proba[:, 1])
        brier = brier_score_loss(y_arr, proba[:, 1])
    else:
        roc_auc = one_vs_rest_auc(y, proba)
        brier = np.mean(np.sum((proba - np.eye(top + 1)[y_arr]) ** 2, axis=1))
    return {
        "roc_auc": round(float(roc_auc), 4),
        "pr_auc": round(float(average_precision_score(y_arr == top, proba[:, top])), 4),
        "pr_auc_negative": round(float(average_precision_score(y_arr == 0, proba[:, 0])), 4),
        "brier": round(float(brier), 4),
    }


def score(
    y: list[int], proba: np.ndarray, threshold: float | None, params: dict, names: list[str]
) -> dict:
    """Every metric of one candidate on one split; ``names``: the classes, in id order."""
    pred = label_ids(proba, threshold)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, pred, labels=range(len(names)), zero_division=0
    )
    return {
        "macro_f1": round(macro_f1(y, pred), 4),
        "macro_f1_ci": bootstrap_ci(y, pred, params["bootstrap_resamples"], params["seed"]),
        "accuracy": round(float(accuracy_score(y, pred)), 4),
        "per_class": {
            name: {
                "precision": round(float(p), 4),
                "recall": round(float(r), 4),
                "f1": round(float(f), 4),
            }
            for name, p, r, f in zip(names, precision, recall, f1, strict=True)
        },
        **ranking_scores(y, proba),
        "ece": round(expected_calibration_error(np.asarray(y), proba), 4),
    }


def latency_ms_per_1k(predictor: Predictor, texts: list[str]) -> float:
    """Wall time of ``predict_proba`` on ``texts`` (after a warm-up), per 1,000 texts."""
    predictor.predict_proba(texts[:64])
    start = time.perf_counter()
    predictor.predict_proba(texts)
    return round((time.perf_counter() - start) / len(texts) * 1e6, 1)


def slices(texts: list[str], y: list[int], pred: np.ndarray) -> dict[str, float]:
    """Macro-F1 on short (<= 5 words) vs longer reviews, and with vs without emoji."""
    y_arr = np.asarray(y)
    short = np.array([len(t.split()) <= 5 for t in texts])
    has_emoji = np.array([emoji.emoji_count(t) > 0 for t in texts])
    masks = {"short": short, "long": ~short, "emoji": has_emoji, "no_emoji": ~has_emoji}
    return {
        name: {"macro_f1": round(macro_f1(y_arr[m], pred[m]), 4), "rows": int(m.sum())}
        for name, m in masks.items()
    }


def pr_points(y: list[int], proba: np.ndarray, label: int) -> list[dict[str, float]]:
    """The precision-recall curve of class ``label`` (an index: -1 is the last class),
    scored by its own probability."""
    label = range(proba.shape[1])[label]
    precision, recall, _ = precision_recall_curve(np.asarray(y) == label, proba[:, label])
    return [
        {"recall": round(float(r), 4), "precision": round(float(p), 4)}
        for r, p in zip(recall, precision, strict=True)
    ]


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures ``dvc exp show`` and ``dvc metrics show`` list (the rest stays in
    ``reports/evaluate/metrics.json``): the champion with its test CI, every candidate's val
    and test."""
    champion = metrics["champion"]
    low, high = metrics[champion["name"]]["test"]["macro_f1_ci"]
    return {
        "champion": {
            "name": champion["name"],
            "val_macro_f1": champion["val"]["macro_f1"],
            "test_macro_f1": champion["test"]["macro_f1"],
            "test_ci_low": low,
            "test_ci_high": high,
        },
        **{
            f"{split}_macro_f1": {n: metrics[n][split]["macro_f1"] for n in CANDIDATES}
            for split in ("val", "test")
        },
        "val_crossfit_macro_f1": {n: metrics[n]["val_crossfit_macro_f1"] for n in CANDIDATES},
    }


def write_plots(
    y: list[int],
    probas: dict[str, np.ndarray],
    thresholds: dict,
    names: list[str],
    out: dict[str, Path],
) -> None:
    """ROC, PR and confusion data for ``dvc plots`` and the same plots as PNG files, each
    kind in its folder of ``out`` (keys png, roc, pr, pr_negative, confusion). ROC and PR
    are of the most positive class against the rest (P(positive) with two classes), and PR
    of the most negative too; the confusion matrix has every class of ``names``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = len(names) - 1
    # scikit-learn's displays take two classes: the most positive one against the rest
    truth = y if top == 1 else (np.asarray(y) == top).astype(int)
    png = out["png"]
    png.mkdir(parents=True, exist_ok=True)
    roc_ax = plt.subplots(figsize=(5, 4))[1]
    pr_ax = plt.subplots(figsize=(5, 4))[1]
    pr_negative_ax = plt.subplots(figsize=(5, 4))[1]
    for name, proba in probas.items():
        fpr, tpr, _ = roc_curve(y, proba[:, top], pos_label=top)
        write_json(
            out["roc"] / f"{name}.json",
            [
                {"fpr": round(float(a), 4), "tpr": round(float(b), 4)}
                for a, b in zip(fpr, tpr, strict=True)
            ],
        )
        for label in PR_PLOTS:
            write_json(out[PR_PLOTS[label]] / f"{name}.json", pr_points(y, proba, label))
        pred = label_ids(proba, thresholds[name])
        write_json(
            out["confusion"] / f"{name}.json",
            [{"actual": names[a], "predicted": names[p]} for a, p in zip(y, pred, strict=True)],
        )
        RocCurveDisplay.from_predictions(truth, proba[:, top], pos_label=1, name=name, ax=roc_ax)
        PrecisionRecallDisplay.from_predictions(
            truth, proba[:, top], pos_label=1, name=name, ax=pr_ax
        )
        PrecisionRecallDisplay.from_predictions(
            np.asarray(y) == 0, proba[:, 0], name=name, ax=pr_negative_ax
        )
        display = ConfusionMatrixDisplay.from_predictions(
            y, pred, labels=range(len(names)), display_labels=names, colorbar=False
        )
        display.ax_.set_title(f"{name} (test)")
        display.figure_.savefig(png / f"confusion_{name}.png", dpi=90, bbox_inches="tight")
        plt.close(display.figure_)
    for ax, title, file in (
        (roc_ax, "ROC" if top == 1 else f"ROC ({names[top]})", "roc"),
        (pr_ax, f"PR ({names[top]})", "pr"),
        (pr_negative_ax, f"PR ({names[0]})", "pr_negative"),
    ):
        ax.set_title(f"{title} on test")
        ax.figure.savefig(png / f"{file}.png", dpi=90, bbox_inches="tight")
        plt.close(ax.figure)


def export_champion(
    name: str,
    thresholds: dict[str, float | None],
    weights: list[float],
    members: dict[str, Path],
    target: Path,
    names: list[str],
) -> None:
    """Copy the champion into one self-contained model directory (atomically); an ensemble
    keeps its members' ``weights`` and the class ``names``."""
    with atomic_path(target) as tmp:
        if name == "ensemble":
            tmp.mkdir()
            for member in MEMBERS:
                shutil.copytree(members[member], tmp / member)
            meta = {
                "flavor": "ensemble",
                "members": list(MEMBERS),
                "weights": weights,
                "n_classes": len(names),
                **labels_record(names),
            }
        else:
            shutil.copytree(members[name], tmp)
            meta = read_meta(tmp)
        write_json(tmp / META_FILE, meta | {"candidate": name, "threshold": thresholds[name]})


def choose_champion(
    val_f1: dict[str, float], cost: dict[str, float], min_gain: float
) -> tuple[str, str]:
    """Champion and runner-up. The best validation macro-F1 wins unless cheaper candidates
    are within ``min_gain`` of it: then the cheapest of those. Test never decides; ties
    fall to the cheaper, then to the name, so equal inputs give the same choice."""
    best = max(val_f1.values())
    close = [name for name in val_f1 if val_f1[name] >= round(best - min_gain, 6)]
    champion = min(close, key=lambda name: (cost[name], -val_f1[name], name))
    runner_up = max(
        (name for name in val_f1 if name != champion),
        key=lambda name: (val_f1[name], -cost[name], name),
    )
    return champion, runner_up


CHAMPION_RULE = (
    "cheapest (model size) within evaluate.min_gain of the best cross-fitted val macro-F1"
)


def unseen(test: tuple[list[str], list[int]], train_texts: list[str]) -> tuple[list, list]:
    """The test rows whose (cleaned) text does not occur in train: leakage made visible."""
    seen = set(train_texts)
    rows = [(t, y) for t, y in zip(*test, strict=True) if t not in seen]
    return [t for t, _ in rows], [y for _, y in rows]


def costs(
    predictors: dict[str, Predictor], members: dict[str, Path], texts: list[str]
) -> tuple[dict[str, float], dict[str, float]]:
    """Each candidate's latency (ms per 1k ``texts``) and size (MiB); the ensemble costs its
    members' sum."""
    latency = {name: latency_ms_per_1k(p, texts) for name, p in predictors.items()}
    latency["ensemble"] = round(sum(latency.values()), 1)
    size = {name: dir_size_mb(path) for name, path in members.items()}
    size["ensemble"] = round(sum(size.values()), 2)
    return latency, size


def champion_record(
    metrics: dict[str, Any], crossfit: dict[str, float], size: dict[str, float], min_gain: float
) -> dict[str, Any]:
    """The champion by ``CHAMPION_RULE``, the runner-up, and the figures it was chosen on."""
    champion, runner_up = choose_champion(crossfit, size, min_gain)
    return {
        "name": champion,
        "rule": CHAMPION_RULE,
        "runner_up": runner_up,
        "val_crossfit_macro_f1": crossfit[champion],
        "val": {"macro_f1": metrics[champion]["val"]["macro_f1"]},
        "test": {"macro_f1": metrics[champion]["test"]["macro_f1"]},
    }


def evaluate_candidates(
    data: dict[str, tuple[list[str], list[int]]], members: dict[str, Path], params: dict[str, Any]
) -> tuple[dict[str, Any], dict]:
    """Every candidate's metrics on every set of ``data`` (val and test among them) and the
    champion, and the test probabilities, thresholds, ensemble weights and class names."""
    predictors = {name: load_predictor(members[name]) for name in MEMBERS}
    names = label_names(predictors["classical"].meta, "evaluate: the classical model")
    probas = {
        name: {split: p.predict_proba(texts) for split, (texts, _) in data.items()}
        for name, p in predictors.items()
    }
    y_val = data["val"][1]
    blended = fit_decision(y_val, [probas[n]["val"] for n in MEMBERS])
    weights = [round(1 - blended["weight"], 1), blended["weight"]]
    probas["ensemble"] = {
        split: blend([probas[n][split] for n in MEMBERS], blended["weight"]) for split in data
    }
    thresholds = {name: p.meta.get("threshold") for name, p in predictors.items()}
    thresholds["ensemble"] = blended["threshold"]
    crossfit = {n: crossfit_macro_f1(y_val, [probas[n]["val"]], params["seed"]) for n in MEMBERS}
    crossfit["ensemble"] = crossfit_macro_f1(
        y_val, [probas[n]["val"] for n in MEMBERS], params["seed"]
    )

    test_texts = data["test"][0]
    latency, size = costs(predictors, members, test_texts)
    candidates = {
        **predictors,
        "ensemble": EnsemblePredictor(
            list(predictors.values()), {"threshold": thresholds["ensemble"], "weights": weights}
        ),
    }

    metrics: dict[str, Any] = {}
    for name in probas:
        test_pred = label_ids(probas[name]["test"], thresholds[name])
        metrics[name] = {
            **{
                split: score(y, probas[name][split], thresholds[name], params, names)
                for split, (_, y) in data.items()
            },
            "val_crossfit_macro_f1": crossfit[name],
            "threshold": thresholds[name],
            "latency_ms_per_1k": latency[name],
            "size_mb": size[name],
            "behaviour": run_suite(lambda texts, c=candidates[name]: predict(c, texts), len(names)),
            "slices": slices(test_texts, data["test"][1], test_pred),
        }
    metrics["ensemble"]["weights"] = dict(zip(MEMBERS, weights, strict=True))
    metrics["champion"] = champion_record(metrics, crossfit, size, params["min_gain"])
    return metrics, {
        "y": data["test"][1],
        "probas": {n: p["test"] for n, p in probas.items()},
        "thresholds": thresholds,
        "weights": weights,
        "names": names,
    }
