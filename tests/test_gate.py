"""gate: the decision rule (property-tested) and promotion on a real MLflow registry + BentoML."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import bentoml
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from stages import gate
from stages.model_files import UntrustedModelError, file_digests
from stages.predictor import save_classical
from tests.conftest import REPO

POSITIVE = ["good", "great", "nice", "super", "lovely", "fine"]
NEGATIVE = ["bad", "poor", "awful", "worst", "broken", "fake"]
PARAMS = {
    "registered_model": "test-sentiment",
    "bento_model": "sentiment",
    "min_delta": 0.005,
    "min_f1": 0.5,
    "max_latency_ms_per_1k": 60_000,
    "behaviour_tolerance": 1.0,
}

rates = st.floats(0, 1, allow_nan=False)
assessments = st.fixed_dictionaries(
    {
        "macro_f1": rates,
        "latency_ms_per_1k": st.floats(0, 10_000, allow_nan=False),
        "behaviour": st.fixed_dictionaries({"negation": rates, "emoji": rates}),
    }
)
gate_params = st.fixed_dictionaries(
    {
        "min_delta": st.floats(0, 0.1, allow_nan=False),
        "min_f1": rates,
        "max_latency_ms_per_1k": st.floats(0, 10_000, allow_nan=False),
        "behaviour_tolerance": st.floats(0, 0.5, allow_nan=False),
    }
)


@given(candidate=assessments, production=st.none() | assessments, params=gate_params)
def test_never_promotes_below_production_plus_delta_or_floor(candidate, production, params):
    decision = gate.decide(candidate, production, params)
    if decision["promoted"]:
        assert candidate["macro_f1"] >= params["min_f1"]
        assert candidate["latency_ms_per_1k"] <= params["max_latency_ms_per_1k"]
        if production is not None:
            assert candidate["macro_f1"] >= production["macro_f1"] + params["min_delta"] - 1e-9
    assert decision["promoted"] == all(r["passed"] for r in decision["rules"].values())


def test_without_production_only_floor_and_budgets_apply() -> None:
    candidate = {"macro_f1": 0.81, "latency_ms_per_1k": 10.0, "behaviour": {"negation": 0.0}}
    decision = gate.decide(candidate, None, PARAMS | {"min_f1": 0.8})
    assert decision["promoted"] and set(decision["rules"]) == {"min_f1", "latency"}


def make_model(path: Path, words_known: int) -> Path:
    """A classical model that has seen only the first ``words_known`` words of each class."""
    texts = [f"{w} shuttle" for w in POSITIVE[:words_known] + NEGATIVE[:words_known]] * 5
    labels = ([1] * words_known + [0] * words_known) * 5
    pipeline = Pipeline(
        [("features", TfidfVectorizer()), ("classifier", LogisticRegression(C=100))]
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


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    project_copy(tmp_path, monkeypatch)
    gate.configure()
    return MlflowClient()


def alias(client: MlflowClient, name: str) -> str:
    return str(client.get_model_version_by_alias(PARAMS["registered_model"], name).version)


def served_version() -> str:
    return bentoml.models.get("sentiment:latest").info.labels["registry_version"]


def test_promotion_lifecycle(registry: MlflowClient, monkeypatch: pytest.MonkeyPatch) -> None:
    name = PARAMS["registered_model"]
    make_model(gate.CANDIDATE_DIR, 4)
    first = gate.run_stage(PARAMS)
    assert first["promoted"] and first["production"] is None
    assert alias(registry, "production") == "1"
    assert served_version() == "1"
    metadata = bentoml.models.get("sentiment:latest").info.metadata
    assert {"test.macro_f1", "git.commit", "params.hash"} <= set(metadata)
    version = registry.get_model_version(name, "1")  # tagged with what made it
    assert {"data.md5.test", "params.hash", "git.commit", "test.macro_f1"} <= set(version.tags)
    recorded = json.loads(version.tags[gate.DIGESTS_TAG])  # and with its files' sha256
    assert recorded == file_digests(gate.CANDIDATE_DIR) == metadata["sha256"]
    assert set(recorded) == {"meta.json", "model.skops"}

    make_model(gate.CANDIDATE_DIR, 2)  # worse: kept
    worse = gate.run_stage(PARAMS)
    assert not worse["promoted"] and not worse["rules"]["min_delta"]["passed"]
    assert worse["production"]["version"] == "1"
    assert alias(registry, "production") == "1"

    make_model(gate.CANDIDATE_DIR, 6)  # better, but inside a DVC experiment: decided only
    with monkeypatch.context() as patch:
        patch.setenv("DVC_EXP_NAME", "sweep-1")
        trial = gate.run_stage(PARAMS)
    assert trial["would_promote"] and not trial["promoted"]
    assert alias(registry, "production") == "1"

    better = gate.run_stage(PARAMS)  # the same, from the workspace: promoted
    assert better["promoted"] and better["candidate_version"] == "2"
    assert alias(registry, "production") == "2"
    assert alias(registry, "previous-production") == "1"
    assert served_version() == "2"

    again = gate.run_stage(PARAMS)  # nothing changed: kept, nothing moves
    assert not again["promoted"]
    assert alias(registry, "production") == "2"
    n_bento_models = len(bentoml.models.list("sentiment"))

    def broken_export(*args, **kwargs):
        raise OSError("disk full while exporting")

    with monkeypatch.context() as patch:  # fail between registration and the alias move
        patch.setattr(gate, "export_to_bentoml", broken_export)
        patch.setattr(gate, "decide", lambda *a: {"promoted": True, "rules": {}})
        with pytest.raises(OSError, match="disk full"):
            gate.run_stage(PARAMS)
    assert alias(registry, "production") == "2"
    assert sorted(str(v.version) for v in registry.search_model_versions(f"name='{name}'")) == [
        "1",
        "2",
    ]
    assert len(bentoml.models.list("sentiment")) == n_bento_models

    rolled = gate.rollback(PARAMS)
    assert rolled["production"] == "1"
    assert alias(registry, "production") == "1"
    assert served_version() == "1"

    gate.export_production(PARAMS)  # image builds export what the registry calls production
    assert served_version() == "1"


def test_the_gate_refuses_a_production_model_changed_in_the_registry(
    registry: MlflowClient,
) -> None:
    """The production model is scored from its registry files after checking their sha256,
    with this project's code: a changed artifact stops the gate, naming the file."""
    make_model(gate.CANDIDATE_DIR, 4)
    gate.run_stage(PARAMS)
    uri = registry.get_model_version_download_uri(PARAMS["registered_model"], "1")
    (stored,) = Path(uri.removeprefix("file://")).rglob("model.skops")
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    with pytest.raises(UntrustedModelError, match=r"model files differ: model\.skops has sha256"):
        gate.run_stage(PARAMS)
