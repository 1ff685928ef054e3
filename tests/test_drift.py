"""drift: false alarms stay rare, a real domain shift is found, errors are clear."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from sentiment import paths, settings
from sentiment.evaluation.behaviour import ANTONYMS, swap_antonyms
from sentiment.models.predictor import load_predictor, save_classical
from sentiment.monitoring import __main__ as drift_log
from sentiment.monitoring import detector, logs, statistics
from sentiment.monitoring import reference as references
from sentiment.monitoring import report as reports
from tests.conftest import REPO, flipkart, ood_set

PARAMS = {
    "reference_size": 600,
    "svd_components": 20,
    "window_size": 200,
    "min_window": 200,
    "permutations": 200,
    "alpha": 0.05,
    "retrain_after": 2,
    "seed": 11,
}


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory, raw_data: Path) -> dict:
    """Real Flipkart reviews at natural multiplicity: a reference sample, a held-out pool."""
    traffic = references.raw_traffic(flipkart(raw_data))
    train = traffic.drop_duplicates("text").sample(frac=1, random_state=0).iloc[:3000]
    model_dir = tmp_path_factory.mktemp("model") / "champion"
    pipeline = Pipeline(
        [("features", TfidfVectorizer()), ("classifier", LogisticRegression(max_iter=1000))]
    )
    save_classical(
        pipeline.fit(train["text"].tolist(), train["label"]),
        model_dir,
        {"threshold": 0.5, "n_classes": 2},
    )
    predictor = load_predictor(model_dir)
    # Reviews as traffic brings them: every raw row, repeats included.
    rows = traffic["text"].tolist()
    reference, held = references.build_reference(rows, predictor, PARAMS, holdout=2500)
    imdb = ood_set(raw_data, "imdb")
    return {
        "detector": detector.DriftDetector(reference, predictor, PARAMS),
        "reference": reference,
        "held": [rows[i] for i in held],
        "imdb": imdb["text"].tolist(),
    }


@pytest.mark.slow
def test_false_positive_rate_on_traffic_with_repeats(setting) -> None:
    """Null windows as the service sees them: held-out reviews drawn without replacement at
    their natural multiplicity ("Good" and "Nice product" arrive hundreds of times). A
    reference of distinct texts flagged every such window (score KS, word count, MMD)."""
    held = setting["held"]
    assert len(held) > 1.5 * len(set(held))  # the windows have repeats
    rng = np.random.default_rng(0)
    alarms = [
        setting["detector"].test_window(
            [held[i] for i in rng.choice(len(held), 200, replace=False)], seed=s
        )["drift_detected"]
        for s in range(60)
    ]
    assert np.mean(alarms) < 0.15


def test_imdb_window_is_detected(setting) -> None:
    result = setting["detector"].test_window(setting["imdb"][:200])
    assert result["drift_detected"] and result["status"] == "drift"
    assert set(result["tests"]) == {
        name for name, test in statistics.BATTERY.items() if not test.transformer_only
    }
    assert result["tests"]["oov_rate"]["effect"] > 0
    assert all(r["p_adjusted"] >= r["p_value"] for r in result["tests"].values())


def test_same_seed_same_p_values(setting) -> None:
    window = setting["held"][:250]
    first = setting["detector"].test_window(window, seed=5)["tests"]
    second = setting["detector"].test_window(window, seed=5)["tests"]
    assert first == second


def test_small_window_is_insufficient_data(setting) -> None:
    result = setting["detector"].test_window(setting["imdb"][:199])
    assert result == {
        "status": "insufficient data",
        "drift_detected": False,
        "n": 199,
        "min_window": 200,
    }


def test_holm_adjustment() -> None:
    adjusted = statistics.holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})


def test_mmd_p_value_includes_the_observed_statistic() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    _, p_value = statistics.mmd_permutation_test(x, x.copy(), 199, rng)
    assert 1 / 200 <= p_value <= 1


def test_retrain_rule_needs_consecutive_windows() -> None:
    flags = [{"drift_detected": d} for d in (True, False, True, True, False)]
    assert reports.windows_verdict(flags, 2) == {
        "windows": 5,
        "drifting": 3,
        "longest_drifting_run": 2,
        "retrain": True,
    }
    assert not reports.windows_verdict(flags, 3)["retrain"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("log.jsonl", '{"text": "ok"}\n{broken', "cannot read it as jsonl"),
        ("log.csv", "review,label\ngood,1\n", "no 'text' column"),
        ("log.txt", "good\n", "unsupported format"),
    ],
)
def test_malformed_input_is_a_clear_error(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        logs.read_current(path)


def test_a_directory_of_worker_logs_is_read_whole_in_time_order(tmp_path: Path) -> None:
    def record(second: int, text: str) -> str:
        return json.dumps({"timestamp": f"2026-11-25T10:00:{second:02d}+00:00", "text": text})

    (tmp_path / "predictions.worker-1.jsonl.1").write_text(record(1, "a") + "\n")
    (tmp_path / "predictions.worker-1.jsonl").write_text(record(4, "d") + "\n")
    (tmp_path / "predictions.worker-2.jsonl").write_text(record(2, "b") + "\n" + record(3, "c"))
    (tmp_path / "server.log").write_text("not a log of texts")
    assert logs.read_current(tmp_path) == ["a", "b", "c", "d"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"empty: no inference logs \(\*\.jsonl\) in it"):
        logs.read_current(empty)


@pytest.mark.slow
def test_cli_reads_the_inference_log_and_exits_by_verdict(setting, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    setting["reference"].save(paths.DRIFT_REFERENCE)
    monkeypatch.setattr(drift_log, "load_predictor", lambda _: setting["detector"].predictor)
    log = tmp_path / "predictions.jsonl"
    records = [
        {"timestamp": "t", "text": t, "label": "positive", "score": 0.9, "model_version": "1"}
        for t in setting["imdb"][:400]
    ]
    log.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    prom = tmp_path / "textfile" / "drift.prom"
    code = drift_log.check_log(log, PARAMS, tmp_path / "out" / "report.json", prometheus=prom)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["windows"] == 2 and report["retrain"]
    assert code == drift_log.EXIT_RETRAIN
    exposed = {
        (s.name, s.labels.get("test")): s.value
        for family in text_string_to_metric_families(prom.read_text())
        for s in family.samples
    }
    assert exposed[("sentiment_drift_retrain", None)] == 1
    last = report["windows_detail"][-1]["tests"]
    for test, result in last.items():
        assert exposed[("sentiment_drift_p_value", test)] == pytest.approx(result["p_adjusted"])
    quiet = tmp_path / "quiet.parquet"
    pd.DataFrame({"text": setting["held"][:200]}).to_parquet(quiet)
    assert drift_log.check_log(quiet, PARAMS, tmp_path / "q.json") in (
        drift_log.EXIT_NO_DRIFT,
        drift_log.EXIT_DRIFT,
    )
    assert drift_log.check_log(tmp_path / "missing.csv", PARAMS, tmp_path / "m.json") == (
        drift_log.EXIT_BAD_INPUT
    )


@pytest.mark.slow
def test_an_inference_log_is_the_monitoring_command_s_not_the_stage_s() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for command, refusal in (
        (["stages.drift", "--current", "log.jsonl"], "unrecognized arguments: --current"),
        (["sentiment.monitoring", "--prometheus", "drift.prom"], "required: --current"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True, env=env
        )
        assert done.returncode == 2
        assert refusal in done.stderr.strip().splitlines()[-1]
    assert not (REPO / "drift.prom").exists()


def test_a_window_predicted_all_one_class_is_flagged() -> None:
    reference = np.array([0] * 200 + [1] * 800)
    all_positive = statistics.label_share_test(reference, np.ones(500, dtype=int))
    assert all_positive["p_value"] < 1e-10 and all_positive["effect"] == pytest.approx(0.2)
    same_shares = statistics.label_share_test(reference, np.array([0] * 100 + [1] * 400))
    assert same_shares["p_value"] > 0.5
    assert statistics.label_share_test(np.ones(10, int), np.ones(10, int))["p_value"] == 1.0


@pytest.fixture(scope="module")
def transformer_setting(setting, raw_data: Path) -> dict:
    """The workspace's fine-tuned transformer (``make run`` trains it) as the champion, its
    reference rebuilt from the same rows, and the held-out pool's scores and embeddings."""
    model_dir = REPO / paths.TRANSFORMER
    if not (model_dir / "meta.json").is_file():
        if settings.setting("SENTIMENT_REQUIRE_MODELS"):
            pytest.fail(f"{model_dir}: no model (`make run` trains it)")
        pytest.skip(f"{model_dir}: no model here (`make run` trains it)")
    predictor = load_predictor(model_dir)
    rows = references.raw_traffic(flipkart(raw_data))["text"].tolist()
    reference, held_idx = references.build_reference(rows, predictor, PARAMS, holdout=2500)
    held = [rows[i] for i in held_idx]
    return {
        "detector": detector.DriftDetector(reference, predictor, PARAMS),
        "held": held,
        "scores": predictor.predict_proba(held)[:, -1],
        "embeddings": predictor.embeddings(held),
        "imdb": setting["imdb"],
    }


