"""Drift detector calibration on realistic nulls: false-positive rate and power, n = 200, 500.

    python -m bench.drift_calibration [--null 200] [--power 60] [--sizes 200 500]

The stage's reference is rebuilt exactly as ``dvc repro drift`` builds it (same rows, seed
and params): a row-level sample of every raw review at its natural multiplicity. Null
windows are drawn without replacement from the held-out rows (``drift.holdout_rows``,
never used by the reference or its fit), repeats included, as traffic arrives. Power is
measured on each out-of-domain set and on shifts of those held-out rows drawn the same way:
label shift (50 % negatives), length shift (only reviews of > 12 words), format change (the
READ MORE artifact left in), a new phrase in 20 % of texts, and antonyms (held-out reviews
with a sentiment word, each such word swapped for its antonym: the vocabulary is kept, the
meaning is not). For each shift the family's power is printed with each test's own (how
often that test fired), so the embedding test's share shows. Champion scores and
embeddings are computed once per text and reused; seconds per window are measured
separately, scoring included. Targets: false-positive rate <= 0.05 + 2 SE, power >= 0.9.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np

from sentiment import paths
from sentiment.data.dataset import load_dataset
from sentiment.evaluation.behaviour import SENTIMENT_WORD, swap_antonyms
from sentiment.fileio import read_split
from sentiment.models.predictor import load_predictor
from sentiment.monitoring.detector import DriftDetector
from sentiment.monitoring.reference import build_reference, raw_traffic
from sentiment.params import load_params

PHRASE = "Delivered by Ekart Logistics, check the seal before accepting the parcel."


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--null", type=int, default=200)
    parser.add_argument("--power", type=int, default=60)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 500])
    args = parser.parse_args()
    params = load_params("drift")
    predictor = load_predictor(paths.CHAMPION)
    traffic = raw_traffic(load_dataset())
    rows = traffic["text"].tolist()
    reference, held_idx = build_reference(rows, predictor, params, params["holdout_rows"])
    detector = DriftDetector(reference, predictor, params)
    held = [rows[i] for i in held_idx]
    held_y = traffic["label"].iloc[held_idx].to_numpy()
    print(f"held-out rows: {len(held)} ({len(set(held))} distinct texts)")

    sets = {"held_out": held, **{n: read_split(p)[0] for n, p in paths.ood_sets().items()}}
    sets["format_change"] = [f"{t}READ MORE" for t in held]
    sets["phrase"] = [f"{t} {PHRASE}" for t in held]
    sets["antonyms"] = [swap_antonyms(t) for t in held if SENTIMENT_WORD.search(t)]
    scores = {name: predictor.predict_proba(texts)[:, -1] for name, texts in sets.items()}
    semantic = detector.reference_side.semantic is not None
    vectors = (
        {name: predictor.embeddings(texts) for name, texts in sets.items()} if semantic else {}
    )
    print(f"embedding test: {'on' if semantic else 'off (not a transformer champion)'}")
    rng = np.random.default_rng(2026)

    def run(name: str, idx: np.ndarray, seed: int, mix: np.ndarray | None = None) -> dict:
        """Which tests fired on one window (``family``: any, after Holm)."""
        texts, window_scores = [sets[name][i] for i in idx], scores[name][idx]
        window_vectors = vectors[name][idx] if semantic else None
        if mix is not None:  # the new phrase in a share of the texts
            texts = [sets["phrase"][i] if m else held[i] for i, m in zip(idx, mix, strict=True)]
            window_scores = np.where(mix, scores["phrase"][idx], scores["held_out"][idx])
            if semantic:
                window_vectors = np.where(
                    mix[:, None], vectors["phrase"][idx], vectors["held_out"][idx]
                )
        result = detector.test_window(texts, window_scores, seed=seed, embeddings=window_vectors)
        fired = {test: r["drift"] for test, r in result["tests"].items()}
        return {"family": result["drift_detected"], **fired}

    negatives, positives = np.flatnonzero(held_y == 0), np.flatnonzero(held_y == 1)
    long_rows = np.array([i for i, t in enumerate(held) if len(t.split()) > 12])

    def scenarios(n: int) -> dict[str, Callable[[int], dict]]:
        def draw(pool: int | np.ndarray) -> np.ndarray:
            return rng.choice(pool, n, replace=False)

        found: dict[str, Callable[[int], dict]] = {
            name: lambda s, name=name: run(name, draw(len(sets[name])), s)
            for name in paths.ood_sets()
        }
        if len(negatives) >= n // 2:
            found["label_shift_50pct_negative"] = lambda s: run(
                "held_out",
                np.r_[
                    rng.choice(negatives, n // 2, False), rng.choice(positives, n - n // 2, False)
                ],
                s,
            )
        if len(long_rows) >= n:
            found["length_over_12_words"] = lambda s: run("held_out", draw(long_rows), s)
        found["format_read_more"] = lambda s: run("format_change", draw(len(held)), s)
        found["new_phrase_20pct"] = lambda s: run(
            "phrase", draw(len(held)), s, mix=rng.random(n) < 0.2
        )
        if len(sets["antonyms"]) >= n:
            found["antonyms_swapped"] = lambda s: run("antonyms", draw(len(sets["antonyms"])), s)
        return found

    results = {}
    for n in args.sizes:
        start = time.perf_counter()
        null = [
            run("held_out", rng.choice(len(held), n, replace=False), s) for s in range(args.null)
        ]
        seconds = (time.perf_counter() - start) / args.null
        fpr = float(np.mean([w["family"] for w in null]))
        null_by_test = {test: float(np.mean([w[test] for w in null])) for test in null[0]}
        se = float(np.sqrt(max(fpr, 0.05) * (1 - max(fpr, 0.05)) / args.null))
        fired = {
            name: [scenario(1000 + s) for s in range(args.power)]
            for name, scenario in scenarios(n).items()
        }
        by_test = {
            name: {test: float(np.mean([w[test] for w in windows])) for test in windows[0]}
            for name, windows in fired.items()
        }
        power = {name: tests["family"] for name, tests in by_test.items()}
        results[n] = {
            "fpr": round(fpr, 4),
            "se": round(se, 4),
            "power": power,
            "fpr_by_test": null_by_test,
            "power_by_test": by_test,
            "seconds": seconds,
        }
        met = fpr <= 0.05 + 2 * se and all(p >= 0.9 for p in power.values())
        print(
            f"n={n}: false-positive rate {fpr:.3f} ± {se:.3f} (SE) over {args.null} null "
            f"windows; target <= 0.05 + 2 SE = {0.05 + 2 * se:.3f}; "
            f"{seconds:.3f} s/window (scores cached); targets {'met' if met else 'NOT met'}"
        )
        tests = list(null_by_test)
        print(f"  {'false positives':28s} " + " ".join(f"{null_by_test[t]:13.3f}" for t in tests))
        print(
            f"  {'power (' + str(args.power) + ' windows)':28s} "
            + " ".join(f"{t:>13s}" for t in tests)
        )
        for name, values in by_test.items():
            print(f"  {name:28s} " + " ".join(f"{values[t]:13.3f}" for t in tests))

    window = [held[i] for i in rng.choice(len(held), args.sizes[0], replace=False)]
    start = time.perf_counter()
    for s in range(5):
        detector.test_window(window, seed=s)
    with_scoring = (time.perf_counter() - start) / 5
    print(f"seconds per window of n={args.sizes[0]}, champion scoring included: {with_scoring:.3f}")
    print(
        json.dumps(
            {
                "bench": "drift_calibration",
                "null_windows": args.null,
                "power_windows": args.power,
                "by_n": {
                    str(n): {k: v for k, v in r.items() if k != "seconds"}
                    for n, r in results.items()
                },
                "seconds_per_window_with_scoring": round(with_scoring, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
