"""tune: Optuna search over classical classifiers on the TF-IDF features, tracked in MLflow.

Objective: mean stratified k-fold macro-F1 on the train split (the test split is never
read). The classifier learns the labels, or with ``tune.target: rating`` the 1-5 star
ratings, whose probabilities are summed into the labels they make up. The study is resumed
by a re-run with the same inputs, and extra workers can join it from other processes or
machines: ``python -m stages.tune --worker`` (``sentiment.models.search`` says where it
lives).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import mlflow
from sqlalchemy.engine import make_url

from sentiment import paths
from sentiment.cli import entry_point
from sentiment.data.labels import labels_record, prepared_classes
from sentiment.evaluation.metrics import macro_f1
from sentiment.fileio import atomic_path, write_json
from sentiment.headlines import stage_line
from sentiment.models.live import write_trial_record
from sentiment.models.onnx_backend import collapse
from sentiment.models.predictor import best_threshold, label_ids, save_classical
from sentiment.models.search import (
    Inputs,
    refit_best,
    save_plots,
    search,
    storage_url,
    study_name,
    study_record,
)
from sentiment.params import load_params
from sentiment.tracking import code_hash, dvc_md5, log_key_metrics, stage_run

INPUTS = Inputs(features=paths.FEATURES, train_split=paths.SPLITS["train"])


def run_stage(params: dict[str, Any]) -> dict[str, Any]:
    """Search, refit the best model, choose its threshold on val, write every output."""
    storage = storage_url(params)
    with stage_run("tune") as run:
        name = study_name(params, dvc_md5(paths.FEATURES), code_hash("tune"))
        started = time.perf_counter()
        study = search(params, storage, name, run.info.run_id, INPUTS, live_dir=paths.TUNE_LIVE)
        seconds = time.perf_counter() - started
        write_trial_record(study, paths.TUNE_LIVE)
        pipeline, groups = refit_best(study, params, INPUTS)
        x_val, y_val = INPUTS.matrix("val")
        proba = collapse(pipeline.named_steps["classifier"].predict_proba(x_val), groups)
        threshold = best_threshold(y_val.tolist(), proba[:, 1]) if proba.shape[1] == 2 else None
        best = study_record(study, params, seconds) | {
            "val_macro_f1": round(macro_f1(y_val, label_ids(proba, threshold)), 5),
            "threshold": threshold,
        }
        meta = {
            "threshold": threshold,
            "n_classes": int(proba.shape[1]),
            **labels_record(prepared_classes(paths.PREPARE_STATS)),
            "target": params["target"],
            "head_groups": groups,
            "best_params": study.best_params,
            "cv_macro_f1": best["cv_macro_f1"],
        }
        with atomic_path(paths.CLASSICAL) as tmp:
            save_classical(pipeline, tmp, meta)
        write_json(paths.TUNE_BEST, best)
        plots = save_plots(study, paths.TUNE_PLOTS)

        mlflow.set_tags(
            {
                "optuna.storage": make_url(storage).render_as_string(hide_password=True),
                "optuna.study": name,
            }
        )
        mlflow.log_params({f"best.{k}": v for k, v in study.best_params.items()})
        log_key_metrics(
            {
                "best_cv_macro_f1": best["cv_macro_f1"],
                "val_macro_f1": best["val_macro_f1"],
                "search_seconds": seconds,
            }
        )
        for path in plots:
            mlflow.log_artifact(str(path), "plots")
        mlflow.log_artifacts(str(paths.CLASSICAL), "model")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--worker",
        action="store_true",
        help="only add trials to the shared study (no refit, no outputs)",
    )
    parser.add_argument("--n-trials", type=int, help="the study's trial total (worker mode)")
    args = parser.parse_args()
    params = load_params("tune")
    if args.worker:
        storage = storage_url(params)
        name = study_name(params, dvc_md5(paths.FEATURES), code_hash("tune"))
        with stage_run("tune", run_name="tune-worker") as run:
            study = search(params, storage, name, run.info.run_id, INPUTS, args.n_trials)
        print(f"tune worker: study {name} now holds {len(study.trials)} trials")
        return
    best = run_stage(params)
    if best["timed_out"]:
        print(
            f"tune: WARNING tune.timeout ({params['timeout']} s) stopped the search after "
            f"{best['trials']['complete'] + best['trials']['pruned']} of "
            f"{params['n_trials']} trials (recorded as timed_out in {paths.TUNE_BEST})"
        )
    print(stage_line("tune"))


if __name__ == "__main__":
    entry_point(main)
