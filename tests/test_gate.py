"""gate: the decision rule (property-tested), acting on it idempotently, and a complete undo,
on a real MLflow registry (SQLite, and a tracking server on loopback) with a real BentoML store."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import bentoml
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import Pipeline

from sentiment import paths, tracking
from sentiment.models.predictor import save_classical
from sentiment.models.trust import UntrustedModelError, file_digests
from sentiment.registry import decision as rules
from sentiment.registry import promotion, store
from stages import gate
from tests.conftest import REPO, free_port

POSITIVE = ["good", "great", "nice", "super", "lovely", "fine"]
NEGATIVE = ["bad", "poor", "awful", "worst", "broken", "fake"]
PARAMS = {
    "registered_model": "test-sentiment",
    "bento_model": "sentiment",
    "min_delta": 0.005,
    "min_f1": 0.5,
    "max_size_mb": 10,
    "behaviour_tolerance": 1.0,
    "confidence": 0.95,
    "bootstrap_resamples": 500,
    "seed": 42,
}

rates = st.floats(0, 1, allow_nan=False)
assessments = st.fixed_dictionaries(
    {
        "macro_f1": rates,
        "size_mb": st.floats(0, 1_000, allow_nan=False),
        "behaviour": st.fixed_dictionaries({"negation": rates, "emoji": rates}),
    }
)
comparisons = st.fixed_dictionaries(
    {"delta": st.floats(-1, 1, allow_nan=False), "ci_low": st.floats(-1, 1, allow_nan=False)}
)
gate_params = st.fixed_dictionaries(
    {
        "min_delta": st.floats(0, 0.1, allow_nan=False),
        "min_f1": rates,
        "max_size_mb": st.floats(0, 1_000, allow_nan=False),
        "behaviour_tolerance": st.floats(0, 0.5, allow_nan=False),
    }
)


@given(candidate=assessments, production=assessments, comparison=comparisons, params=gate_params)
def test_never_promotes_without_a_paired_gain(candidate, production, comparison, params):
    decision = rules.decide(candidate, production, comparison, params)
    if decision["promote"]:
        assert candidate["macro_f1"] >= params["min_f1"]
        assert candidate["size_mb"] <= params["max_size_mb"]
        assert comparison["delta"] >= params["min_delta"] and comparison["ci_low"] > 0
    assert decision["promote"] == all(r["passed"] for r in decision["rules"].values())


def test_without_production_only_floor_and_budgets_apply() -> None:
    candidate = {"macro_f1": 0.81, "size_mb": 10.0, "behaviour": {"negation": 0.0}}
    decision = rules.decide(candidate, None, None, PARAMS | {"min_f1": 0.8})
    assert decision["promote"] and set(decision["rules"]) == {"min_f1", "size"}


@given(labels=st.lists(st.integers(0, 2), min_size=2, max_size=60), data=st.data())
def test_resampled_macro_f1_is_sklearns(labels: list[int], data) -> None:
    predicted = data.draw(st.lists(st.integers(0, 2), min_size=len(labels), max_size=len(labels)))
    y, p = np.array([labels]), np.array([predicted])
    expected = f1_score(labels, predicted, average="macro", zero_division=0)
    classes = np.union1d(y, p)
    assert rules.resampled_macro_f1(y, p, classes)[0] == pytest.approx(expected)


@given(
    labels=st.lists(st.integers(0, 1), min_size=20, max_size=300),
    flips=st.floats(0, 0.5),
    seed=st.integers(0, 2**16),
)
def test_identical_models_are_never_promoted(labels: list[int], flips: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    predicted = [1 - y if rng.random() < flips else y for y in labels]
    comparison = rules.paired_bootstrap(labels, predicted, predicted, PARAMS | {"seed": seed})
    assert comparison["delta"] == 0 and comparison["ci_low"] <= 0
    candidate = {"macro_f1": 1.0, "size_mb": 1.0, "behaviour": {}}
    assert not rules.decide(candidate, candidate, comparison, PARAMS)["promote"]


@given(seed=st.integers(0, 2**16))
def test_a_clearly_better_model_is_promoted(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 400).tolist()
    worse = [1 - y if rng.random() < 0.3 else y for y in labels]
    better = [1 - y if rng.random() < 0.05 else y for y in labels]
    comparison = rules.paired_bootstrap(labels, better, worse, PARAMS | {"seed": seed})
    assert comparison["delta"] > 0.1 and comparison["ci_low"] > 0
    candidate = {"macro_f1": 0.95, "size_mb": 1.0, "behaviour": {}}
    assert rules.decide(candidate, candidate, comparison, PARAMS)["promote"]


def make_model(path: Path, words_known: int, c: float = 100) -> Path:
    """A classical model that has seen only the first ``words_known`` words of each class."""
    texts = [f"{w} shuttle" for w in POSITIVE[:words_known] + NEGATIVE[:words_known]] * 5
    labels = ([1] * words_known + [0] * words_known) * 5
    pipeline = Pipeline(
        [("features", TfidfVectorizer()), ("classifier", LogisticRegression(C=c))]
    ).fit(texts, labels)
    if path.exists():
        shutil.rmtree(path)
    save_classical(pipeline, path, {"threshold": 0.5, "n_classes": 2, "candidate": "classical"})
    return path


def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work in ``tmp_path``: dvc.yaml, gate params, a tiny test split, own MLflow/BentoML."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text()) | {"gate": PARAMS}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    monkeypatch.delenv("DVC_ROOT", raising=False)
    test = pd.DataFrame(
        {
            "text": [f"{w} shuttle" for w in POSITIVE + NEGATIVE] * 3,
            "label": ([1] * 6 + [0] * 6) * 3,
        }
    )
    Path("data/prepared").mkdir(parents=True)
    test.to_parquet("data/prepared/test.parquet")


@dataclass
class Registry:
    client: MlflowClient
    params: dict

    def aliases(self) -> dict[str, str]:
        model = self.client.get_registered_model(self.params["registered_model"])
        return {alias: str(version) for alias, version in model.aliases.items()}

    def alias(self, name: str) -> str | None:
        return self.aliases().get(name)

    def state(self) -> tuple:
        """Versions, aliases and BentoML models: what a failed step must leave as it was."""
        name = self.params["registered_model"]
        try:
            aliases = self.aliases()
        except mlflow.exceptions.MlflowException:
            aliases = None
        versions = sorted(
            int(v.version) for v in self.client.search_model_versions(f"name='{name}'")
        )
        bentos = sorted(str(m.tag) for m in bentoml.models.list("sentiment"))
        return versions, aliases, bentos


@pytest.fixture(params=["sqlite", "server"])
def registry(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """test_gate's project copy on the SQLite registry, or on a tracking server on loopback
    (one registered model name per test; tests/test_registry_server.py adds credentials)."""
    project_copy(tmp_path, monkeypatch)
    params = dict(PARAMS)
    if request.param == "server":
        request.getfixturevalue("plain_tracking_server").use(monkeypatch)
        params["registered_model"] = f"test-sentiment-{uuid.uuid4().hex[:8]}"
    tracking.configure()
    return Registry(MlflowClient(), params)


def served_version() -> str:
    return bentoml.models.get("sentiment:latest").info.labels["registry_version"]


def decide_and_act(params: dict) -> tuple[dict, str]:
    """What `make run` does after `dvc repro` re-ran the gate stage."""
    return gate.run_stage(params), promotion.act(params)


@pytest.mark.slow
def test_decide_then_act(registry: Registry) -> None:
    params, name = registry.params, registry.params["registered_model"]
    make_model(paths.CHAMPION, 4)
    decision, acted = decide_and_act(params)
    assert decision["promote"] and decision["production"] is None
    assert acted.startswith("promoted as version 1")
    assert registry.alias("production") == "1" and served_version() == "1"
    metadata = bentoml.models.get("sentiment:latest").info.metadata
    assert {"test.macro_f1", "git.commit", "params.hash"} <= set(metadata)
    version = registry.client.get_model_version(name, "1")  # tagged with what made it
    assert {"data.md5.test", "params.hash", "git.commit", "model.md5"} <= set(version.tags)
    recorded = json.loads(version.tags[store.DIGESTS_TAG])  # and with its files' sha256
    assert recorded == file_digests(paths.CHAMPION) == metadata["sha256"]
    assert set(recorded) == {"meta.json", "model.skops"}

    before = registry.state()  # (c) nothing changed: nothing moves
    assert promotion.act(params).startswith("version 1 is already production; BentoML store up to")
    assert registry.state() == before

    make_model(paths.CHAMPION, 2)  # (d) worse: kept
    decision, acted = decide_and_act(params)
    assert not decision["promote"] and not decision["rules"]["paired_ci"]["passed"]
    assert decision["production"]["version"] == "1" and acted.startswith("kept production")
    assert registry.state() == before

    make_model(paths.CHAMPION, 4, c=50)  # (e) other bytes, same predictions: noise
    decision, acted = decide_and_act(params)
    assert decision["comparison"]["delta"] == 0 and not decision["promote"]
    assert registry.state() == before

    make_model(paths.CHAMPION, 6)  # better on the same rows: promoted
    decision, acted = decide_and_act(params)
    assert decision["promote"] and decision["comparison"]["ci_low"] > 0
    assert acted.startswith("promoted as version 2")
    assert registry.alias("production") == "2" and registry.alias("previous-production") == "1"
    assert served_version() == "2"

    rolled = promotion.rollback(params)
    assert rolled["production"] == "1" and registry.alias("production") == "1"
    assert served_version() == "1"
    promotion.export_production(params)  # image builds export what the registry calls production
    assert served_version() == "1"
    # drift scores traffic with the model that served it: production's checked files
    assert promotion.download_production(params, Path("production")) == "version 1 -> production"
    assert file_digests(Path("production")) == recorded


@pytest.mark.slow
def test_a_decision_is_acted_on_when_dvc_skips_the_gate(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(a) outputs up to date, empty registry and store; (b) a decision made earlier (e.g.
    restored by `dvc exp apply`) is acted on later without re-running the stage."""
    params = registry.params
    make_model(paths.CHAMPION, 4)
    decide_and_act(params)
    make_model(paths.CHAMPION, 6)
    assert gate.run_stage(params)["promote"]  # (b) decided, not acted on yet
    assert registry.state()[0] == [1]
    assert promotion.act(params).startswith("promoted as version 2")

    # (a) the same outputs, a new team member's empty registry and BentoML store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "empty-bentoml"))
    tracking.configure()
    empty = Registry(MlflowClient(), params)
    acted = promotion.act(params)
    assert acted.startswith("promoted as version 1") and "decided again" in acted
    assert empty.alias("production") == "1" and served_version() == "1"
    assert promotion.act(params).startswith("version 1 is already production")


