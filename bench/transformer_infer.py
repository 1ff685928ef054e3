"""Transformer inference on the test split: torch vs ONNX Runtime fp32 vs the int8 copies.

    python -m bench.transformer_infer   # after `dvc repro train_transformer`

The same fine-tuned model (``models/transformer``) four ways, with the same cleaning and
length batching: eager torch on the fp32 weights, ONNX Runtime on ``model.onnx``, on the
static int8 copy ``model.int8.onnx`` that ``train_transformer`` makes (made here when it was
not kept), and on ONNX Runtime's dynamic int8 (the former default, made here for comparison:
its activation scales come from each batch). Prints texts/s at batch 1 (a 300-text sample),
16 and 64, validation and test macro-F1, the lowest behavioural pass rate, the largest
probability difference from torch, and the batch-invariance error (``batch_invariance_error``
on 300 test texts: alone, shuffled, in random calls). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sentiment.data.text import model_text
from sentiment.evaluation.behaviour import run_suite
from sentiment.evaluation.metrics import macro_f1
from sentiment.fileio import read_split
from sentiment.models.onnx_backend import ONNX_FILE, ONNX_INT8_FILE, OnnxPredictor
from sentiment.models.predictor import batch_invariance_error, label_ids, read_meta
from sentiment.models.transformer import TransformerPredictor, calibration_sample, quantize_onnx
from sentiment.params import load_params

MODEL_DIR = Path("models/transformer")
Score = Callable[[list[str]], np.ndarray]


def int8_copies(model_dir: Path, train_texts: list[str]) -> tuple[Path, Path]:
    """Model directories with the static int8 copy (``model_dir`` itself when it kept one)
    and with a dynamic one, both as ``model.int8.onnx``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    scratch = Path(tempfile.mkdtemp(prefix="transformer-infer-"))
    static = model_dir
    if not (model_dir / ONNX_INT8_FILE).is_file():
        static = scratch / "static"
        shutil.copytree(model_dir, static)
        seed = load_params("train_transformer")["seed"]
        quantize_onnx(static, calibration_sample(train_texts, seed))
    dynamic = scratch / "dynamic"
    shutil.copytree(model_dir, dynamic, ignore=shutil.ignore_patterns(ONNX_INT8_FILE))
    logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process the graph
    quantize_dynamic(
        dynamic / ONNX_FILE, dynamic / ONNX_INT8_FILE, per_channel=True, weight_type=QuantType.QInt8
    )
    return static, dynamic


def texts_per_s(score: Score, texts: list[str], batch: int) -> tuple[float, np.ndarray]:
    """texts/s scoring ``texts`` in calls of ``batch``, and the probabilities."""
    score(texts[:batch])  # warm
    start = time.perf_counter()
    proba = np.vstack([score(texts[i : i + batch]) for i in range(0, len(texts), batch)])
    return len(texts) / (time.perf_counter() - start), proba


def main() -> None:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    meta = read_meta(MODEL_DIR)
    train_texts = [model_text(t) for t in read_split("data/prepared/train.parquet")[0]]
    static, dynamic = int8_copies(MODEL_DIR, train_texts)
    splits = {name: read_split(f"data/prepared/{name}.parquet") for name in ("val", "test")}
    torch_model = TransformerPredictor(MODEL_DIR, meta)
    # Each takes raw texts (the ONNX ones clean them as the service does).
    backends: dict[str, Score] = {
        "torch": torch_model.predict_proba,
        "onnx_fp32": OnnxPredictor(MODEL_DIR, meta | {"quantized": False}).predict_proba,
        "onnx_int8_static": OnnxPredictor(static, meta | {"quantized": True}).predict_proba,
        "onnx_int8_dynamic": OnnxPredictor(dynamic, meta | {"quantized": True}).predict_proba,
    }
    figures: dict[str, float] = {}
    reference = None
    print(
        f"{'backend':18s} {'b1':>6s} {'b16':>6s} {'b64':>6s} {'val F1':>7s} {'test F1':>7s} "
        f"{'behav.':>6s} {'max |dp|':>9s} {'invariance':>10s}"
    )
    for name, score in backends.items():
        rates = {}
        test_texts, test_labels = splits["test"]
        for batch in (1, 16, 64):
            sample = test_texts[:300] if batch == 1 else test_texts
            rates[batch], proba = texts_per_s(score, sample, batch)
            figures[f"{name}_b{batch}_texts_per_s"] = round(rates[batch], 1)
        test_f1 = macro_f1(test_labels, label_ids(proba, meta["threshold"]))
        val_f1 = macro_f1(splits["val"][1], label_ids(score(splits["val"][0]), meta["threshold"]))
        rates_of = run_suite(lambda batch, s=score: label_ids(s(batch), meta["threshold"]))
        behaviour = min(rates_of.values())
        reference = proba if reference is None else reference
        diff = float(np.abs(proba - reference).max())
        invariance = batch_invariance_error(score, test_texts[:300])
        figures |= {
            f"{name}_val_macro_f1": round(val_f1, 4),
            f"{name}_test_macro_f1": round(test_f1, 4),
            f"{name}_lowest_behaviour_pass_rate": round(behaviour, 4),
            f"{name}_max_abs_diff": diff,
            f"{name}_batch_invariance": invariance,
        }
        print(
            f"{name:18s} {rates[1]:6.0f} {rates[16]:6.0f} {rates[64]:6.0f} {val_f1:7.4f} "
            f"{test_f1:7.4f} {behaviour:6.3f} {diff:9.2e} {invariance:10.2e}"
        )
    print(json.dumps({"bench": "transformer_infer", "cores": os.cpu_count(), **figures}))


if __name__ == "__main__":
    main()
