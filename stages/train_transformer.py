"""train_transformer: fine-tune a local Hugging Face encoder (MiniLM by default) offline.

Dynamic padding over length-grouped batches, AdamW with linear warmup and weight decay,
gradient clipping, early stopping on validation macro-F1 (best epoch kept), decision
threshold chosen on validation. The head learns the labels, or with ``target: rating`` the
1-5 star ratings, whose probabilities are summed into the labels they make up. Seeded, with
deterministic algorithms and every CPU numeric path pinned (``stages/numerics.py``: the
command starts itself again when the caller's environment differs), so its bytes are the
same on any x86-64 machine; runs on CUDA when present.
The model directory also holds an ONNX export, and with ``quantize`` a static int8 copy of
it, kept only when it costs less than 0.5 validation macro-F1 points, no behavioural pass
rate drops more than 0.05 and no score moves more than ``INVARIANCE_BOUND`` with its
batch-mates (``meta.json`` says which, and why).
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
import transformers
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    get_linear_schedule_with_warmup,
    set_seed,
)
from transformers.trainer_pt_utils import LengthGroupedSampler

from stages.base_models import base_model_dir
from stages.behaviour import run_suite
from stages.common import (
    LABEL_NAMES,
    atomic_path,
    entry_point,
    load_params,
    read_split,
    write_json,
)
from stages.metrics import macro_f1
from stages.mlflow_model import log_model
from stages.numerics import numerics_record, run_pinned
from stages.onnx_model import ONNX_INT8_FILE, OnnxPredictor, collapse
from stages.predictor import (
    INVARIANCE_BOUND,
    META_FILE,
    batch_invariance_error,
    best_threshold,
    check_target,
    decide,
    predict,
    rating_groups,
)
from stages.text import model_text
from stages.tracking import log_numeric_metrics, stage_run
from stages.transformer_model import (
    calibration_sample,
    pick_device,
    probabilities,
    quantize_onnx,
    save_transformer,
)

MODEL_DIR = Path("models/transformer")
OUT_DIR = Path("train_transformer")
MAX_QUANTIZATION_LOSS = 0.005  # int8 is used only when it costs < 0.5 macro-F1 points
MAX_BEHAVIOUR_DROP = 0.05  # ... and no behavioural pass rate drops more (gate's default)


def subsample(labels: list[int], n: int | None, seed: int) -> list[int]:
    """Row indices of a stratified, seeded subset for quick runs (all rows when n is None or
    too large)."""
    rows = list(range(len(labels)))
    if n is None or n >= len(rows):
        return rows
    return sorted(train_test_split(rows, train_size=n, stratify=labels, random_state=seed)[0])


def training_targets(
    params: dict[str, Any], split: Path, rows: list[int], labels: list[int]
) -> tuple[list[int], int, list[list[int]] | None]:
    """What the head learns: the labels (``target: label``) or the star ratings, 5 classes
    (``target: rating``) that ``rating_groups`` sums back into labels. Returns the targets
    of ``rows``, the head's size and the groups (None for labels)."""
    check_target("train_transformer.target", params["target"])
    if params["target"] == "label":
        return [labels[i] for i in rows], max(labels) + 1, None
    all_ratings = read_split(split, "rating")[1]
    ratings = [all_ratings[i] for i in rows]
    groups = rating_groups(ratings, [labels[i] for i in rows])
    return [r - 1 for r in ratings], 5, groups


def optimizer_for(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on weights only (not biases or LayerNorm)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr)