@pytest.mark.slow
def test_act_refuses_a_champion_the_decision_was_not_made_on(registry: Registry) -> None:
    make_model(paths.CHAMPION, 4)
    gate.run_stage(registry.params)
    make_model(paths.CHAMPION, 6)
    decided_on = r"not the model reports/gate/decision\.json decided on"
    with pytest.raises(UntrustedModelError, match=decided_on):
        promotion.act(registry.params)


def fail_at(step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make one promotion or rollback step raise."""

    def boom(*args, **kwargs):
        raise RuntimeError(f"injected failure at {step}")

    if step == "log_model":
        monkeypatch.setattr(promotion, "log_model", boom)
    elif step == "register":
        monkeypatch.setattr(promotion.mlflow, "register_model", boom)
    elif step == "export":  # promote exports directly, rollback through store.export_version
        monkeypatch.setattr(promotion, "export_to_bentoml", boom)
        monkeypatch.setattr(store, "export_to_bentoml", boom)
    elif step in ("production", "previous-production"):
        original = MlflowClient.set_registered_model_alias

        def set_alias(self, name, alias, version):
            if alias == step:
                boom()
            return original(self, name, alias, version)

        monkeypatch.setattr(MlflowClient, "set_registered_model_alias", set_alias)
    elif step == "unreachable":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def two_versions(registry: Registry) -> None:
    """Production 2, previous-production 1, and a better candidate decided on."""
    for words in (2, 4):
        make_model(paths.CHAMPION, words)
        decide_and_act(registry.params)
    make_model(paths.CHAMPION, 6)
    assert gate.run_stage(registry.params)["promote"]


def assert_failure_changes_nothing(
    registry: Registry, step: str, command, monkeypatch: pytest.MonkeyPatch
) -> tuple:
    """Two versions in place, ``command`` failing at ``step``: the state is as before."""
    two_versions(registry)
    before = registry.state()
    with monkeypatch.context() as patch:
        fail_at(step, patch)
        with pytest.raises(Exception) as failed:
            command(registry.params)
    said = f"{failed.value} (cause: {failed.value.__cause__})"
    assert re.search(r"injected failure|onnect|refused", said), said
    if isinstance(failed.value, store.StepFailed):  # says what holds: the old production
        assert "every step undone: production is still version 2" in said
    tracking.configure()
    assert registry.state() == before
    return before


@pytest.mark.parametrize(
    "step", ["log_model", "register", "export", "previous-production", "production", "unreachable"]
)
@pytest.mark.slow
def test_a_failed_promotion_leaves_everything_as_it_was(
    step: str, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = assert_failure_changes_nothing(registry, step, promotion.act, monkeypatch)
    assert before[1] == {"production": "2", "previous-production": "1"}


@pytest.mark.parametrize("step", ["export", "production", "previous-production", "unreachable"])
@pytest.mark.slow
def test_a_failed_rollback_leaves_everything_as_it_was(
    step: str, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_failure_changes_nothing(registry, step, promotion.rollback, monkeypatch)


@pytest.mark.slow
def test_an_undo_that_fails_still_undoes_the_rest_and_says_what_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_copy(tmp_path, monkeypatch)
    tracking.configure()
    registry = Registry(MlflowClient(), dict(PARAMS))
    two_versions(registry)
    n_bentos = len(registry.state()[2])
    fail_at("production", monkeypatch)
    monkeypatch.setattr(MlflowClient, "delete_model_version", lambda *a: 1 / 0)  # registry down
    left = r"could not undo \(left over, unused\): version 3 \(division by zero\); "
    with pytest.raises(store.UndoError, match=left + "production is still version 2"):
        promotion.act(registry.params)
    assert len(registry.state()[2]) == n_bentos  # the local store was still cleaned up


@pytest.mark.slow
def test_the_gate_refuses_a_production_model_changed_in_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production model is scored from its registry files after checking their sha256,
    with this project's code: a changed artifact stops the gate, naming the file."""
    project_copy(tmp_path, monkeypatch)
    tracking.configure()
    client = MlflowClient()
    make_model(paths.CHAMPION, 4)
    decide_and_act(PARAMS)
    uri = client.get_model_version_download_uri(PARAMS["registered_model"], "1")
    (stored,) = Path(uri.removeprefix("file://")).rglob("model.skops")
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    with pytest.raises(UntrustedModelError, match=r"model files differ: model\.skops has sha256"):
        gate.run_stage(PARAMS)
