"""A text's probabilities do not depend on its batch-mates, its position or padding: every
backend the pipeline can serve, on tiny models built here, and the real model where the
workspace has one (after `make run`)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from sentiment.fileio import read_split
from sentiment.models.onnx_backend import ONNX_FILE, ONNX_INT8_FILE, OnnxPredictor
from sentiment.models.predictor import (
    INVARIANCE_BOUND,
    EnsemblePredictor,
    Predictor,
    batch_invariance_error,
    load_predictor,
    read_meta,
)
from sentiment.models.transformer import TransformerPredictor, quantize_onnx, save_transformer
from sentiment.settings import setting
from stages.evaluate import evaluate
from tests.conftest import REPO
from tests.test_gate import make_model
from tests.test_onnx import META, calibration_texts, varied_texts
from tests.test_transformer import make_tiny_bert

TEXTS = varied_texts(48, seed=11)


@pytest.fixture(scope="module")
def transformer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT exported as the pipeline does: fp32 ONNX and its static int8 copy."""
    root = tmp_path_factory.mktemp("invariance")
    base = make_tiny_bert(root)
    model_dir = root / "model"
    save_transformer(
        AutoModelForSequenceClassification.from_pretrained(base),
        AutoTokenizer.from_pretrained(base),
        model_dir,
        META,
    )
    quantize_onnx(model_dir, calibration_texts())
    return model_dir


@pytest.fixture(scope="module")
def backends(transformer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every way the pipeline scores text, each with the texts' scores taken one at a time."""
    meta = read_meta(transformer_dir)
    classical = load_predictor(make_model(tmp_path_factory.mktemp("classical") / "m", 3))
    int8 = OnnxPredictor(transformer_dir, meta | {"quantized": True})
    predictors: dict[str, Predictor] = {
        "classical": classical,
        "onnx_fp32": OnnxPredictor(transformer_dir, meta),
        "onnx_int8": int8,
        "torch": TransformerPredictor(transformer_dir, meta),
        "ensemble": EnsemblePredictor([classical, int8], {"weights": [0.3, 0.7]}),
    }
    return {
        name: (p, np.vstack([p.predict_proba([t]) for t in TEXTS]))
        for name, p in predictors.items()
    }


@pytest.mark.parametrize("name", ["classical", "onnx_fp32", "onnx_int8", "torch", "ensemble"])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
@pytest.mark.slow
def test_scores_do_not_depend_on_batch_mates_or_order(backends: dict, name: str, data) -> None:
    predictor, alone = backends[name]
    order = data.draw(st.permutations(range(len(TEXTS))))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(TEXTS) - 1), max_size=8)))
    for rows in np.split(np.asarray(order), cuts):
        proba = predictor.predict_proba([TEXTS[i] for i in rows])
        assert np.abs(proba - alone[rows]).max() <= INVARIANCE_BOUND, (name, list(rows))


def test_dynamic_int8_depends_on_batch_mates_and_the_check_sees_it(transformer_dir: Path) -> None:
    """The former int8 copy (a scale per batch) moves scores with the batch; static does not."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dynamic = transformer_dir.parent / "dynamic"
    shutil.copytree(transformer_dir, dynamic, ignore=shutil.ignore_patterns(ONNX_INT8_FILE))
    logging.getLogger().setLevel(logging.ERROR)
    quantize_dynamic(
        dynamic / ONNX_FILE, dynamic / ONNX_INT8_FILE, per_channel=True, weight_type=QuantType.QInt8
    )
    meta = read_meta(transformer_dir) | {"quantized": True}
    texts = varied_texts(120, seed=3)
    assert batch_invariance_error(OnnxPredictor(dynamic, meta).predict_proba, texts) > 1e-5
    static = OnnxPredictor(transformer_dir, meta).predict_proba
    assert batch_invariance_error(static, texts) <= INVARIANCE_BOUND


def test_the_invariance_error_sees_a_batch_dependence() -> None:
    def by_batch(texts: list[str]) -> np.ndarray:  # a score shifted by the batch's mean length
        lengths = np.array([len(t) for t in texts], dtype=float)
        p = 1 / (1 + np.exp(-(lengths - lengths.mean() / 2) / 10))
        return np.stack([1 - p, p], axis=1)

    assert batch_invariance_error(by_batch, TEXTS) > 0.01


@pytest.mark.parametrize("name", ["transformer", "champion"])
@pytest.mark.slow
def test_the_workspace_model_is_batch_invariant(name: str) -> None:
    """The model `make run` trained here (a fresh clone has none before it runs)."""
    model_dir = REPO / "models" / name
    test_split = REPO / "data" / "prepared" / "test.parquet"
    if not (model_dir / "meta.json").is_file() or not test_split.is_file():
        if setting("SENTIMENT_REQUIRE_MODELS"):
            pytest.fail(f"{model_dir}: no model (`make run` trains it)")
        pytest.skip(f"{model_dir}: no model here (`make run` trains it)")
    texts = read_split(test_split)[0][:200]
    assert (
        batch_invariance_error(load_predictor(model_dir).predict_proba, texts) <= INVARIANCE_BOUND
    )


def write_split(path: Path, texts: list[str], labels: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"text": texts, "label": labels}).to_parquet(path)


@pytest.mark.slow
def test_evaluate_gives_the_same_figures_with_the_test_split_shuffled(
    transformer_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every figure but the bootstrap interval (which resamples row positions) and the
    timing is a function of the rows, not of their order."""
    monkeypatch.chdir(tmp_path)
    make_model(Path("models/classical"), 3)
    shutil.copytree(transformer_dir, "models/transformer")
    rng = np.random.default_rng(4)
    texts = varied_texts(160, seed=8)
    labels = [int("good" in t or "great" in t) for t in texts]
    for split, rows in (("train", slice(0, 40)), ("val", slice(40, 100))):
        write_split(Path(f"data/prepared/{split}.parquet"), texts[rows], labels[rows])
    for name in ("amazon", "imdb", "yelp"):
        write_split(Path(f"data/prepared/ood/{name}.parquet"), texts[:30], labels[:30])
    test_texts, test_labels = texts[100:], labels[100:]
    params = {"bootstrap_resamples": 20, "min_gain": 0.005, "seed": 0}
    figures = []
    for order in (np.arange(len(test_texts)), rng.permutation(len(test_texts))):
        write_split(
            Path("data/prepared/test.parquet"),
            [test_texts[i] for i in order],
            [test_labels[i] for i in order],
        )
        metrics, test = evaluate(params)
        probas = {name: np.empty_like(p) for name, p in test["probas"].items()}
        for name, p in test["probas"].items():
            probas[name][order] = p
        figures.append((without_order_dependent(metrics), probas))
    assert figures[0][0] == figures[1][0]
    for name, proba in figures[0][1].items():
        assert np.abs(proba - figures[1][1][name]).max() <= INVARIANCE_BOUND, name


def without_order_dependent(metrics: dict) -> dict:
    """``metrics`` without the bootstrap intervals and the latencies."""
    if not isinstance(metrics, dict):
        return metrics
    return {
        key: without_order_dependent(value)
        for key, value in metrics.items()
        if key not in ("macro_f1_ci", "latency_ms_per_1k")
    }
