"""The gate's decision: score the candidate and production on the same test rows, apply the
rules (absolute floor, paired bootstrap gain, size, behaviour). The registry is only read."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.tracking import MlflowClient

from sentiment.evaluation.behaviour import run_suite
from sentiment.evaluation.metrics import macro_f1
from sentiment.fileio import read_split
from sentiment.models.predictor import label_ids, load_predictor, predict, read_meta
from sentiment.models.trust import dir_size_mb, verify_digests
from sentiment.registry.store import (
    MODEL_MD5_TAG,
    download_version,
    production_version,
)
from sentiment.tracking import (
    dvc_md5,
    params_hash,
)


def assess(model_dir: Path, texts: list[str], labels: list[int]) -> dict[str, Any]:
    """Test predictions, macro-F1, size and behavioural pass rates, as evaluate measures them.

    Nothing timed: the decision must follow from the inputs (latency is evaluate's report
    and ``bench.serve_load``'s, where noise is expected).
    """
    predictor = load_predictor(model_dir)
    proba = predictor.predict_proba(texts)
    predicted = label_ids(proba, predictor.meta.get("threshold"))
    return {
        "predicted": [int(p) for p in predicted],
        "macro_f1": round(macro_f1(labels, predicted), 4),
        "size_mb": dir_size_mb(model_dir),
        "behaviour": run_suite(lambda batch: predict(predictor, batch), proba.shape[1]),
    }


def resampled_macro_f1(y: np.ndarray, predicted: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Macro-F1 of each row of a (resamples x rows) array, over the classes each row has."""
    scores, present = np.zeros(len(y)), np.zeros(len(y))
    for c in classes:
        tp = ((predicted == c) & (y == c)).sum(axis=1)
        wrong = ((predicted == c) != (y == c)).sum(axis=1)  # false positives + negatives
        seen = (tp + wrong) > 0
        scores += np.where(seen, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)
        present += seen
    return scores / np.maximum(present, 1)


def paired_bootstrap(
    labels: list[int], candidate: list[int], production: list[int], params: dict[str, Any]
) -> dict[str, Any]:
    """Macro-F1 difference (candidate - production) on the same rows, with the lower bound
    of its one-sided ``gate.confidence`` bootstrap interval (both scored on each resample)."""
    y, a, b = np.asarray(labels), np.asarray(candidate), np.asarray(production)
    rows = np.random.default_rng(params["seed"]).integers(
        0, len(y), size=(params["bootstrap_resamples"], len(y))
    )
    classes = np.union1d(y, np.union1d(a, b))
    diffs = resampled_macro_f1(y[rows], a[rows], classes) - resampled_macro_f1(
        y[rows], b[rows], classes
    )
    return {
        "delta": round(macro_f1(y, a) - macro_f1(y, b), 4),
        "ci_low": round(float(np.quantile(diffs, 1 - params["confidence"])), 4),
        "confidence": params["confidence"],
        "resamples": params["bootstrap_resamples"],
    }


def absolute_rules(candidate: dict, params: dict) -> dict[str, dict[str, Any]]:
    """The rules a model must pass on its own: the macro-F1 floor and the size budget."""
    f1 = candidate["macro_f1"]
    return {
        "min_f1": {
            "candidate": f1,
            "threshold": params["min_f1"],
            "passed": f1 >= params["min_f1"],
        },
        "size": {
            "candidate": candidate["size_mb"],
            "threshold": params["max_size_mb"],
            "passed": candidate["size_mb"] <= params["max_size_mb"],
        },
    }


def behaviour_rule(candidate: dict, production: dict, params: dict) -> dict[str, Any]:
    """No behavioural pass rate may drop below production's by more than the tolerance."""
    drops = {
        name: round(production["behaviour"].get(name, 0.0) - rate, 4)
        for name, rate in candidate["behaviour"].items()
    }
    return {
        "drops": drops,
        "threshold": params["behaviour_tolerance"],
        "passed": all(d <= params["behaviour_tolerance"] for d in drops.values()),
    }


def decide(
    candidate: dict, production: dict | None, comparison: dict | None, params: dict
) -> dict[str, Any]:
    """Every promotion rule with its values and verdict; ``promote`` only if all pass."""
    rules = absolute_rules(candidate, params)
    if production is not None and comparison is not None:
        rules["min_delta"] = {
            "candidate": comparison["delta"],
            "threshold": params["min_delta"],
            "passed": comparison["delta"] >= params["min_delta"],
        }
        rules["paired_ci"] = {
            "candidate": comparison["ci_low"],
            "threshold": 0.0,
            "passed": comparison["ci_low"] > 0,
        }
        rules["behaviour"] = behaviour_rule(candidate, production, params)
    return {"promote": all(rule["passed"] for rule in rules.values()), "rules": rules}


def deploy_rules(candidate: dict, production: dict | None, params: dict) -> dict[str, Any]:
    """The rules ``deploy`` re-checks on a chosen version: the absolute ones and behaviour
    against production, not the paired gain (moving back or sideways is deliberate)."""
    rules = absolute_rules(candidate, params)
    if production is not None:
        rules["behaviour"] = behaviour_rule(candidate, production, params)
    return rules


def without_predictions(assessment: dict[str, Any]) -> dict[str, Any]:
    """What the decision records of an assessment: all but the per-row predictions."""
    return {k: v for k, v in assessment.items() if k != "predicted"}


def assess_version(
    client: MlflowClient, name: str, version: str, texts: list[str], labels: list[int]
) -> dict[str, Any]:
    """``assess`` of a registered version: its files, checked against their sha256 record and
    loaded with this project's code, never the code logged beside the model (it runs on load)."""
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, digests = download_version(client, name, version, Path(tmp))
        verify_digests(model_dir, digests)
        return assess(model_dir, texts, labels)


def decision_for(
    client: MlflowClient, params: dict[str, Any], candidate_dir: Path, test_split: Path
) -> dict[str, Any]:
    """Score the candidate and the registry's production on the test split and decide."""
    texts, labels = read_split(test_split)
    name = params["registered_model"]
    candidate = assess(candidate_dir, texts, labels)
    current = production_version(client, name)
    production = comparison = None
    if current is not None:
        production = assess_version(client, name, str(current.version), texts, labels)
        comparison = paired_bootstrap(
            labels, candidate["predicted"], production["predicted"], params
        )
    decision = decide(candidate, production, comparison, params)
    data_md5 = {str(test_split): dvc_md5(test_split), str(candidate_dir): dvc_md5(candidate_dir)}
    return {
        **decision,
        "comparison": comparison,
        "candidate": {
            "name": read_meta(candidate_dir).get("candidate"),
            "model_md5": data_md5[str(candidate_dir)],
            **without_predictions(candidate),
        },
        "production": None
        if current is None
        else {
            "version": str(current.version),
            "model_md5": current.tags.get(MODEL_MD5_TAG),
            **without_predictions(production),
        },
        "data_md5": data_md5,
        "params_hash": params_hash(params),
    }


def verdict(record: dict[str, Any]) -> dict[str, Any]:
    """The decision's headline for ``dvc exp show``: promote or not, against what."""
    production = record["production"]
    return {
        "gate": {
            "promote": record["promote"],
            "against": f"version {production['version']}" if production else "none",
        }
    }
