"""Drift detector calibration: false-positive rate on null windows, power on real shifts.

    python -m bench.drift_calibration [--null 300] [--power 60] [--n 200]

Null windows are drawn (without replacement within a window) from held-out in-distribution
texts (the validation and test splits) and compared with the stage's reference
(``drift/reference``, run ``dvc repro drift`` first). Power is measured on each
out-of-domain set, label shift (50 % negatives), length shift (only reviews of > 12 words),
format change (the READ MORE artifact left in) and a new phrase in 20 % of texts. Champion
scores are computed once per text and reused; seconds per window are measured separately,
scoring included. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from stages.common import load_params, read_split
from stages.drift import CHAMPION_DIR, REFERENCE_DIR, DriftDetector, Reference
from stages.predictor import load_predictor

PHRASE = "Delivered by Ekart Logistics, check the seal before accepting the parcel."


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--null", type=int, default=300)
    parser.add_argument("--power", type=int, default=60)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    params = load_params("drift")
    predictor = load_predictor(CHAMPION_DIR)
    detector = DriftDetector(Reference.load(REFERENCE_DIR), predictor, params)
    rng = np.random.default_rng(2026)

    val_texts, val_y = read_split("data/prepared/val.parquet")
    test_texts, test_y = read_split("data/prepared/test.parquet")
    held_texts, held_y = val_texts + test_texts, np.array(val_y + test_y)
    sets = {"held_out": held_texts}
    for name in ("amazon", "imdb", "yelp"):
        sets[f"ood_{name}"] = read_split(f"data/prepared/ood/{name}.parquet")[0]
    sets["format_change"] = [f"{t}READ MORE" for t in held_texts]
    long_idx = np.array([i for i, t in enumerate(held_texts) if len(t.split()) > 12])
    sets["phrase"] = [f"{t} {PHRASE}" for t in held_texts]
    scores = {name: predictor.predict_proba(texts)[:, -1] for name, texts in sets.items()}

    def run(name: str, idx: np.ndarray, seed: int, mix: np.ndarray | None = None) -> bool:
        texts = [sets[name][i] for i in idx]
        window_scores = scores[name][idx]
        if mix is not None:  # new phrase in a share of texts
            texts = [
                sets["phrase"][i] if m else sets["held_out"][i]
                for i, m in zip(idx, mix, strict=True)
            ]
            window_scores = np.where(mix, scores["phrase"][idx], scores["held_out"][idx])
        return detector.test_window(texts, window_scores, seed=seed)["drift_detected"]

    n = args.n
    start = time.perf_counter()
    null = [
        run("held_out", rng.choice(len(held_texts), n, replace=False), s) for s in range(args.null)
    ]
    null_seconds = (time.perf_counter() - start) / args.null
    fpr = float(np.mean(null))
    se = float(np.sqrt(fpr * (1 - fpr) / args.null)) or float(np.sqrt(0.05 * 0.95 / args.null))

    negatives, positives = np.flatnonzero(held_y == 0), np.flatnonzero(held_y == 1)
    scenarios = {
        **{
            f"ood_{k}": lambda s, k=k: run(
                f"ood_{k}", rng.choice(len(sets[f"ood_{k}"]), n, replace=False), s
            )
            for k in ("amazon", "imdb", "yelp")
        },
        "label_shift_50pct_negative": lambda s: run(
            "held_out",
            np.r_[
                rng.choice(negatives, n // 2, replace=False),
                rng.choice(positives, n - n // 2, replace=False),
            ],
            s,
        ),
        "length_over_12_words": lambda s: run(
            "held_out", rng.choice(long_idx, n, replace=False), s
        ),
        "format_read_more": lambda s: run(
            "format_change", rng.choice(len(held_texts), n, replace=False), s
        ),
        "new_phrase_20pct": lambda s: run(
            "phrase", rng.choice(len(held_texts), n, replace=False), s, mix=rng.random(n) < 0.2
        ),
    }
    power = {
        name: float(np.mean([scenario(1000 + s) for s in range(args.power)]))
        for name, scenario in scenarios.items()
    }

    window = [held_texts[i] for i in rng.choice(len(held_texts), n, replace=False)]
    start = time.perf_counter()
    for s in range(5):
        detector.test_window(window, seed=s)
    seconds_with_scoring = (time.perf_counter() - start) / 5

    print(
        f"false-positive rate: {fpr:.3f} ± {se:.3f} (SE) over {args.null} null windows of "
        f"n={n}; target <= 0.05 + 3 SE = {0.05 + 3 * se:.3f}"
    )
    for name, value in power.items():
        print(f"power {name:28s} {value:.3f} ({args.power} windows)")
    print(
        f"seconds per window: {null_seconds:.3f} (scores cached), "
        f"{seconds_with_scoring:.3f} (champion scoring included)"
    )
    print(
        json.dumps(
            {
                "bench": "drift_calibration",
                "n": n,
                "null_windows": args.null,
                "false_positive_rate": round(fpr, 4),
                "fpr_se": round(se, 4),
                "power": power,
                "power_windows": args.power,
                "seconds_per_window_cached_scores": round(null_seconds, 3),
                "seconds_per_window_with_scoring": round(seconds_with_scoring, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
