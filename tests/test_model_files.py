"""Model files: only the project's own types load; files that differ from their record don't."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import yaml
from sklearn.calibration import CalibratedClassifierCV
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from sentiment.features.vectorizer import make_vectorizer
from sentiment.models.predictor import load_predictor, save_classical
from sentiment.models.search import FAMILIES, suggest_classifier, with_probabilities
from sentiment.models.trust import (
    TRUSTED_TYPES,
    UntrustedModelError,
    digest_mismatches,
    file_digests,
    load_skops,
    save_skops,
    skops_types,
    verify_digests,
)
from sentiment.monitoring.reference import build_reference
from tests.conftest import REPO

TEXTS = ["good shuttle", "bad one", "nice 👍", "not good at all", "great", "awful, broken"] * 5
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
PAYLOAD = "open('pwned.txt', 'w').write('owned')"


def crafted_pipeline(with_classifier: bool) -> Pipeline:
    """The attack: str -> eval -> max -> exec turns the request text into running code."""
    steps = [(name, FunctionTransformer()) for name in ("str", "eval", "max", "exec")]
    if with_classifier:
        steps.append(("classifier", DummyClassifier()))
    pipeline = Pipeline(steps).fit(["a", "b"], [0, 1])
    return pipeline.set_params(
        str__func=builtins.str, eval__func=builtins.eval, max__func=max, exec__func=builtins.exec
    )


@pytest.mark.parametrize("with_classifier", [True, False])
def test_crafted_pipeline_is_refused_before_anything_runs(
    with_classifier: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model_dir = tmp_path / "classical"
    save_classical(crafted_pipeline(with_classifier), model_dir, {"threshold": 0.5})
    with pytest.raises(UntrustedModelError) as refused:
        load_predictor(model_dir).predict_proba([PAYLOAD])
    message = str(refused.value)
    assert "\n" not in message
    for name in ("builtins.eval", "builtins.exec", "builtins.max", "FunctionTransformer"):
        assert name in message
    assert ("DummyClassifier" in message) == with_classifier
    assert not (tmp_path / "pwned.txt").exists()


@pytest.mark.slow
def test_the_mlflow_pyfunc_path_refuses_it_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate loads production through MLflow's pyfunc wrapper: same refusal."""
    from sentiment.models.mlflow_model import log_model

    monkeypatch.chdir(tmp_path)
    model_dir = tmp_path / "classical"
    save_classical(crafted_pipeline(True), model_dir, {"threshold": 0.5})
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("attack")
    with mlflow.start_run():
        info = log_model(model_dir)
    with pytest.raises(UntrustedModelError, match=r"builtins\.exec"):
        mlflow.pyfunc.load_model(info.model_uri)
    assert not (tmp_path / "pwned.txt").exists()


def classical_variants():
    """Every classifier tune can produce (calibrated where tune calibrates), binary and ternary."""
    families = {
        "logreg": {"logreg_class_weight": None, "logreg_C": 1.0},
        "linear_svc": {"linear_svc_class_weight": "balanced", "linear_svc_C": 1.0},
        "complement_nb": {"complement_nb_alpha": 0.1},
        **{
            f"nbsvm-{binarize}": {
                "nbsvm_class_weight": "balanced",
                "nbsvm_alpha": 1.0,
                "nbsvm_C": 1.0,
                "nbsvm_binarize": binarize,
            }
            for binarize in (True, False)
        },
        **{
            f"sgd-{loss}": {"sgd_class_weight": None, "sgd_loss": loss, "sgd_alpha": 1e-4}
            for loss in ("hinge", "log_loss", "modified_huber")
        },
    }
    assert {name.split("-")[0] for name in families} == set(FAMILIES)
    for name, choice in families.items():
        for n_classes in (2, 3):
            yield name, choice | {"classifier": name.split("-")[0]}, n_classes


@pytest.mark.parametrize(("name", "choice", "n_classes"), list(classical_variants()))
def test_every_model_the_pipeline_produces_still_loads(
    name: str, choice: dict, n_classes: int, tmp_path: Path
) -> None:
    classifier = suggest_classifier(optuna.trial.FixedTrial(choice), [choice["classifier"]], 42)
    classifier = with_probabilities(classifier, folds=2, seed=42)  # as tune refits it
    labels = [i % n_classes for i in range(len(TEXTS))]
    pipeline = Pipeline(
        [("features", make_vectorizer(PARAMS["featurize"])), ("classifier", classifier)]
    ).fit(TEXTS, labels)
    save_skops(pipeline, tmp_path / "model.skops")
    loaded = load_skops(tmp_path / "model.skops")
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), pipeline.predict_proba(TEXTS))
    assert name.startswith(("linear_svc", "sgd-hinge")) == isinstance(
        classifier, CalibratedClassifierCV
    )