@pytest.mark.slow
def test_a_transformer_champion_adds_the_embedding_test_and_keeps_the_false_alarm_rate(
    transformer_setting,
) -> None:
    """Its own pooled vectors join the Holm family; null windows at natural multiplicity
    stay as rare false alarms for the family and for the new test alone."""
    detector, held = transformer_setting["detector"], transformer_setting["held"]
    rng = np.random.default_rng(1)
    windows = []
    for s in range(40):
        idx = rng.choice(len(held), 200, replace=False)
        windows.append(
            detector.test_window(
                [held[i] for i in idx],
                transformer_setting["scores"][idx],
                seed=s,
                embeddings=transformer_setting["embeddings"][idx],
            )
        )
    assert all("embedding_mmd" in w["tests"] for w in windows)
    assert np.mean([w["drift_detected"] for w in windows]) < 0.15
    assert np.mean([w["tests"]["embedding_mmd"]["drift"] for w in windows]) < 0.1
    imdb = detector.test_window(transformer_setting["imdb"][:200])  # scored and embedded here
    assert imdb["tests"]["embedding_mmd"]["drift"] and imdb["drift_detected"]
    report = Path(tempfile.mkdtemp()) / "report.md"  # the report says which test fired
    reports.write_report({"imdb": imdb}, report, report.parent / "plots")
    header, _, row = report.read_text().splitlines()[2:5]
    cells = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | "), strict=True))
    assert cells["embedding_mmd"].endswith("⚠")


def test_antonyms_keep_the_words_and_turn_the_meaning() -> None:
    assert swap_antonyms("Good product, not bad. I LOVE it") == "Bad product, not good. I HATE it"
    assert swap_antonyms("the goods arrived") == "the goods arrived"  # whole words only
    assert all(ANTONYMS[ANTONYMS[w]] in ANTONYMS for w in ANTONYMS)


def test_the_docs_count_and_name_the_battery() -> None:
    words = {6: "six", 7: "seven", 8: "eight", 9: "nine"}
    every = len(statistics.BATTERY)
    general = sum(not test.transformer_only for test in statistics.BATTERY.values())
    docs = (REPO / "docs" / "drift.md").read_text()
    assert f"Each window gets {words[general]} tests, {words[every]} for a transformer" in docs
    assert all(f"`{name}`" in docs for name in statistics.TESTS)
