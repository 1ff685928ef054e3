"""Transformer inference speed on the test split: torch vs ONNX Runtime fp32 vs ONNX int8.

    python -m bench.transformer_infer   # after `dvc repro train_transformer`

The same fine-tuned model (``models/transformer``) three ways, with the same cleaning and
length batching: eager torch on the fp32 weights, ONNX Runtime on ``model.onnx`` and on the
int8 copy ``model.int8.onnx`` (written when ``train_transformer.quantize`` is on; made here
otherwise). Prints texts/s at batch 1 (a 300-text sample), 16 and 64, the test macro-F1 of
each, the largest probability difference from torch, and texts/s for calls of 8 and 16 random
reviews (what the service's adaptive batches look like). Last line: one JSON object.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from stages.common import read_split
from stages.metrics import macro_f1
from stages.onnx_model import ONNX_INT8_FILE, OnnxPredictor
from stages.predictor import decide, read_meta
from stages.text import model_text
from stages.transformer_model import TransformerPredictor, quantize_onnx

MODEL_DIR = Path("models/transformer")


def with_int8(model_dir: Path) -> Path:
    """``model_dir`` if it has the int8 copy, else a temporary copy with one made."""
    if (model_dir / ONNX_INT8_FILE).is_file():
        return model_dir
    copy = Path(tempfile.mkdtemp(prefix="transformer-infer-")) / "model"
    shutil.copytree(model_dir, copy)
    quantize_onnx(copy)
    return copy


def texts_per_s(score, texts: list[str], batch: int) -> tuple[float, np.ndarray]:
    """texts/s scoring ``texts`` in calls of ``batch``, and the probabilities."""
    score(texts[:batch])  # warm
    start = time.perf_counter()
    proba = np.vstack([score(texts[i : i + batch]) for i in range(0, len(texts), batch)])
    return len(texts) / (time.perf_counter() - start), proba


def calls_per_s(score, texts: list[str], size: int, calls: int = 60) -> float:
    """texts/s for calls of ``size`` random reviews."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(calls):
        score([texts[i] for i in rng.integers(0, len(texts), size)])
    return calls * size / (time.perf_counter() - start)


def main() -> None:
    model_dir = with_int8(MODEL_DIR)
    meta = read_meta(model_dir)
    raw_texts, labels = read_split("data/prepared/test.parquet")
    texts = [model_text(t) for t in raw_texts]
    torch_model = TransformerPredictor(model_dir, meta)
    backends = {
        "torch": lambda batch: torch_model.predict_proba(batch),
        "onnx_fp32": OnnxPredictor(model_dir, meta | {"quantized": False}).proba_of_model_texts,
        "onnx_int8": OnnxPredictor(model_dir, meta | {"quantized": True}).proba_of_model_texts,
    }
    # torch's predictor cleans raw text itself; the ONNX ones get the cleaned text directly.
    inputs = {"torch": raw_texts, "onnx_fp32": texts, "onnx_int8": texts}
    figures: dict[str, float] = {}
    reference = None
    print(f"{'backend':10s} {'b1':>7s} {'b16':>7s} {'b64':>7s} {'test F1':>8s} {'max |dp|':>9s}")
    for name, score in backends.items():
        rates = {}
        for batch in (1, 16, 64):
            sample = inputs[name][:300] if batch == 1 else inputs[name]
            rates[batch], proba = texts_per_s(score, sample, batch)
            figures[f"{name}_b{batch}_texts_per_s"] = round(rates[batch], 1)
        f1 = macro_f1(labels, decide(proba, meta["threshold"]))
        reference = proba if reference is None else reference
        diff = float(np.abs(proba - reference).max())
        figures |= {f"{name}_test_macro_f1": round(f1, 4), f"{name}_max_abs_diff": diff}
        for size in (8, 16):
            figures[f"{name}_calls_of_{size}_texts_per_s"] = round(
                calls_per_s(score, inputs[name], size), 1
            )
        print(f"{name:10s} {rates[1]:7.1f} {rates[16]:7.1f} {rates[64]:7.1f} {f1:8.4f} {diff:9.2e}")
    for size in (8, 16):
        row = "  ".join(f"{n} {figures[f'{n}_calls_of_{size}_texts_per_s']}" for n in backends)
        print(f"calls of {size} random reviews, texts/s: {row}")
    print(json.dumps({"bench": "transformer_infer", "cores": os.cpu_count(), **figures}))


if __name__ == "__main__":
    main()
