"""The fine-tuned transformer scored through ONNX Runtime, without torch.

``OnnxPredictor`` reads ``model.onnx`` (or ``model.int8.onnx`` when ``meta.json`` says the
int8 copy was kept) and ``tokenizer.json`` from a model directory that ``train_transformer``
wrote. It cleans text as training did (``model_text``), tokenizes once, groups texts by
token length (``length_batches``) and pads each group only to its own longest text. A model
trained on star ratings (``target: rating``) has a head with a class per rating; its
probabilities are summed into the label classes (``collapse``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sentiment.data.text import model_text
from sentiment.settings import setting

ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
ONNX_OPSET = 17
EMBEDDING_OUTPUT = "embedding"  # second graph output: the pooled vector the head reads

# The fixed cost of one forward pass, in padded tokens: on 2 CPU cores an eager-torch MiniLM
# pass cost 5-7 ms (reading ~40 MB of weights) plus about 0.1 ms a padded token, whatever the
# batch shape (a least-squares fit over shapes gave a ratio of 59-64).
FORWARD_OVERHEAD_TOKENS = 64


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


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def collapse(proba: np.ndarray, head_groups: list[list[int]] | None) -> np.ndarray:
    """Label probabilities from a head trained on a finer target (``target: rating``): the
    probability of a label is the sum over the head's classes in its group. Without groups
    the head's classes are the labels."""
    if head_groups is None:
        return proba
    return np.stack([proba[:, group].sum(axis=1) for group in head_groups], axis=1)


def onnx_file(model_dir: Path, meta: dict[str, Any]) -> Path:
    """The ONNX file a model directory is served from: int8 when ``meta`` kept it."""
    return model_dir / (ONNX_INT8_FILE if meta.get("quantized") else ONNX_FILE)


class OnnxPredictor:
    """A fine-tuned transformer directory scored by ONNX Runtime on the CPU."""

    def __init__(self, model_dir: Path, meta: dict[str, Any], batch_size: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.meta = meta
        self.batch_size = batch_size or setting("SENTIMENT_ONNX_BATCH")
        path = onnx_file(model_dir, meta)
        if not path.is_file():
            raise FileNotFoundError(f"{model_dir}: no {path.name} (train_transformer writes it)")
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()  # each length group is padded here, to its own longest
        self.tokenizer.enable_truncation(meta["max_length"])
        config = json.loads((model_dir / "tokenizer_config.json").read_text())
        self.pad_id = self.tokenizer.token_to_id(config.get("pad_token") or "[PAD]") or 0
        options = ort.SessionOptions()
        # One thread per core alone; the service's workers share the cores between them.
        threads = setting("SENTIMENT_ONNX_THREADS") or os.cpu_count() or 1
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: not its notes on graph optimisation
        # Spin-waiting threads score a stream of calls faster, but steal the cores of a
        # process beside them (the service's other workers): ``SENTIMENT_ONNX_SPIN=0``.
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if setting("SENTIMENT_ONNX_SPIN") else "0"
        )
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.outputs = {o.name: o.shape for o in self.session.get_outputs()}
        self.logits = self.session.get_outputs()[0].name

    @property
    def has_embedding(self) -> bool:
        """Whether the export has the ``embedding`` output (exports before it do not)."""
        return EMBEDDING_OUTPUT in self.outputs

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.proba_of_model_texts([model_text(t) for t in texts])

    def feeds(
        self, texts: list[str], batch_size: int | None = None
    ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """(row indices, session inputs) for texts already cleaned by ``model_text``: one
        tokenization, rows grouped by ``length_batches``, each group padded to its longest."""
        encodings = self.tokenizer.encode_batch(texts)
        lengths = [len(e.ids) for e in encodings]
        for idx in length_batches(lengths, batch_size or self.batch_size):
            batch = [encodings[i] for i in idx]
            width = max(len(e.ids) for e in batch)
            feed = {
                "input_ids": np.full((len(batch), width), self.pad_id, dtype=np.int64),
                "attention_mask": np.zeros((len(batch), width), dtype=np.int64),
                "token_type_ids": np.zeros((len(batch), width), dtype=np.int64),
            }
            for row, e in enumerate(batch):
                feed["input_ids"][row, : len(e.ids)] = e.ids
                feed["attention_mask"][row, : len(e.ids)] = e.attention_mask
                feed["token_type_ids"][row, : len(e.ids)] = e.type_ids
            yield idx, {k: v for k, v in feed.items() if k in self.inputs}

    def output_rows(self, texts: list[str], name: str) -> np.ndarray:
        """One graph output (its second axis static in the export) for model texts, rows in
        input order; only that output is asked for."""
        out = np.empty((len(texts), self.outputs[name][1]), dtype=np.float32)
        for idx, feed in self.feeds(texts):
            out[idx] = self.session.run([name], feed)[0]
        return out

    def proba_of_model_texts(self, texts: list[str]) -> np.ndarray:
        """Class probabilities for texts already cleaned by ``model_text``."""
        return collapse(softmax(self.output_rows(texts, self.logits)), self.meta.get("head_groups"))

    def embeddings(self, texts: list[str]) -> np.ndarray:
        """The pooled hidden state the head classifies, per text (drift's embedding test)."""
        return self.output_rows([model_text(t) for t in texts], EMBEDDING_OUTPUT)
