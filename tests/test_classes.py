"""Any number of classes after prepare: evaluate, the champion's export, the gate's
assessment and batch scoring take the classes from the data and the model, for two, three
and five classes, with the dataset's own names."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import Pipeline

from sentiment.data.labels import label_names, labels_record
from sentiment.evaluation.behaviour import polarity, run_suite
from sentiment.models.candidates import (
    CANDIDATES,
    evaluate_candidates,
    export_champion,
    write_plots,
)
from sentiment.models.predictor import load_predictor, predict, read_meta, save_classical
from sentiment.registry.decision import assess
from sentiment.scoring.core import ChunkScorer
from tests.conftest import project_env
from tests.test_ingest import small_copy

# Words that mark each class, from most negative to most positive, for 2, 3 and 5 classes.
WORDS = {
    2: [["bad", "worst", "broken"], ["good", "great", "excellent"]],
    3: [["bad", "worst", "broken"], ["okay", "average", "fine"], ["good", "great", "excellent"]],
    5: [
        ["worst", "terrible", "broken"],
        ["bad", "poor", "flimsy"],
        ["okay", "average", "fine"],
        ["good", "nice", "decent"],
        ["excellent", "superb", "perfect"],
    ],
}
CLASSES = {
    2: ["negative", "positive"],
    3: ["unhappy", "so-so", "happy"],
    5: ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"],
}
FILLER = ["shuttle", "box", "delivery", "quality", "product", "price", "cork", "feather"]
PARAMS = {"bootstrap_resamples": 50, "seed": 0, "min_gain": 0.005}


def reviews(k: int, n: int, seed: int) -> tuple[list[str], list[int]]:
    """``n`` synthetic reviews of ``k`` classes: two filler words and one class word, a
    tenth of them with another class's word (so no model is perfect)."""
    rng = np.random.default_rng(seed)
    labels = [int(c) for c in rng.integers(0, k, n)]
    texts = []
    for label in labels:
        said = int(rng.integers(0, k)) if rng.random() < 0.1 else label
        words = [*rng.choice(FILLER, 2), rng.choice(WORDS[k][said])]
        texts.append(" ".join(str(w) for w in rng.permutation(words)))
    return texts, labels


def member(path: Path, classifier, k: int, seed: int) -> Path:
    texts, labels = reviews(k, 400, seed)
    pipeline = Pipeline([("features", TfidfVectorizer()), ("classifier", classifier)])
    meta = {"threshold": 0.5 if k == 2 else None, "n_classes": k, **labels_record(CLASSES[k])}
    save_classical(pipeline.fit(texts, labels), path, meta)
    return path


@pytest.fixture(params=[2, 3, 5], ids=lambda k: f"{k}-classes")
def classes(request: pytest.FixtureRequest) -> int:
    return request.param


def test_the_default_names_are_implied_and_others_recorded() -> None:
    assert labels_record(["negative", "positive"]) == {}
    assert labels_record(["neg", "pos"]) == {"labels": ["neg", "pos"]}
    assert label_names({"n_classes": 3}, "m") == ["negative", "neutral", "positive"]
    assert label_names({"labels": CLASSES[5], "n_classes": 5}, "m") == CLASSES[5]
    with pytest.raises(ValueError, match=r"m: 5 classes and no 'labels' in meta\.json"):
        label_names({"n_classes": 5}, "m")


def test_polarity_puts_the_lower_classes_negative_and_the_middle_one_on_neither_side() -> None:
    assert polarity(np.array([0, 1]), 2).tolist() == [0, 1]
    assert polarity(np.array([0, 1, 2]), 3).tolist() == [0, -1, 1]
    assert polarity(np.array([0, 1, 2, 3, 4]), 5).tolist() == [0, 0, -1, 1, 1]
    assert polarity(np.array([0, 1, 2, 3]), 4).tolist() == [0, 0, 1, 1]


