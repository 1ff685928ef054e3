"""Fine-tuned transformer on torch: locating the base model, saving, ONNX export, inference.

``save_transformer`` writes the safetensors weights, the tokenizer, ``meta.json`` and an ONNX
export (``model.onnx``, dynamic batch and sequence axes), which is what evaluate, the gate,
drift, batch scoring and the service score through (``stages/onnx_model.py``).
``TransformerPredictor`` scores the fp32 weights with torch: the reference the ONNX export
is checked against, and the backend for a directory with no ONNX file.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stages.common import write_json
from stages.onnx_model import ONNX_FILE, ONNX_INT8_FILE, ONNX_OPSET, collapse, length_batches
from stages.text import model_text

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pick_device() -> torch.device:
    """CUDA when present, else the CPU with every core."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    torch.set_num_threads(os.cpu_count() or 1)
    return torch.device("cpu")


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
    """safetensors weights, tokenizer, config, ``model.onnx`` and ``meta.json``.

    ``local_files_only`` (set by ``HF_HUB_OFFLINE``) is a loading option, not part of the
    tokenizer: kept, it would change the output's bytes with the environment.
    """
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.init_kwargs.pop("local_files_only", None)
    tokenizer.save_pretrained(model_dir)
    export_onnx(model, tokenizer, model_dir / ONNX_FILE)
    write_json(
        model_dir / "meta.json",
        {"flavor": "transformer", "onnx_opset": ONNX_OPSET, "quantized": False, **meta},
    )


def export_onnx(model: torch.nn.Module, tokenizer: Any, path: Path) -> None:
    """The model as ONNX (opset ``ONNX_OPSET``), batch and sequence axes dynamic.

    TorchScript tracing (``dynamo=False``): it needs no extra packages and gives the same
    bytes for the same weights. The example batch has two lengths, so padding is traced.
    """
    model = copy.deepcopy(model).cpu().eval()
    # A copy: padding=True would stay set on the tokenizer and change its saved bytes.
    example = copy.deepcopy(tokenizer)(["a b c", "a"], padding=True, return_tensors="pt")
    # Graph inputs are named in the order of forward()'s parameters, not the tokenizer's.
    names = [name for name in inspect.signature(model.forward).parameters if name in example]
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    with warnings.catch_warnings():
        # The tracer warns about Python branches on shapes in the attention-mask code; the
        # parity test checks that every batch shape scores as torch does.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (),
            str(path),
            kwargs={name: example[name] for name in names},
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes | {"logits": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )


def quantize_onnx(model_dir: Path) -> Path:
    """``model.onnx`` -> ``model.int8.onnx``: ONNX Runtime's dynamic int8, per channel."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = model_dir / ONNX_INT8_FILE
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process the graph first, every time
    try:
        quantize_dynamic(
            model_dir / ONNX_FILE, target, per_channel=True, weight_type=QuantType.QInt8
        )
    finally:
        root.setLevel(level)
    return target


class TransformerPredictor:
    """Scores a saved fine-tuned model directory with torch (fp32 weights)."""

    def __init__(self, model_dir: Path, meta: dict[str, Any], batch_size: int = 64):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.meta = meta
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        self.model = model.to(pick_device()).eval()

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        proba = probabilities(
            self.model,
            self.tokenizer,
            [model_text(t) for t in texts],
            self.meta["max_length"],
            self.batch_size,
        )
        return collapse(proba, self.meta.get("head_groups"))
