"""Fine-tuning a Hugging Face encoder for train_transformer: the training set and its
targets (labels or stars), the encoder with a new head, length-grouped batches, the epoch loop
with early stopping, the int8 copy's acceptance check and the training curve."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

from sentiment.data.labels import IMPLIED_NAMES
from sentiment.data.text import model_text
from sentiment.evaluation.behaviour import run_suite
from sentiment.evaluation.metrics import macro_f1
from sentiment.fileio import atomic_path, read_split, write_json
from sentiment.models.encoders import base_model_dir
from sentiment.models.onnx_backend import ONNX_INT8_FILE, OnnxPredictor, collapse
from sentiment.models.predictor import (
    INVARIANCE_BOUND,
    META_FILE,
    batch_invariance_error,
    best_threshold,
    check_target,
    label_ids,
    predict,
    rating_groups,
)
from sentiment.models.transformer import (
    pick_device,
    probabilities,
)

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


@dataclass
class TrainingSet:
    """The texts a run trains and validates on, as the model sees them, and its head."""

    texts: list[str]
    targets: list[int]
    head_size: int
    groups: list[list[int]] | None  # learnt classes summed into each label (None: labels)
    val_texts: list[str]
    val_labels: list[int]
    n_classes: int  # labels, whatever the head learns
    classes: list[str] | None = None  # the labels' names, when the dataset declared them

    def class_names(self) -> list[str]:
        """The head's class names: the stars', else the labels' (declared, else implied by
        their count)."""
        if self.groups is not None:
            return [f"{stars} stars" for stars in range(1, self.head_size + 1)]
        if self.classes:
            return list(self.classes)
        default = [f"class {c}" for c in range(self.n_classes)]
        return IMPLIED_NAMES.get(self.n_classes, default)


def training_set(
    params: dict[str, Any], train_split: Path, val_split: Path, classes: list[str] | None = None
) -> TrainingSet:
    """Read the splits: the (sub)sampled train rows with their targets, and validation;
    ``classes`` names the labels."""
    all_texts, all_labels = read_split(train_split)
    rows = subsample(all_labels, params["max_train_samples"], params["seed"])
    targets, head_size, groups = training_targets(params, train_split, rows, all_labels)
    val_texts, val_labels = read_split(val_split)
    return TrainingSet(
        texts=[model_text(all_texts[i]) for i in rows],
        targets=targets,
        head_size=head_size,
        groups=groups,
        val_texts=[model_text(t) for t in val_texts],
        val_labels=val_labels,
        n_classes=len(classes) if classes else max(max(all_labels), max(val_labels)) + 1,
        classes=classes,
    )


def load_encoder(params: dict[str, Any], data: TrainingSet, device: torch.device):
    """The base encoder's tokenizer, and the encoder with a new head of ``data.head_size``."""
    base = base_model_dir(params["base_model"])
    tokenizer = AutoTokenizer.from_pretrained(base)
    names = data.class_names()
    # The encoder comes without a classification head (or with one of another size, which is
    # replaced); transformers' load report (a warning) lists it as newly initialized, which
    # is what fine-tuning starts from.
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            base,
            num_labels=data.head_size,
            ignore_mismatched_sizes=True,
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
        ).to(device)
    finally:
        transformers.logging.set_verbosity(verbosity)
    return base, tokenizer, model


def batches(params: dict[str, Any], tokenizer: Any, data: TrainingSet) -> Any:
    """Length-grouped, seeded, dynamically padded training batches."""
    encoded = tokenizer(data.texts, truncation=True, max_length=params["max_length"])
    features = [
        {"input_ids": ids, "attention_mask": mask, "labels": target}
        for ids, mask, target in zip(
            encoded["input_ids"], encoded["attention_mask"], data.targets, strict=True
        )
    ]
    sampler = LengthGroupedSampler(
        params["batch_size"],
        lengths=[len(f["input_ids"]) for f in features],
        generator=torch.Generator().manual_seed(params["seed"]),
    )
    return torch.utils.data.DataLoader(
        features,
        batch_size=params["batch_size"],
        sampler=sampler,
        collate_fn=DataCollatorWithPadding(tokenizer),
    )


def fit(
    params: dict[str, Any],
    model: torch.nn.Module,
    tokenizer: Any,
    loader: Any,
    data: TrainingSet,
    on_epoch: Callable[[dict[str, float]], None] | None,
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """AdamW with linear warmup and clipping, early-stopped on val macro-F1; returns the best
    epoch (its state, number and val probabilities) and every epoch's record."""
    device = next(model.parameters()).device
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
        proba = probabilities(model, tokenizer, data.val_texts, params["max_length"])
        proba = collapse(proba, data.groups)
        val_f1 = macro_f1(data.val_labels, proba.argmax(axis=1))
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
            state = copy.deepcopy(model.state_dict())
            best = {"val_macro_f1": val_f1, "epoch": epoch, "proba": proba, "state": state}
            stale = 0
        else:
            stale += 1
            if stale >= params["patience"]:
                break
    progress.close()
    return best, history


def train(
    params: dict[str, Any],
    train_split: Path,
    val_split: Path,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    classes: list[str] | None = None,
) -> dict[str, Any]:
    """Fine-tune; return the best model, tokenizer, threshold and per-epoch history.

    ``on_epoch`` receives each epoch's record (epoch, train_loss, val_macro_f1); ``classes``
    names the labels (the dataset's, in class-id order).
    """
    set_seed(params["seed"])
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = pick_device()
    torch.set_num_threads(params["threads"])  # reductions split by thread: fix it for equal bytes
    data = training_set(params, train_split, val_split, classes)
    base, tokenizer, model = load_encoder(params, data, device)
    best, history = fit(params, model, tokenizer, batches(params, tokenizer, data), data, on_epoch)
    model.load_state_dict(best["state"])
    binary = data.n_classes == 2
    threshold = best_threshold(data.val_labels, best["proba"][:, 1]) if binary else None
    return {
        "model": model,
        "tokenizer": tokenizer,
        "threshold": threshold,
        "history": history,
        "best_epoch": best["epoch"],
        "n_classes": data.n_classes,
        "head_groups": data.groups,
        "base_model": str(base),
        "train_texts": data.texts,
        "val_texts": data.val_texts,
        "val_labels": data.val_labels,
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
        scores[name] = macro_f1(result["val_labels"], label_ids(proba, result["threshold"]))
        behaviour[name] = run_suite(lambda batch, p=predictor: predict(p, batch), proba.shape[1])
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


def save_curve(history: list[dict[str, float]], json_path: Path, png_path: Path) -> None:
    """The training curve as DVC plot data (JSON) and as a PNG for reports."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_json(json_path, history)
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
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
