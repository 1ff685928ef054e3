"""train_transformer: fine-tune a local Hugging Face encoder (MiniLM by default) offline.

Dynamic padding over length-grouped batches, AdamW with linear warmup and weight decay,
gradient clipping, early stopping on validation macro-F1 (best epoch kept), decision
threshold chosen on validation. The head learns the labels, or with ``target: rating`` the
1-5 star ratings, whose probabilities are summed into the labels they make up. Seeded, with
deterministic algorithms and every CPU numeric path pinned (``sentiment/models/numerics.py``: the
command starts itself again when the caller's environment differs), so its bytes are the
same on any x86-64 machine; runs on CUDA when present.
The model directory also holds an ONNX export, and with ``quantize`` a static int8 copy of
it, kept only when it costs less than 0.5 validation macro-F1 points, no behavioural pass
rate drops more than 0.05 and no score moves more than ``INVARIANCE_BOUND`` with its
batch-mates (``meta.json`` says which, and why).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import mlflow

from sentiment import paths
from sentiment.cli import entry_point, no_options
from sentiment.data.labels import labels_record, prepared_classes
from sentiment.fileio import atomic_path, write_json
from sentiment.headlines import stage_line
from sentiment.models.mlflow_model import log_model
from sentiment.models.numerics import cpu_signature, numerics_record, run_pinned
from sentiment.models.predictor import (
    META_FILE,
)
from sentiment.models.training import quantization_check, save_curve, train
from sentiment.models.transformer import (
    calibration_sample,
    quantize_onnx,
    save_transformer,
)
from sentiment.params import load_params
from sentiment.tracking import log_key_metrics, stage_run


def run_stage(params: dict[str, Any]) -> dict[str, Any]:
    """Train, save the model directory (with its ONNX and int8 copies), curve and metrics."""
    classes = prepared_classes(paths.PREPARE_STATS)
    with stage_run("train_transformer"):
        started = time.perf_counter()
        result = train(
            params,
            paths.SPLITS["train"],
            paths.SPLITS["val"],
            on_epoch=lambda record: mlflow.log_metrics(
                {k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"]
            ),
            classes=classes,
        )
        seconds = time.perf_counter() - started
        meta = {
            "threshold": result["threshold"],
            "n_classes": result["n_classes"],
            **labels_record(classes),
            "target": params["target"],
            "head_groups": result["head_groups"],
            "max_length": params["max_length"],
            "base_model": Path(result["base_model"]).name,
            "best_epoch": result["best_epoch"],
            "val_macro_f1": round(result["history"][result["best_epoch"] - 1]["val_macro_f1"], 5),
            "cpu_numerics": numerics_record(params["threads"]),
        }
        with atomic_path(paths.TRANSFORMER) as tmp:
            save_transformer(result["model"], result["tokenizer"], tmp, meta)
            quant = {"quantized": False}
            if params["quantize"]:
                quantize_onnx(tmp, calibration_sample(result["train_texts"], params["seed"]))
                quant = quantization_check(tmp, result)
                write_json(tmp / META_FILE, json.loads((tmp / META_FILE).read_text()) | quant)
        summary = {
            "best_epoch": result["best_epoch"],
            "epochs_run": len(result["history"]),
            "val_macro_f1": meta["val_macro_f1"],
            "threshold": result["threshold"],
            "train_seconds": round(seconds, 1),
            "cpu": cpu_signature(),  # bytes reproduce on the same signature
            **{k: round(v, 5) if isinstance(v, float) else v for k, v in quant.items()},
        }
        write_json(paths.TRAIN_METRICS, summary)
        save_curve(result["history"], paths.TRAIN_CURVE, paths.TRAIN_CURVE_PNG)
        log_key_metrics(summary)
        mlflow.log_artifact(str(paths.TRAIN_CURVE_PNG), "plots")
        log_model(paths.TRANSFORMER)
    return summary


def main() -> None:
    no_options(__doc__)
    params = load_params("train_transformer")
    run_pinned(params["threads"])  # may start this command again, pinned
    run_stage(params)
    print(stage_line("train_transformer"))


if __name__ == "__main__":
    entry_point(main)
