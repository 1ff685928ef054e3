"""What the pipeline and the drift command hand to Prometheus.

- The reference figures the service's alerts compare live traffic with (the champion's
  predicted-positive share and mean confidence on the drift reference sample, reviews at
  their natural multiplicity), as recording rules: ``reports/drift/reference.rules.yml``,
  loaded beside ``monitoring/rules/sentiment.yml``.
- A drift run's verdicts and p-values in the text exposition format, written atomically for
  node-exporter's textfile collector (or pushed to a Pushgateway).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sentiment.data.labels import label_names
from sentiment.fileio import atomic_path
from sentiment.models.predictor import Predictor

POSITIVE_SHARE = "sentiment:reference_positive_share"
CONFIDENCE_MEAN = "sentiment:reference_confidence_mean"


def reference_figures(predictor: Predictor, texts: list[str]) -> dict[str, float]:
    """The champion's predicted-positive share and mean confidence on ``texts``."""
    from sentiment.models.predictor import label_ids

    names = label_names(predictor.meta, "the champion")
    positive = names.index("positive") if "positive" in names else len(names) - 1
    proba = predictor.predict_proba(texts)
    predicted = label_ids(proba, predictor.meta.get("threshold"))
    confidence = proba[np.arange(len(predicted)), predicted]
    return {
        "positive_share": round(float(np.mean(predicted == positive)), 3),
        "confidence_mean": round(float(np.mean(confidence)), 3),
    }


def reference_rules(figures: dict[str, float]) -> dict[str, Any]:
    """Recording rules that hold the reference figures as series (constant vectors)."""
    return {
        "groups": [
            {
                "name": "sentiment-reference",
                "rules": [
                    {"record": POSITIVE_SHARE, "expr": f"vector({figures['positive_share']})"},
                    {"record": CONFIDENCE_MEAN, "expr": f"vector({figures['confidence_mean']})"},
                ],
            }
        ]
    }


def write_reference_rules(path: Path, figures: dict[str, float]) -> None:
    header = "# Written by `dvc repro drift` (the champion's figures on the drift reference).\n"
    with atomic_path(path) as tmp:
        tmp.write_text(header + yaml.safe_dump(reference_rules(figures), sort_keys=False))


def write_drift_metrics(path: Path, results: list[dict[str, Any]], verdict: dict) -> None:
    """The last window's Holm-adjusted p-values and verdicts, and the run's retrain verdict,
    as a ``.prom`` file (``prometheus_client`` writes it to a temporary file, then renames)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    p_value = Gauge(
        "sentiment_drift_p_value",
        "Holm-adjusted p-value of each drift test on the last window",
        ["test"],
        registry=registry,
    )
    drifting = Gauge(
        "sentiment_drift_test_drifting",
        "1 when the test is below the family alpha on the last window",
        ["test"],
        registry=registry,
    )
    for test, result in results[-1].get("tests", {}).items():
        p_value.labels(test).set(result["p_adjusted"])
        drifting.labels(test).set(int(result["drift"]))
    figures = {
        "sentiment_drift_windows": ("Windows tested in the last run", verdict["windows"]),
        "sentiment_drift_windows_drifting": ("Drifting windows", verdict["drifting"]),
        "sentiment_drift_retrain": (
            "1 when drift.retrain_after consecutive windows drifted",
            int(verdict["retrain"]),
        ),
    }
    for name, (documentation, value) in figures.items():
        Gauge(name, documentation, registry=registry).set(value)
    Gauge(
        "sentiment_drift_last_run_timestamp_seconds", "When drift last ran", registry=registry
    ).set_to_current_time()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
