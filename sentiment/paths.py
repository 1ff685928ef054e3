"""Every path the pipeline reads or writes, named once (``dvc.yaml`` declares the same ones;
``tests/test_paths.py`` checks that each stage uses exactly its declared deps and outs).

Three roots: ``data/`` (raw and derived data), ``models/`` (model directories and the drift
reference) and ``reports/`` (metrics, plots and decisions, one folder per stage). Paths are
relative to the project root, where DVC runs the stages.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = Path("params.yaml")

# data/: raw (DVC-tracked, from the remote; data/raw/<dataset>/ holds each declared dataset's
# files, sentiment/data/dataset.py reads them) and prepared
RAW = Path("data/raw")
PREPARED = Path("data/prepared")
SPLITS = {name: PREPARED / f"{name}.parquet" for name in ("train", "val", "test")}
QUARANTINE = PREPARED / "quarantine.parquet"
OOD_DIR = PREPARED / "ood"
PREPARE_STATS = PREPARED / "stats.json"
FEATURES = Path("data/features")

# models/
CLASSICAL = Path("models/classical")
TRANSFORMER = Path("models/transformer")
CHAMPION = Path("models/champion")
DRIFT_REFERENCE = Path("models/drift-reference")
PRODUCTION_DIR = Path("models/production")  # a downloaded production model (not a DVC output)

# reports/: one folder per stage
REPORTS = Path("reports")
FEATURIZE_SUMMARY = REPORTS / "featurize" / "summary.json"
TUNE_BEST = REPORTS / "tune" / "best.json"
TUNE_PLOTS = REPORTS / "tune" / "plots"
TUNE_LIVE = REPORTS / "tune" / "live"  # DVCLive: metrics.json, plots/metrics/trial/*.tsv
TRAIN_METRICS = REPORTS / "train_transformer" / "metrics.json"
TRAIN_CURVE = REPORTS / "train_transformer" / "curve.json"
TRAIN_CURVE_PNG = REPORTS / "train_transformer" / "curve.png"
EVAL_HEADLINE = REPORTS / "evaluate" / "headline.json"
EVAL_METRICS = REPORTS / "evaluate" / "metrics.json"
EVAL_PLOTS = {  # plot data per kind, and the PNGs
    kind: REPORTS / "evaluate" / "plots" / kind
    for kind in ("png", "roc", "pr", "pr_negative", "confusion")
}
GATE_DECISION = REPORTS / "gate" / "decision.json"
GATE_VERDICT = REPORTS / "gate" / "verdict.json"
MODEL_CARD = REPORTS / "gate" / "model_card.md"  # the champion's, and as JSON beside it
MODEL_CARD_JSON = REPORTS / "gate" / "model_card.json"
DRIFT_REPORT_MD = REPORTS / "drift" / "report.md"
DRIFT_PLOTS = REPORTS / "drift" / "plots"
DRIFT_VERDICTS = REPORTS / "drift" / "verdicts.json"
DRIFT_REPORT = REPORTS / "drift" / "report.json"
DRIFT_REFERENCE_RULES = REPORTS / "drift" / "reference.rules.yml"  # Prometheus recording rules
DRIFT_CURRENT = Path("reports/drift-current/report.json")  # drift on an inference log (local)


def ood_sets(ood_dir: Path = OOD_DIR) -> dict[str, Path]:
    """The out-of-domain sets prepare wrote (those its dataset declares), ``ood_<name>``."""
    return {f"ood_{path.stem}": path for path in sorted(ood_dir.glob("*.parquet"))}


# Paths of commands, not of the pipeline: DVC neither tracks nor declares them.
NOT_DVC_OUTPUTS = (PRODUCTION_DIR, DRIFT_CURRENT)