def test_the_behaviour_suite_reads_the_sides_of_five_classes() -> None:
    def stars(texts: list[str]) -> np.ndarray:  # 2 stars for bad words, 5 for good ones
        bad = ("not", "bad", "worst", "waste", "poor", "broke", "damaged", "fake", "👎", "😡", "😞")
        return np.array([1 if any(w in t.lower() for w in bad) else 4 for t in texts])

    rates = run_suite(stars, 5)
    assert rates["negation"] == 1.0 and rates["short"] == 1.0
    assert run_suite(lambda texts: np.full(len(texts), 2), 5)["short"] == 0.0  # all neutral


def test_evaluate_scores_and_exports_any_number_of_classes(classes: int, tmp_path: Path) -> None:
    k, names = classes, CLASSES[classes]
    members = {
        "classical": member(tmp_path / "classical", LogisticRegression(C=10), k, 1),
        "transformer": member(tmp_path / "transformer", ComplementNB(), k, 2),
    }
    data = {"val": reviews(k, 300, 3), "test": reviews(k, 300, 4)}
    ood_texts, ood_labels = reviews(k, 300, 5)
    ends = [i for i, y in enumerate(ood_labels) if y in (0, k - 1)]  # as a two-class OOD set
    data["ood"] = ([ood_texts[i] for i in ends], [ood_labels[i] for i in ends])

    metrics, test = evaluate_candidates(data, members, PARAMS)

    assert test["names"] == names
    for name in CANDIDATES:
        scores = metrics[name]["test"]
        assert list(scores["per_class"]) == names
        assert scores["macro_f1"] > 0.75 and scores["roc_auc"] > 0.85, (name, scores)
        assert 0 < scores["brier"] < 1 and 0 <= scores["ece"] < 1
        assert list(metrics[name]["ood"]["per_class"]) == names
        assert metrics[name]["ood"]["per_class"][names[0]]["recall"] > 0.75
        assert set(metrics[name]["behaviour"]) >= {"negation", "short", "emoji"}
    assert (metrics["ensemble"]["threshold"] is None) == (k > 2)  # else fitted on val
    assert metrics["champion"]["name"] in CANDIDATES

    plots = {kind: tmp_path / "plots" / kind for kind in ("png", "roc", "pr", "pr_negative")}
    plots["confusion"] = tmp_path / "plots" / "confusion"
    write_plots(test["y"], test["probas"], test["thresholds"], names, plots)
    confusion = json.loads((plots["confusion"] / "ensemble.json").read_text())
    assert len(confusion) == 300 and {c["actual"] for c in confusion} == set(names)
    roc = json.loads((plots["roc"] / "classical.json").read_text())
    assert roc[0] == {"fpr": 0.0, "tpr": 0.0} and roc[-1] == {"fpr": 1.0, "tpr": 1.0}
    assert (plots["png"] / "confusion_ensemble.png").stat().st_size > 0

    champion = tmp_path / "champion"
    export_champion("ensemble", test["thresholds"], test["weights"], members, champion, names)
    predictor = load_predictor(champion)
    assert label_names(predictor.meta, "champion") == names
    texts, labels = data["test"]
    assessed = assess(champion, texts, labels)
    assert assessed["macro_f1"] == metrics["ensemble"]["test"]["macro_f1"]
    assert assessed["behaviour"] == metrics["ensemble"]["behaviour"]
    assert assessed["predicted"] == predict(predictor, texts).tolist()


def test_batch_scoring_answers_with_the_datasets_names(tmp_path: Path) -> None:
    model = member(tmp_path / "model", LogisticRegression(C=10), 5, 1)
    scorer = ChunkScorer(load_predictor(model), "3", "the model")
    table = scorer.table(0, ["excellent superb box", "worst broken cork", None]).to_pylist()
    assert [row["label"] for row in table] == ["5 stars", "1 star", None]
    assert all(0.2 < row["score"] <= 1 for row in table[:2])
    assert table[2]["error"] == "no text" and table[0]["model_version"] == "3"


