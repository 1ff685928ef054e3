"""Fine-tuned transformer on torch: locating the base model, saving, ONNX export, inference.

``save_transformer`` writes the safetensors weights, the tokenizer, ``meta.json`` and an ONNX
export (``model.onnx``, dynamic batch and sequence axes), which is what evaluate, the gate,
drift, batch scoring and the service score through (``sentiment/models/onnx_backend.py``);
``quantize_onnx`` adds its static int8 copy.
``TransformerPredictor`` scores the fp32 weights with torch: the reference the ONNX export
is checked against, and the backend for a directory with no ONNX file.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sentiment.data.text import model_text
from sentiment.fileio import write_json
from sentiment.models.onnx_backend import (
    EMBEDDING_OUTPUT,
    ONNX_FILE,
    ONNX_INT8_FILE,
    ONNX_OPSET,
    collapse,
    length_batches,
)

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
    add_embedding_output(path)


def add_embedding_output(path: Path) -> None:
    """Expose the classification head's input (the pooled hidden state) as a second graph
    output, ``embedding``: drift compares these vectors, and the service, which asks for
    the logits only, still loads one model. Found by walking back from the logits to the
    first weighted Gemm/MatMul; an Identity node names it."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    node = producer[graph.output[0].name]
    while not (node.op_type in ("Gemm", "MatMul") and node.input[1] in weights):
        node = producer[node.input[0]]
    transposed = any(a.name == "transB" and a.i == 1 for a in node.attribute)
    hidden = weights[node.input[1]].dims[1 if transposed else 0]
    graph.node.append(
        onnx.helper.make_node("Identity", [node.input[0]], [EMBEDDING_OUTPUT], name="embedding")
    )
    graph.output.append(
        onnx.helper.make_tensor_value_info(
            EMBEDDING_OUTPUT, onnx.TensorProto.FLOAT, ["batch", hidden]
        )
    )
    onnx.save(model, str(path))


CALIBRATION_TEXTS = 256  # training texts whose activations fix the int8 scales
RANGE_STEPS_PER_OCTAVE = 16  # calibrated ranges are widened to this grid (see below)


def widened(value: np.ndarray, outward: int) -> np.ndarray:
    """``value`` moved ``outward`` (+1 up, -1 down) to the next point of a grid of
    ``RANGE_STEPS_PER_OCTAVE`` steps per power of two (at most 4.4 % wider). Float noise
    of another CPU's kernels in the calibration runs then changes no scale."""
    magnitude = np.abs(value.astype(np.float64))
    if magnitude == 0:
        return value
    steps = np.log2(magnitude) * RANGE_STEPS_PER_OCTAVE
    steps = np.ceil(steps) if np.sign(value) == outward else np.floor(steps)
    return (np.sign(value) * 2 ** (steps / RANGE_STEPS_PER_OCTAVE)).astype(value.dtype)


def calibration_sample(texts: list[str], seed: int) -> list[str]:
    """A seeded sample of ``CALIBRATION_TEXTS`` texts (all when there are fewer)."""
    if len(texts) <= CALIBRATION_TEXTS:
        return list(texts)
    rows = np.random.default_rng(seed).choice(len(texts), CALIBRATION_TEXTS, replace=False)
    return [texts[i] for i in sorted(rows)]


def int8_layers(graph: Any) -> list[str]:
    """The linear layers (MatMul with a weight) that the int8 copy quantizes: all but the
    feed-forward blocks' output projections, whose input is a GELU's output (long-tailed:
    one scale for it cost MiniLM 2 of its 24 negation cases), and the head on the pooled
    vector (Gemm), which stays fp32."""
    weights = {init.name for init in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}

    def after_gelu(tensor: str, steps: int = 4) -> bool:
        node = producer.get(tensor)
        if node is None or steps == 0:
            return False
        return node.op_type in ("Erf", "Gelu") or any(after_gelu(i, steps - 1) for i in node.input)

    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and node.input[1] in weights and not after_gelu(node.input[0])
    ]


def activation_ranges(source: Path, feeds: Any, tmp: Path) -> dict[str, tuple]:
    """The range each MatMul input takes over ``feeds`` (an ONNX Runtime calibration data
    reader), widened outwards onto the coarse grid (``widened``)."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    calibrator = create_calibrator(
        source,
        ["MatMul"],
        augmented_model_path=str(tmp / "augmented.onnx"),
        calibrate_method=CalibrationMethod.MinMax,
    )
    calibrator.collect_data(feeds)
    return {
        name: (widened(data.range_value[0], -1), widened(data.range_value[1], 1))
        for name, data in calibrator.compute_data().data.items()
    }


def quantize_onnx(model_dir: Path, calibration_texts: list[str]) -> Path:
    """``model.onnx`` -> ``model.int8.onnx``: ONNX Runtime's static int8 (QDQ).

    The layers of ``int8_layers`` get int8 weights, per output channel; their inputs are
    quantized (uint8) with scales fixed here, from the ranges the activations take on
    ``calibration_texts`` (model texts, one per run: no padding), widened onto a coarse
    grid. Fixed scales make a text's score independent of its batch-mates and padding,
    which dynamic quantization (a scale per batch) does not. The weights use 7 bits
    (``reduce_range``): on AVX2 CPUs without VNNI, ONNX Runtime sums pairs of uint8 x int8
    products in 16 bits, which full-range weights can saturate (all-mpnet-base-v2 fell to
    one class that way); 7-bit ones cannot, so the integer sums are exact on every x86-64
    CPU.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    from sentiment.models.onnx_backend import OnnxPredictor

    source, target = model_dir / ONNX_FILE, model_dir / ONNX_INT8_FILE
    meta = json.loads((model_dir / "meta.json").read_text()) | {"quantized": False}
    feeds = [feed for _, feed in OnnxPredictor(model_dir, meta).feeds(calibration_texts, 1)]

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.rest = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.rest, None)

    layers = int8_layers(onnx.load(source).graph)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process the graph first, every time
    try:
        with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
            ranges = activation_ranges(source, Feeds(), Path(tmp))
            cache = Path(tmp) / "ranges.json"
            save_tensors_data(TensorsData(CalibrationMethod.MinMax, ranges), cache)
            quantize_static(
                source,
                target,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=layers,
                calibration_cache_path=cache,
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
