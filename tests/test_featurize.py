"""featurize: train-only fit, negations kept, saved without pickle, matrices for tune."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sentiment.features.vectorizer import make_vectorizer, stop_words
from sentiment.models.trust import load_skops
from sentiment.tracking import dvc_md5
from stages.featurize import featurize
from tests.conftest import REPO, project_env, sh, split_files

PARAMS = {
    "emoji": "demojize",
    "stem": False,
    "negation": False,
    "stop_words": "none",
    "word_ngram_max": 2,
    "char_ngrams": False,
    "char_ngram_range": [2, 4],
    "min_df": 1,
    "max_df": 1.0,
    "max_features": None,
    "sublinear_tf": True,
}


def test_english_stop_words_keep_negations() -> None:
    words = set(stop_words("english"))
    assert {"the", "a"} <= words
    assert not {"not", "no", "nor", "never"} & words
    assert stop_words("none") is None
    with pytest.raises(ValueError, match="stop_words"):
        stop_words("french")


def test_vocabulary_has_negation_bigrams_and_emoji_words() -> None:
    vectorizer = make_vectorizer(PARAMS).fit(["not good 👍", "very good"])
    vocab = set(vectorizer.get_feature_names_out())
    assert {"not good", "thumbs_up", "not"} <= vocab


def test_char_ngrams_join_word_features() -> None:
    union = make_vectorizer(PARAMS | {"char_ngrams": True}).fit(["good", "bad"])
    names = union.get_feature_names_out()
    assert any(n.startswith("words__") for n in names)
    assert any(n.startswith("chars__") for n in names)


def test_featurize_fits_on_train_only_and_saves_without_pickle(tmp_path: Path) -> None:
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    splits = {
        "train": ["good shuttle", "bad shuttle", "good"],
        "val": ["unseenword good"],
        "test": ["bad"],
    }
    for split, texts in splits.items():
        pd.DataFrame({"text": texts, "label": [1] * len(texts)}).to_parquet(
            prepared / f"{split}.parquet"
        )
    summary = featurize(split_files(prepared), tmp_path / "features", PARAMS)
    out = tmp_path / "features"
    vectorizer = load_skops(out / "vectorizer.skops")
    assert "unseenword" not in vectorizer.vocabulary_
    assert summary["n_features"] == len(vectorizer.vocabulary_)
    val = sp.load_npz(out / "val.npz")
    assert val.shape == (1, summary["n_features"])
    assert np.load(out / "train_labels.npy").tolist() == [1, 1, 1]
    assert not list(tmp_path.glob(".features.*")), "no temporary directory left behind"


@pytest.mark.slow
def test_featurize_twice_gives_byte_identical_outputs(tmp_path: Path) -> None:
    """Same inputs, same bytes, same DVC md5: a re-run of featurize re-runs nothing after it.

    Two processes (object ids and string hashes differ), two seconds apart (zip timestamps).
    """
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    for split in ("train", "val", "test"):
        texts = ["good shuttle 👍", "not good at all", "bad, broken", "very nice"]
        frame = pd.DataFrame({"text": texts, "label": [1, 0, 0, 1]})
        frame.to_parquet(prepared / f"{split}.parquet")
    code = (
        "import sys, json; from pathlib import Path; from stages.featurize import featurize; "
        "featurize({s: Path(sys.argv[1]) / f'{s}.parquet' for s in ('train', 'val', 'test')}, "
        "Path(sys.argv[2]), json.loads(sys.argv[3]))"
    )
    params = json.dumps(PARAMS | {"char_ngrams": True, "stop_words": "english"})
    for out in ("first", "second"):
        subprocess.run(
            [sys.executable, "-c", code, str(prepared), str(tmp_path / out), params],
            check=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        time.sleep(2.1)
    assert dvc_md5(tmp_path / "first") == dvc_md5(tmp_path / "second")
    assert load_skops(tmp_path / "second" / "vectorizer.skops").transform(["good"]).shape[0] == 1


@pytest.mark.slow
def test_a_param_changed_and_changed_back_reruns_nothing(pipeline_copy: Path) -> None:
    """min_df 1 -> 3 re-runs featurize; back to 1 restores its outputs from DVC's run cache.

    (3, not 2: test_tracking's experiment sets 2 and must find no run-cache entry for it.)
    """
    params = pipeline_copy / "params.yaml"
    original = params.read_text()
    assert "  min_df: 1\n" in original
    try:
        params.write_text(original.replace("  min_df: 1\n", "  min_df: 3\n"))
        assert "Running stage 'featurize'" in sh(pipeline_copy, "dvc", "repro", "featurize").stdout
    finally:
        params.write_text(original)
    back = sh(pipeline_copy, "dvc", "repro", "featurize").stdout
    assert "Running stage" not in back
    assert "Stage 'featurize' is cached - skipping run" in back
    assert "changed" not in sh(pipeline_copy, "dvc", "status", "featurize").stdout


@pytest.mark.slow
def test_after_a_failed_stage_checkout_restores_the_last_good_outputs(pipeline_copy: Path) -> None:
    """DVC deletes a stage's outputs (metrics too) before running it; a failure leaves none."""
    params = pipeline_copy / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("  emoji: demojize", "  emoji: sideways"))
        failed = subprocess.run(
            ["dvc", "repro", "featurize"],
            cwd=pipeline_copy,
            env=project_env(pipeline_copy),
            capture_output=True,
            text=True,
        )
    finally:
        params.write_text(original)
    assert failed.returncode != 0 and "emoji mode must be one of" in failed.stderr
    assert not (pipeline_copy / "data" / "features").exists()
    assert not (pipeline_copy / "reports" / "featurize" / "summary.json").exists()
    sh(pipeline_copy, "dvc", "checkout", "featurize")  # cached outputs
    sh(
        pipeline_copy, "git", "checkout", "--", "reports/featurize/summary.json"
    )  # cache: false, in git
    assert "changed" not in sh(pipeline_copy, "dvc", "status", "featurize").stdout
    assert sh(pipeline_copy, "git", "status", "--porcelain").stdout == ""