def train(
    params: dict[str, Any],
    train_split: Path,
    val_split: Path,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune; return the best model, tokenizer, threshold and per-epoch history.

    ``on_epoch`` receives each epoch's record (epoch, train_loss, val_macro_f1).
    """
    set_seed(params["seed"])
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = pick_device()
    torch.set_num_threads(params["threads"])  # reductions split by thread: fix it for equal bytes
    all_texts, all_labels = read_split(train_split)
    rows = subsample(all_labels, params["max_train_samples"], params["seed"])
    targets, head_size, groups = training_targets(params, train_split, rows, all_labels)
    texts = [model_text(all_texts[i]) for i in rows]
    val_texts, val_labels = read_split(val_split)
    val_texts = [model_text(t) for t in val_texts]
    n_classes = max(max(all_labels), max(val_labels)) + 1
    names = LABEL_NAMES["binary" if n_classes == 2 else "ternary"]
    if groups is not None:
        names = [f"{stars} stars" for stars in range(1, head_size + 1)]

    base = base_model_dir(params["base_model"])
    tokenizer = AutoTokenizer.from_pretrained(base)
    # The encoder comes without a classification head (or with one of another size, which is
    # replaced); transformers' load report (a warning) lists it as newly initialized, which
    # is what fine-tuning starts from.
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            base,
            num_labels=head_size,
            ignore_mismatched_sizes=True,
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
        ).to(device)
    finally:
        transformers.logging.set_verbosity(verbosity)

    encoded = tokenizer(texts, truncation=True, max_length=params["max_length"])
    features = [
        {"input_ids": ids, "attention_mask": mask, "labels": target}
        for ids, mask, target in zip(
            encoded["input_ids"], encoded["attention_mask"], targets, strict=True
        )
    ]
    sampler = LengthGroupedSampler(
        params["batch_size"],
        lengths=[len(f["input_ids"]) for f in features],
        generator=torch.Generator().manual_seed(params["seed"]),
    )
    loader = torch.utils.data.DataLoader(
        features,
        batch_size=params["batch_size"],
        sampler=sampler,
        collate_fn=DataCollatorWithPadding(tokenizer),
    )
    optimizer = optimizer_for(model, params["lr"], params["weight_decay"])
    total_steps = len(loader) * params["epochs"]
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(params["warmup_ratio"] * total_steps), total_steps
    )

    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"val_macro_f1": -1.0}
    stale = 0
    progress = tqdm(total=total_steps, desc="train_transformer", unit="batch", disable=None)
    for epoch in range(1, params["epochs"] + 1):
        model.train()
        losses = []
        for batch in loader:
            loss = model(**batch.to(device)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), params["max_grad_norm"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            progress.update()
            progress.set_postfix(
                epoch=epoch,
                loss=f"{np.mean(losses[-20:]):.4f}",
                val_f1=f"{best['val_macro_f1']:.4f}",
            )
        proba = collapse(probabilities(model, tokenizer, val_texts, params["max_length"]), groups)
        val_f1 = macro_f1(val_labels, proba.argmax(axis=1))
        history.append(
            {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_macro_f1": val_f1}
        )
        progress.write(
            f"train_transformer: epoch {epoch}/{params['epochs']}: train loss "
            f"{history[-1]['train_loss']:.4f}, val macro-F1 {val_f1:.4f}",
            file=sys.stderr,  # unbuffered: a log shows each epoch as it ends
        )
        if on_epoch is not None:
            on_epoch(history[-1])
        if val_f1 > best["val_macro_f1"]:
            best = {
                "val_macro_f1": val_f1,
                "epoch": epoch,
                "proba": proba,
                "state": copy.deepcopy(model.state_dict()),
            }
            stale = 0
        else:
            stale += 1
            if stale >= params["patience"]:
                break
    progress.close()

    model.load_state_dict(best["state"])
    threshold = best_threshold(val_labels, best["proba"][:, 1]) if n_classes == 2 else None
    return {
        "model": model,
        "tokenizer": tokenizer,
        "threshold": threshold,
        "history": history,
        "best_epoch": best["epoch"],
        "n_classes": n_classes,
        "head_groups": groups,
        "base_model": str(base),
        "train_texts": texts,
        "val_texts": val_texts,
        "val_labels": val_labels,
        "val_proba": best["proba"],
    }


def quantization_check(model_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The ONNX export in fp32 and in int8 (``model.int8.onnx``, written before) on validation,
    on the behavioural suite and for batch invariance (``batch_invariance_error`` on the
    validation texts). int8 is kept only when it costs less than 0.5 validation macro-F1
    points, no behavioural pass rate drops more than the gate allows a new model
    (``MAX_BEHAVIOUR_DROP``) and no score moves more than ``INVARIANCE_BOUND`` with its
    batch-mates; otherwise its file is removed."""
    meta = json.loads((model_dir / META_FILE).read_text())
    scores, behaviour, invariance = {}, {}, {}
    for name, quantized in (("fp32", False), ("int8", True)):
        predictor = OnnxPredictor(model_dir, meta | {"quantized": quantized})
        proba = predictor.proba_of_model_texts(result["val_texts"])
        scores[name] = macro_f1(result["val_labels"], decide(proba, result["threshold"]))
        behaviour[name] = run_suite(lambda batch, p=predictor: predict(p, batch))
        invariance[name] = batch_invariance_error(
            predictor.proba_of_model_texts, result["val_texts"]
        )
    drop = max(behaviour["fp32"][k] - behaviour["int8"][k] for k in behaviour["fp32"])
    kept = (
        scores["fp32"] - scores["int8"] < MAX_QUANTIZATION_LOSS
        and drop <= MAX_BEHAVIOUR_DROP
        and invariance["int8"] <= INVARIANCE_BOUND
    )
    if not kept:
        (model_dir / ONNX_INT8_FILE).unlink()
    return {
        "val_macro_f1_fp32": round(scores["fp32"], 5),
        "val_macro_f1_int8": round(scores["int8"], 5),
        "behaviour_drop_int8": round(drop, 4),
        # rounded: float noise of another CPU's kernels must not change the file's bytes
        "batch_invariance_fp32": round(invariance["fp32"], 6),
        "batch_invariance_int8": round(invariance["int8"], 6),
        "quantized": kept,
    }


def save_curve(history: list[dict[str, float]], out_dir: Path) -> None:
    """The training curve as DVC plot data (JSON) and as a PNG for reports."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_json(out_dir / "curve.json", history)
    fig, loss_ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    loss_ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("train loss")
    f1_ax = loss_ax.twinx()
    f1_ax.plot(
        epochs, [h["val_macro_f1"] for h in history], "s-", color="tab:orange", label="val macro-F1"
    )
    f1_ax.set_ylabel("val macro-F1")
    fig.legend(loc="lower center", ncol=2)
    fig.tight_layout()
    with atomic_path(out_dir / "curve.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def run_stage(params: dict[str, Any]) -> dict[str, Any]:
    with stage_run("train_transformer"):
        started = time.perf_counter()
        result = train(
            params,
            Path("data/prepared/train.parquet"),
            Path("data/prepared/val.parquet"),
            on_epoch=lambda record: mlflow.log_metrics(
                {k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"]
            ),
        )
        seconds = time.perf_counter() - started
        meta = {
            "threshold": result["threshold"],
            "n_classes": result["n_classes"],
            "target": params["target"],
            "head_groups": result["head_groups"],
            "max_length": params["max_length"],
            "base_model": Path(result["base_model"]).name,
            "best_epoch": result["best_epoch"],
            "val_macro_f1": round(result["history"][result["best_epoch"] - 1]["val_macro_f1"], 5),
            "cpu_numerics": numerics_record(params["threads"]),
        }
        with atomic_path(MODEL_DIR) as tmp:
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
            **{k: round(v, 5) if isinstance(v, float) else v for k, v in quant.items()},
        }
        write_json(OUT_DIR / "metrics.json", summary)
        save_curve(result["history"], OUT_DIR)
        log_numeric_metrics(summary)
        mlflow.log_artifact(str(OUT_DIR / "curve.png"), "plots")
        log_model(MODEL_DIR)
    return summary


def main() -> None:
    params = load_params("train_transformer")
    run_pinned(params["threads"])  # may start this command again, pinned
    summary = run_stage(params)
    print(f"train_transformer: {json.dumps(summary)}")


if __name__ == "__main__":
    entry_point(main)
