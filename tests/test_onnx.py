"""The ONNX export and the ONNX Runtime backend, against torch on the same weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from sentiment.data.text import model_text
from sentiment.models import training as tt
from sentiment.models.onnx_backend import ONNX_FILE, ONNX_INT8_FILE, OnnxPredictor, onnx_file
from sentiment.models.predictor import load_predictor, read_meta
from sentiment.models.transformer import TransformerPredictor, quantize_onnx, save_transformer
from sentiment.models.trust import file_digests
from tests.test_transformer import WORDS, splits, tiny_bert  # noqa: F401 (fixtures)

META = {"threshold": 0.5, "max_length": 16, "n_classes": 2}


def varied_texts(n: int, seed: int = 0) -> list[str]:
    """Short, long (past max_length), empty, emoji, unknown words, READ MORE: every shape."""
    rng = np.random.default_rng(seed)
    extras = ["", "👍👍", "zzz qqq", "good READ MORE", "   ", "the " * 40, "BAD!!! 😡"]
    texts = [" ".join(rng.choice(WORDS, rng.integers(1, 30))) for _ in range(n - len(extras))]
    return texts + extras


def calibration_texts() -> list[str]:
    """Model texts for the int8 calibration (other texts than the ones scored)."""
    return [model_text(t) for t in varied_texts(100, seed=5)]


@pytest.fixture
def exported(tiny_bert: Path, tmp_path: Path) -> Path:  # noqa: F811
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    save_transformer(model, tokenizer, tmp_path / "model", META)
    return tmp_path / "model"


def test_onnx_and_torch_agree_on_200_varied_texts(exported: Path) -> None:
    meta = read_meta(exported)
    assert meta["onnx_opset"] == 17 and meta["quantized"] is False
    texts = varied_texts(200)
    onnx = OnnxPredictor(exported, meta)
    torch_proba = TransformerPredictor(exported, meta).predict_proba(texts)
    np.testing.assert_allclose(onnx.predict_proba(texts), torch_proba, atol=1e-4)
    # Batch composition does not matter: one at a time gives the same probabilities.
    single = np.vstack([onnx.predict_proba([t]) for t in texts[:20]])
    np.testing.assert_allclose(single, torch_proba[:20], atol=1e-4)
    assert onnx.predict_proba([]).shape == (0, 2)


def test_the_backend_is_onnx_when_exported_unless_forced(exported: Path, monkeypatch) -> None:
    assert isinstance(load_predictor(exported), OnnxPredictor)
    monkeypatch.setenv("SENTIMENT_INFERENCE_BACKEND", "torch")
    assert isinstance(load_predictor(exported), TransformerPredictor)
    monkeypatch.setenv("SENTIMENT_INFERENCE_BACKEND", "tensorflow")
    with pytest.raises(ValueError, match="SENTIMENT_INFERENCE_BACKEND: 'tensorflow'"):
        load_predictor(exported)
    monkeypatch.setenv("SENTIMENT_INFERENCE_BACKEND", "onnx")
    (exported / ONNX_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"no model\.onnx"):
        load_predictor(exported)
    monkeypatch.delenv("SENTIMENT_INFERENCE_BACKEND")
    assert isinstance(load_predictor(exported), TransformerPredictor)  # an older directory


def test_the_export_and_its_int8_copy_are_byte_for_byte_reproducible(
    tiny_bert: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    digests = []
    for run in ("first", "second"):
        save_transformer(model, tokenizer, tmp_path / run, META)
        quantize_onnx(tmp_path / run, calibration_texts())
        digests.append(file_digests(tmp_path / run))
    assert {ONNX_FILE, ONNX_INT8_FILE, "tokenizer.json"} <= set(digests[0])
    assert digests[0] == digests[1]


def test_the_pooled_vector_is_a_second_output_of_both_exports(exported: Path) -> None:
    """What drift's embedding test reads: the head's input, as torch computes it, in the
    fp32 export and its int8 copy, whatever the batch-mates."""
    texts = varied_texts(30)
    model = AutoModelForSequenceClassification.from_pretrained(exported).eval()
    tokenizer = AutoTokenizer.from_pretrained(exported)
    seen: list[torch.Tensor] = []
    model.classifier.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    with torch.inference_mode():
        for text in texts:
            model(
                **tokenizer([model_text(text)], truncation=True, max_length=16, return_tensors="pt")
            )
    expected = torch.cat(seen).numpy()
    fp32 = OnnxPredictor(exported, read_meta(exported))
    assert fp32.has_embedding
    np.testing.assert_allclose(fp32.embeddings(texts), expected, atol=1e-4)
    quantize_onnx(exported, calibration_texts())
    int8 = OnnxPredictor(exported, read_meta(exported) | {"quantized": True})
    batched = int8.embeddings(texts)
    assert int8.has_embedding and batched.shape == expected.shape
    one_by_one = np.vstack([int8.embeddings([text]) for text in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert np.corrcoef(batched.ravel(), expected.ravel())[0, 1] > 0.95  # int8 stays close


@pytest.mark.parametrize("tolerance, kept", [(1.0, True), (-1.0, False)])
@pytest.mark.slow
def test_int8_is_kept_only_when_validation_allows(
    exported: Path, monkeypatch, tolerance: float, kept: bool
) -> None:
    texts = varied_texts(40)
    result = {"val_texts": texts, "val_labels": [i % 2 for i in range(40)], "threshold": 0.5}
    quantize_onnx(exported, calibration_texts())
    monkeypatch.setattr(tt, "MAX_QUANTIZATION_LOSS", tolerance)
    monkeypatch.setattr(tt, "MAX_BEHAVIOUR_DROP", tolerance)
    monkeypatch.setattr(tt, "INVARIANCE_BOUND", tolerance)
    check = tt.quantization_check(exported, result)
    assert check["quantized"] is kept
    assert (exported / ONNX_INT8_FILE).is_file() is kept
    assert set(check) == {
        "quantized",
        "val_macro_f1_fp32",
        "val_macro_f1_int8",
        "behaviour_drop_int8",
        "batch_invariance_fp32",
        "batch_invariance_int8",
    }
    assert check["batch_invariance_int8"] <= 1e-5 and check["batch_invariance_fp32"] <= 1e-5
    meta = read_meta(exported) | check
    assert onnx_file(exported, meta).name == (ONNX_INT8_FILE if kept else ONNX_FILE)