@pytest.mark.parametrize(
    "featurize",
    [
        {"char_ngrams": False},
        {"stem": True, "negation": True, "stop_words": "english", "emoji": "keep"},
    ],
)
def test_every_featurize_variant_loads(featurize: dict, tmp_path: Path) -> None:
    vectorizer = make_vectorizer(PARAMS["featurize"] | featurize).fit(TEXTS)
    save_skops(vectorizer, tmp_path / "vectorizer.skops")
    assert load_skops(tmp_path / "vectorizer.skops").transform(TEXTS).shape[0] == len(TEXTS)


def test_drift_reference_projection_loads(tmp_path: Path) -> None:
    class Constant:
        def __init__(self) -> None:
            self.meta = {"threshold": 0.5}

        def predict_proba(self, texts):
            return np.tile([0.3, 0.7], (len(texts), 1))

    reference, _ = build_reference(
        TEXTS * 4, Constant(), PARAMS["drift"] | {"svd_components": 5}, holdout=0
    )
    save_skops(reference.projection, tmp_path / "projection.skops")
    assert skops_types(tmp_path / "projection.skops") <= TRUSTED_TYPES
    assert load_skops(tmp_path / "projection.skops").transform(TEXTS).shape == (len(TEXTS), 5)


# Terms that are also keys of skops's schema (and "_stop_words_id", which canonical_skops
# drops from a vectoriser's own attributes): a vocabulary holding them is data all the same.
SCHEMA_KEYS = ["file", "__id__", "__loader__", "__class__", "__module__", "content", "type"]
SCHEMA_KEYS += ["is_json", "key_types", "_stop_words_id"]


@pytest.mark.parametrize("char_ngrams", [False, True])
def test_a_vocabulary_holding_skops_keys_saves_and_loads(char_ngrams: bool, tmp_path: Path) -> None:
    """ "this file is great" (or "nice profile picture", through its character n-grams) once
    crashed featurize: the schema walk read the vocabulary's "file" entry as an array file."""
    texts = ["this file is great", "nice profile picture", "awful shuttle", " ".join(SCHEMA_KEYS)]
    vectorizer = make_vectorizer(PARAMS["featurize"] | {"char_ngrams": char_ngrams}).fit(texts)
    save_skops(vectorizer, tmp_path / "vectorizer.skops")
    loaded = load_skops(tmp_path / "vectorizer.skops")
    words = loaded.transformer_list[0][1] if char_ngrams else loaded
    assert set(SCHEMA_KEYS) <= set(words.vocabulary_)
    assert (loaded.transform(texts) != vectorizer.transform(texts)).nnz == 0


@pytest.mark.slow
def test_a_large_vocabulary_saves_the_same_bytes_and_loads_whole(tmp_path: Path) -> None:
    """200,000 terms save and load back whole, the same bytes twice, in seconds. The schema
    walk was quadratic (``list.pop(0)``): here it took minutes, at 1M terms hours.
    ``python -m bench.skops_save`` times 10k to 1M terms and gives the growth exponent."""
    from bench.skops_save import large_vectorizer

    vectorizer = large_vectorizer(200_000)
    save_skops(vectorizer, tmp_path / "a.skops")
    save_skops(vectorizer, tmp_path / "b.skops")
    assert (tmp_path / "a.skops").read_bytes() == (tmp_path / "b.skops").read_bytes()
    assert load_skops(tmp_path / "a.skops").vocabulary_ == vectorizer.vocabulary_


def test_the_allowlist_names_no_function() -> None:
    for name in TRUSTED_TYPES:
        module, _, attr = name.rpartition(".")
        obj = getattr(__import__(module, fromlist=[attr]), attr)
        assert isinstance(obj, type), f"{name} is not a class"


def test_digests_name_the_file_that_differs(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "meta.json").write_text("{}")
    (tmp_path / "sub" / "weights.bin").write_bytes(bytes(range(256)))
    recorded = file_digests(tmp_path)
    assert set(recorded) == {"meta.json", "sub/weights.bin"}
    verify_digests(tmp_path, recorded)

    data = bytearray((tmp_path / "sub" / "weights.bin").read_bytes())
    data[100] ^= 1
    (tmp_path / "sub" / "weights.bin").write_bytes(bytes(data))
    with pytest.raises(UntrustedModelError, match=r"sub/weights\.bin has sha256"):
        verify_digests(tmp_path, recorded)
    with pytest.raises(UntrustedModelError, match="no sha256 record"):
        verify_digests(tmp_path, None)
    extra = recorded | {"gone.txt": "0" * 64}
    assert digest_mismatches(extra, recorded) == ["gone.txt is missing"]
    assert digest_mismatches(recorded, extra) == ["gone.txt was not in the promoted model"]


def test_skops_is_read_only_through_the_allowlist() -> None:
    """Every load path (evaluate, gate, drift, the pyfunc model, the service, the benches)
    reaches skops through ``sentiment.models.trust``: no other module may import it."""
    importers = []
    for path in [
        *REPO.glob("stages/*.py"),
        *REPO.glob("sentiment/**/*.py"),
        *REPO.glob("bench/*.py"),
        REPO / "service.py",
    ]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name == "skops" or name.startswith("skops.") for name in names):
                importers.append(path.relative_to(REPO).as_posix())
    assert sorted(set(importers)) == ["sentiment/models/trust.py"]