def run_in(root: Path, *cmd: str, **env: str) -> str:
    """A command in the project copy ``root`` with its own stores (BentoML's too)."""
    proc = subprocess.run(
        cmd, cwd=root, env=project_env(root) | env, capture_output=True, text=True, timeout=1500
    )
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_the_five_stars_as_classes_from_raw_reviews_to_a_scored_file(
    raw_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The clothing set declared with its stars as five named classes (300 reviews of each),
    on the small params: prepare to gate (with the model card), promote (the card in the
    BentoML model), and a file scored with the stars' names."""
    root = small_copy(tmp_path_factory.mktemp("stars"), raw_data)
    clothing = pd.read_csv(raw_data.parent / "clothing" / "reviews.csv")
    sample = clothing.dropna(subset=["Review Text"]).groupby("Rating").head(300)
    (root / "data" / "raw" / "stars").mkdir()
    sample.to_csv(root / "data" / "raw" / "stars" / "reviews.csv", index=False)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["dataset"] = "stars"
    params["datasets"]["stars"] = params["datasets"]["clothing"] | {
        "rating_bins": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5],
        "classes": CLASSES[5],
        "reference_rows": len(sample),
        "ood": [],
    }
    params["gate"]["min_f1"] = 0.0  # a model of 64 reviews: promoted all the same
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    run_in(root, "dvc", "repro", "gate")
    stats = json.loads((root / "data" / "prepared" / "stats.json").read_text())
    assert stats["classes"] == CLASSES[5] and set(stats["class_balance"]["test"]) == set("01234")
    for name in ("classical", "transformer", "champion"):
        assert read_meta(root / "models" / name)["labels"] == CLASSES[5]
    metrics = json.loads((root / "reports" / "evaluate" / "metrics.json").read_text())
    for name in CANDIDATES:
        assert list(metrics[name]["test"]["per_class"]) == CLASSES[5]
    assert metrics["classical"]["test"]["macro_f1"] > 0.3  # five balanced classes: chance 0.2
    plots = root / "reports" / "evaluate" / "plots"
    confusion = json.loads((plots / "confusion" / "ensemble.json").read_text())
    assert {row["actual"] for row in confusion} == set(CLASSES[5])

    home = str(root / "bentoml")
    run_in(root, "python", "-m", "sentiment.registry", "promote", BENTOML_HOME=home)
    sample.tail(40).to_csv(root / "new.csv", index=False)
    run_in(
        root, "python", "-m", "sentiment.scoring",  # the model: the dataset's production
        "--input", "new.csv", "--output", "scored.parquet", "--text-column", "Review Text",
        BENTOML_HOME=home,
    )  # fmt: skip
    scored = pd.read_parquet(root / "scored.parquet")
    assert len(scored) == 40 and set(scored["label"]) <= set(CLASSES[5])
    card = json.loads((root / "reports" / "gate" / "model_card.json").read_text())
    assert card["data"]["classes"] == CLASSES[5] and card["data"]["dataset"] == "stars"
    assert list(card["evaluation"]["test"]["per_class"]) == CLASSES[5]
    served_card = run_in(
        root, "python", "-c",
        "import bentoml; "
        "print(bentoml.models.get('sentiment-stars:latest').info.metadata['model_card'])",
        BENTOML_HOME=home,
    )  # fmt: skip
    assert served_card.startswith("---\n") and "# Model card: stars sentiment" in served_card
    registry = run_in(
        root, "python", "-c",
        "import json, mlflow; from sentiment.tracking import configure; configure(); "
        "version = mlflow.MlflowClient()"
        ".get_model_version_by_alias('sentiment-classifier-stars', 'production'); "
        "runs = mlflow.search_runs(search_all_experiments=True); "
        "runs = runs[runs['tags.kind'] != 'promote']; "
        "print(json.dumps([version.description, sorted(set(runs['tags.dataset'].fillna('-')))]))",
    )  # fmt: skip
    registered_card, datasets = json.loads(registry)
    assert registered_card + "\n" == served_card  # print ended the served one with a newline
    assert datasets == ["stars"]  # the pipeline's run, each stage's, each trial's
