"""Transformer inference speed on the test split: batch size, length sorting, fp32 vs int8.

    python -m bench.transformer_infer   # after `dvc repro train_transformer`

Prints texts/s at batch 1/16/64 (batch 1 on a 300-text sample), sorted vs unsorted, fp32
vs int8, and the test macro-F1 of fp32 and int8; then texts/s for calls of 8 and 16 random
reviews (what the service's adaptive batches look like) and the cost of one forward pass,
fitted as fixed ms + ms per padded token (``FORWARD_OVERHEAD_TOKENS`` is their ratio).
Last line: one JSON object.
"""

from __future__ import annotations

import copy
import json
import os
import time

import numpy as np
import torch

from stages.common import read_split
from stages.metrics import macro_f1
from stages.predictor import decide, load_predictor
from stages.transformer_model import model_text, probabilities, quantize

MODEL_DIR = "models/transformer"


def forward_cost(model: torch.nn.Module) -> tuple[float, float]:
    """Fixed ms and ms per padded token of one forward pass (least squares over shapes)."""
    shapes = [(1, 4), (1, 32), (4, 16), (8, 32), (16, 32), (32, 16), (64, 16)]
    tokens, ms = [], []
    with torch.inference_mode():
        for rows, length in shapes:
            ids = torch.full((rows, length), 1000)
            mask = torch.ones_like(ids)
            model(input_ids=ids, attention_mask=mask)
            runs = []
            for _ in range(7):
                start = time.perf_counter()
                model(input_ids=ids, attention_mask=mask)
                runs.append(1000 * (time.perf_counter() - start))
            tokens.append(rows * length)
            ms.append(float(np.median(runs)))
    per_token, fixed = np.polyfit(tokens, ms, 1)
    return float(fixed), float(per_token)


def calls_per_s(predictor, texts: list[str], size: int, calls: int = 60) -> float:
    """texts/s for calls of ``size`` random reviews through ``predict_proba``."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(calls):
        predictor.predict_proba([texts[i] for i in rng.integers(0, len(texts), size)])
    return calls * size / (time.perf_counter() - start)


def main() -> None:
    predictor = load_predictor(MODEL_DIR)
    raw_texts, labels = read_split("data/prepared/test.parquet")
    texts = [model_text(t) for t in raw_texts]
    fp32 = predictor.model if not predictor.meta.get("quantized") else None
    if fp32 is None:
        from transformers import AutoModelForSequenceClassification

        fp32 = AutoModelForSequenceClassification.from_pretrained(MODEL_DIR).eval()
    models = {"fp32": fp32, "int8": quantize(copy.deepcopy(fp32))}
    max_length, threshold = predictor.meta["max_length"], predictor.meta["threshold"]
    rows, figures = [], {}
    for precision, model in models.items():
        for batch in (1, 16, 64):
            for sort in (True, False):
                sample = texts[:300] if batch == 1 else texts
                probabilities(model, predictor.tokenizer, sample[:64], max_length, batch)  # warm
                start = time.perf_counter()
                proba = probabilities(model, predictor.tokenizer, sample, max_length, batch, sort)
                rate = len(sample) / (time.perf_counter() - start)
                key = f"{precision}_b{batch}_{'sorted' if sort else 'unsorted'}"
                figures[key] = round(rate, 1)
                rows.append((precision, batch, sort, rate))
                if batch == 64 and sort:
                    figures[f"{precision}_test_macro_f1"] = round(
                        macro_f1(labels, decide(proba, threshold)), 4
                    )
    print(f"{'precision':9s} {'batch':>5s} {'sorted':>6s} {'texts/s':>8s}")
    for precision, batch, sort, rate in rows:
        print(f"{precision:9s} {batch:5d} {sort!s:>6s} {rate:8.1f}")
    figures["int8_f1_change_points"] = round(
        100 * (figures["int8_test_macro_f1"] - figures["fp32_test_macro_f1"]), 2
    )
    figures["sorted_speedup_b64_fp32"] = round(
        figures["fp32_b64_sorted"] / figures["fp32_b64_unsorted"], 2
    )
    print(
        f"test macro-F1 fp32 {figures['fp32_test_macro_f1']} int8 "
        f"{figures['int8_test_macro_f1']} ({figures['int8_f1_change_points']:+} points)"
    )
    served = "int8" if predictor.meta.get("quantized") else "fp32"
    for size in (8, 16):
        rate = round(calls_per_s(predictor, raw_texts, size), 1)
        figures[f"calls_of_{size}_texts_per_s"] = rate
        print(f"calls of {size} random reviews ({served}, as served): {rate} texts/s")
    fixed, per_token = forward_cost(fp32)
    figures |= {
        "forward_fixed_ms": round(fixed, 2),
        "forward_ms_per_token": round(per_token, 4),
        "forward_overhead_tokens": round(fixed / per_token),
    }
    print(
        f"one forward pass (fp32): {fixed:.1f} ms + {per_token:.3f} ms a padded token, "
        f"so a pass costs as much as {fixed / per_token:.0f} tokens"
    )
    print(json.dumps({"bench": "transformer_infer", "cores": os.cpu_count(), **figures}))


if __name__ == "__main__":
    main()
