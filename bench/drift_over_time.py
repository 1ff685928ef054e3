"""Drift verdicts over time: reference from the earlier quarters, one window per later quarter.

    python -m bench.drift_over_time [--reference-share 0.5]

Reviews carry a ``Month`` (e.g. ``Feb 2021``; rows without one are left out). The dated rows,
at their natural multiplicity, are ordered by month; the quarters holding the first
``--reference-share`` of them build the reference exactly as the stage does (with
``drift.holdout_rows`` scaled down to a fifth of those rows, whose null windows give the
base rate on the reference period itself). Every later quarter is one window, tested with
the champion. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from sentiment import paths
from sentiment.data.dataset import load_dataset
from sentiment.models.predictor import load_predictor
from sentiment.monitoring.detector import DriftDetector
from sentiment.monitoring.reference import build_reference, raw_traffic
from sentiment.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference-share", type=float, default=0.5)
    parser.add_argument("--null", type=int, default=50)
    args = parser.parse_args()
    params = load_params("drift")
    predictor = load_predictor(paths.CHAMPION)
    traffic = raw_traffic(load_dataset())
    traffic["when"] = pd.to_datetime(traffic["month"], format="%b %Y", errors="coerce")
    dated = traffic.dropna(subset=["when"]).sort_values("when", kind="stable")
    dated["quarter"] = dated["when"].dt.to_period("Q").astype(str)
    counts = dated["quarter"].value_counts().sort_index()
    cumulative = counts.cumsum() / counts.sum()
    earlier = cumulative.index[cumulative <= args.reference_share].tolist()
    later = [q for q in counts.index if q not in earlier]
    before = dated[dated["quarter"].isin(earlier)]["text"].tolist()
    holdout = len(before) // 5
    reference, held_idx = build_reference(before, predictor, params, holdout)
    detector = DriftDetector(reference, predictor, params)
    print(
        f"reference: {earlier[0]}..{earlier[-1]} ({len(before)} reviews, {holdout} held out); "
        f"{len(dated)} of {len(traffic)} reviews are dated"
    )

    held = [before[i] for i in held_idx]
    rng = np.random.default_rng(7)
    n = min(params["window_size"], len(held) // 2)
    null = [
        detector.test_window([held[i] for i in rng.choice(len(held), n, replace=False)], seed=s)
        for s in range(args.null)
    ]
    base_rate = float(np.mean([r["drift_detected"] for r in null]))
    print(f"base rate on the reference period: {base_rate:.3f} of {args.null} windows of n={n}")

    verdicts = {}
    print(f"{'quarter':8s} {'n':>5s}  status             tests that fire (effect)")
    for quarter in later:
        texts = dated[dated["quarter"] == quarter]["text"].tolist()
        result = detector.test_window(texts)
        fired = {
            name: round(test["effect"], 3)
            for name, test in result.get("tests", {}).items()
            if test["drift"]
        }
        verdicts[quarter] = {"n": len(texts), "status": result["status"], "fired": fired}
        print(f"{quarter:8s} {len(texts):5d}  {result['status']:18s} {fired or ''}")
    print(
        json.dumps(
            {
                "bench": "drift_over_time",
                "reference_quarters": [earlier[0], earlier[-1]],
                "base_rate": base_rate,
                "verdicts": verdicts,
            }
        )
    )


if __name__ == "__main__":
    main()
