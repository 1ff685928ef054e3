"""Transformer inference speed on the test split: batch size, length sorting, fp32 vs int8.

    python -m bench.transformer_infer   # after `dvc repro train_transformer`

Prints texts/s at batch 1/16/64 (batch 1 on a 300-text sample), sorted vs unsorted, fp32
vs int8, and the test macro-F1 of fp32 and int8. Last line: one JSON object.
"""

from __future__ import annotations

import copy
import json
import os
import time

from stages.common import read_split
from stages.metrics import macro_f1
from stages.predictor import decide, load_predictor
from stages.transformer_model import model_text, probabilities, quantize

MODEL_DIR = "models/transformer"


def main() -> None:
    predictor = load_predictor(MODEL_DIR)
    texts, labels = read_split("data/prepared/test.parquet")
    texts = [model_text(t) for t in texts]
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
    print(json.dumps({"bench": "transformer_infer", "cores": os.cpu_count(), **figures}))


if __name__ == "__main__":
    main()
