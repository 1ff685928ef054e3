"""train_transformer and the inference module, on a tiny BERT built here (seconds)."""

from __future__ import annotations

import itertools
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from sentiment.data.text import model_text
from sentiment.models import training as tt
from sentiment.models.encoders import base_model_dir
from sentiment.models.numerics import cpu_pins
from sentiment.models.predictor import load_predictor, predict, rating_groups, read_meta
from sentiment.models.transformer import probabilities, save_transformer
from sentiment.models.trust import file_digests
from tests.conftest import copy_project, project_env

WORDS = [
    "good",
    "great",
    "nice",
    "excellent",
    "loved",
    "bad",
    "worst",
    "poor",
    "terrible",
    "hated",
    "the",
    "shuttle",
    "is",
    "very",
    "thumbs",
    "up",
]
PARAMS = {
    "base_model": None,
    "target": "label",
    "epochs": 1,
    "patience": 1,
    "lr": 5e-3,
    "batch_size": 8,
    "max_length": 16,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "max_grad_norm": 1.0,
    "max_train_samples": None,
    "quantize": True,
    "threads": 2,
    "seed": 3,
}


def make_tiny_bert(directory: Path) -> Path:
    """A randomly initialised 2-layer BERT with a 21-token vocabulary, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab))
    config = BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    model_dir = directory / "tiny-bert"
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


@pytest.fixture
def tiny_bert(tmp_path: Path) -> Path:
    return make_tiny_bert(tmp_path)


@pytest.fixture
def splits(tmp_path: Path) -> tuple[Path, Path]:
    good = [
        "the shuttle is good",
        "very nice",
        "great shuttle",
        "loved the shuttle",
        "excellent",
        "the shuttle is very good",
        "nice shuttle",
        "good good",
    ]
    bad = [
        "the shuttle is bad",
        "very poor",
        "worst shuttle",
        "hated the shuttle",
        "terrible",
        "the shuttle is very bad",
        "poor shuttle",
        "bad bad",
    ]
    paths = []
    for name, repeat in (("train", 3), ("val", 1)):
        df = pd.DataFrame({"text": (good + bad) * repeat, "label": ([1] * 8 + [0] * 8) * repeat})
        df["rating"] = [5, 4, 5, 5, 5, 4, 3, 4, 2, 1, 1, 1, 1, 2, 2, 1] * repeat
        paths.append(tmp_path / f"{name}.parquet")
        df.to_parquet(paths[-1])
    return paths[0], paths[1]


def test_one_epoch_trains_and_saves_a_loadable_model(tiny_bert, splits, tmp_path) -> None:
    result = tt.train(PARAMS | {"base_model": str(tiny_bert)}, *splits)
    assert len(result["history"]) == 1 and result["best_epoch"] == 1
    assert 0.05 <= result["threshold"] <= 0.95
    model_dir = tmp_path / "saved"
    save_transformer(
        result["model"],
        result["tokenizer"],
        model_dir,
        {"threshold": result["threshold"], "max_length": 16, "quantized": False, "n_classes": 2},
    )
    assert (model_dir / "model.safetensors").is_file()
    assert not list(model_dir.glob("*.bin"))

    predictor = load_predictor(model_dir)
    # 👍 reaches the model as "thumbs up" on both paths (training and inference).
    texts = ["very good shuttle", "worst 👍", "the shuttle is terrible READ MORE"]
    reloaded = predictor.predict_proba(texts)
    direct = probabilities(result["model"], result["tokenizer"], [model_text(t) for t in texts], 16)
    np.testing.assert_allclose(reloaded, direct, atol=1e-5)  # ONNX Runtime vs torch
    assert predict(predictor, texts).shape == (3,)


def test_rating_target_trains_a_star_head_that_scores_as_labels(tiny_bert, splits, tmp_path):
    result = tt.train(PARAMS | {"base_model": str(tiny_bert), "target": "rating"}, *splits)
    assert result["model"].config.num_labels == 5
    assert result["head_groups"] == [[0, 1], [2, 3, 4]]
    assert result["val_proba"].shape == (16, 2)
    model_dir = tmp_path / "saved"
    meta = {"threshold": result["threshold"], "max_length": 16, "n_classes": 2}
    save_transformer(
        result["model"], result["tokenizer"], model_dir, meta | {"head_groups": [[0, 1], [2, 3, 4]]}
    )
    texts = ["very good shuttle", "worst 👍", "", "the shuttle is terrible READ MORE"]
    stars = probabilities(result["model"], result["tokenizer"], [model_text(t) for t in texts], 16)
    expected = np.stack([stars[:, :2].sum(axis=1), stars[:, 2:].sum(axis=1)], axis=1)
    for backend in ("onnx", "torch"):
        with pytest.MonkeyPatch.context() as env:
            env.setenv("SENTIMENT_INFERENCE_BACKEND", backend)
            proba = load_predictor(model_dir).predict_proba(texts)
        np.testing.assert_allclose(proba, expected, atol=1e-5)
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, atol=1e-5)


def test_rating_groups_are_the_ones_prepare_labelled_with() -> None:
    stars = [1, 2, 3, 4, 5] * 2
    for labels, groups in (
        ([0, 0, 1, 1, 1] * 2, [[0, 1], [2, 3, 4]]),  # rating_bins [1, 3, 5]
        ([0, 0, 1, 2, 2] * 2, [[0, 1], [2], [3, 4]]),  # rating_bins [1, 3, 4, 5]
    ):
        assert rating_groups(stars, labels) == groups
    with pytest.raises(ValueError, match="rating 3 occurs with labels 1 and 0"):
        rating_groups([3, 3, 1], [1, 0, 0])
    with pytest.raises(ValueError, match="ratings must be 1-5"):
        rating_groups([0, 5], [0, 1])
    with pytest.raises(ValueError, match="a label has no rating"):
        rating_groups([1, 2], [0, 2])


def test_an_unknown_target_names_the_param(tiny_bert, splits) -> None:
    with pytest.raises(ValueError, match=r"train_transformer\.target: 'stars' is not one of"):
        tt.train(PARAMS | {"base_model": str(tiny_bert), "target": "stars"}, *splits)


def test_training_twice_gives_equal_safetensors_bytes(tiny_bert, splits, tmp_path) -> None:
    params = PARAMS | {"base_model": str(tiny_bert)}
    meta = {"threshold": 0.5, "max_length": 16, "quantized": False, "n_classes": 2}
    digests = []
    for run in ("first", "second"):
        result = tt.train(params, *splits)
        save_transformer(result["model"], result["tokenizer"], tmp_path / run, meta)
        digests.append(file_digests(tmp_path / run))
    assert digests[0]["model.safetensors"] == digests[1]["model.safetensors"]
    assert digests[0] == digests[1]


def test_saved_files_do_not_depend_on_offline_mode(tiny_bert, tmp_path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    meta = {"threshold": 0.5, "max_length": 16, "quantized": False, "n_classes": 2}
    for offline in (True, False):
        tokenizer = AutoTokenizer.from_pretrained(tiny_bert, local_files_only=offline)
        model = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
        save_transformer(model, tokenizer, tmp_path / str(offline), meta)
    config = (tmp_path / "True" / "tokenizer_config.json").read_text()
    assert "local_files_only" not in config
    assert config == (tmp_path / "False" / "tokenizer_config.json").read_text()


def test_early_stopping_stops(tiny_bert, splits) -> None:
    # lr 0 never improves validation F1 after the first epoch: patience 1 stops at epoch 2.
    result = tt.train(PARAMS | {"base_model": str(tiny_bert), "epochs": 6, "lr": 0.0}, *splits)
    assert len(result["history"]) == 2
    assert result["best_epoch"] == 1


def test_sorted_and_unsorted_batches_agree(tiny_bert) -> None:
    predictor_dir = tiny_bert
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(predictor_dir)
    tokenizer = AutoTokenizer.from_pretrained(predictor_dir)
    texts = ["good", "the shuttle is very very good", "bad shuttle", "", "nice"]
    np.testing.assert_allclose(
        probabilities(model, tokenizer, texts, 16, batch_size=2),
        probabilities(model, tokenizer, texts, 16, batch_size=2, sort=False),
        atol=1e-5,
    )


def test_missing_base_model_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not a Hugging Face model directory"):
        base_model_dir(str(tmp_path))


@pytest.mark.slow
def test_real_minilm_fine_tunes_on_64_texts(splits, tmp_path) -> None:
    train, val = splits
    df = pd.read_parquet(train)
    pd.concat([df, df, df]).head(64).to_parquet(tmp_path / "train64.parquet")
    result = tt.train(
        PARAMS | {"lr": 5e-5, "batch_size": 16, "max_length": 32}, tmp_path / "train64.parquet", val
    )
    assert result["model"].config.hidden_size == 384
    assert result["history"][0]["train_loss"] > 0


@pytest.mark.slow
def test_training_gives_the_same_bytes_whatever_cpu_the_caller_names(
    tiny_bert, splits, tmp_path
) -> None:
    """The stage pins its numeric paths itself: run with the caller's environment asking for
    AVX-512 kernels, for the scalar ones, or for nothing, it trains the same bytes."""
    root = copy_project(tmp_path / "copy")
    prepared = root / "data" / "prepared"
    for split, name in zip(splits, ("train", "val"), strict=True):
        shutil.copy(split, prepared / f"{name}.parquet")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train_transformer"] = PARAMS | {"base_model": str(tiny_bert), "epochs": 2}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    digests = {}
    for capability in ("avx512", "default", None):
        env = project_env(root)
        env.pop("ATEN_CPU_CAPABILITY", None)
        if capability:
            env["ATEN_CPU_CAPABILITY"] = capability
        subprocess.run(
            [sys.executable, "-m", "stages.train_transformer"], cwd=root, env=env, check=True
        )
        model_dir = root / "models" / "transformer"
        numerics = read_meta(model_dir)["cpu_numerics"]
        assert numerics.pop("aten_capability_used") == "AVX2" or platform.machine() != "x86_64"
        assert numerics == cpu_pins(2)
        digests[capability] = file_digests(model_dir)
    assert {"model.safetensors", "model.onnx", "model.int8.onnx"} <= set(digests[None])
    assert digests["avx512"] == digests["default"] == digests[None]


def batching_cost(batches, lengths, overhead: int) -> int:
    return sum(overhead + len(b) * max(lengths[i] for i in b) for b in batches)


@given(
    lengths=st.lists(st.integers(1, 128), min_size=1, max_size=8),
    max_rows=st.integers(1, 8),
    overhead=st.integers(0, 200),
)
def test_length_batches_cover_every_text_once_at_least_cost(lengths, max_rows, overhead) -> None:
    from sentiment.models.onnx_backend import length_batches

    batches = length_batches(lengths, max_rows, overhead)
    assert sorted(i for b in batches for i in b.tolist()) == list(range(len(lengths)))
    assert all(1 <= len(b) <= max_rows for b in batches)
    # Brute force over every split of the length order into runs of at most max_rows.
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    splits = (split_at(order, c) for c in itertools.product([0, 1], repeat=len(order) - 1))
    best = min(
        batching_cost(runs, lengths, overhead)
        for runs in splits
        if all(len(r) <= max_rows for r in runs)
    )
    assert batching_cost(batches, lengths, overhead) == best


def split_at(order: list[int], cuts) -> list[list[int]]:
    runs, run = [], [order[0]]
    for i, cut in zip(order[1:], cuts, strict=True):
        if cut:
            runs.append(run)
            run = []
        run.append(i)
    return [*runs, run]


def test_length_batches_trade_padding_against_passes() -> None:
    from sentiment.models.onnx_backend import length_batches

    lengths = [4, 5, 120, 6, 7]
    # A pass costs nothing: a pass per text, nothing padded.
    assert [b.tolist() for b in length_batches(lengths, 8, 0)] == [[0], [1], [3], [4], [2]]
    # A pass costs a lot: one pass, everything padded to 120 tokens.
    assert len(length_batches(lengths, 8, 10_000)) == 1
    # In between, the long review is scored apart from the short ones.
    assert [sorted(b.tolist()) for b in length_batches(lengths, 8, 64)] == [[0, 1, 3, 4], [2]]
