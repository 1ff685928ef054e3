"""The champion's model card: built from the stages' records, rendered with the Hugging Face
YAML header, committed as the gate wrote it, and carried by the promoted model."""

from __future__ import annotations

import json

import pytest
import yaml

from sentiment import paths
from sentiment.model_card import build_card, conflicting_texts, label_mapping, render_markdown
from tests.conftest import REPO

STATS = {
    "classes": ["negative", "positive"],
    "raw_rows": 100,
    "rows": {"train": 60, "val": 10, "test": 30},
    "class_balance": {"test": {"0": 0.2, "1": 0.8}},
    "duplicates_dropped": 4,
    "quarantined": {"total": 1},
    "leakage": {"test_texts_in_train": 2},
}


def split(f1: float) -> dict:
    per_class = {"negative": {"precision": 0.6, "recall": 0.5, "f1": f1 - 0.2}}
    per_class["positive"] = {"precision": 0.9, "recall": 0.95, "f1": f1 + 0.05}
    ci = [round(f1 - 0.02, 4), f1 + 0.02]
    return {"macro_f1": f1, "macro_f1_ci": ci, "accuracy": 0.9, "per_class": per_class}


def records() -> dict:
    scores = {
        "test": split(0.8),
        "val": split(0.82),
        "ood_amazon": split(0.7),
        "test_unseen": split(0.79),
        "size_mb": 1.5,
        "latency_ms_per_1k": 20.0,
        "slices": {"short": {"macro_f1": 0.85, "rows": 20}, "long": {"macro_f1": 0.7, "rows": 10}},
        "behaviour": {"negation": 0.9, "short": 1.0},
    }
    return {
        "dataset": "shop",
        "declaration": {"rating": "Stars", "rating_bins": [1, 3, 5], "classes": ["neg", "pos"]},
        "raw_md5": "abc",
        "stats": STATS,
        "params": {"train_transformer": {"base_model": None, "target": "rating", "epochs": 2}},
        "train": {"epochs_run": 2, "best_epoch": 2, "train_seconds": 10.0, "cpu": "x86"},
        "tune": {
            "best_params": {"classifier": "logreg"},
            "cv_macro_f1": 0.8,
            "trials": {},
            "search_seconds": 1.0,
        },
        "evaluate": {
            "champion": {"name": "classical", "rule": "cheapest"},
            "classical": scores,
            "transformer": scores,
        },
        "decision": {
            "promote": True,
            "candidate": {"model_md5": "m.dir"},
            "rules": {"min_f1": {"passed": True}, "size": {"passed": True}},
        },
        "conflicts": conflicting_texts(["good", "good", "bad", "ok"], [1, 0, 0, 1]),
    }


def test_conflicting_texts_are_counted_with_their_share_of_rows() -> None:
    assert conflicting_texts(["a", "a", "b", "c", "c", "c"], [0, 1, 0, 1, 1, 1]) == {
        "texts": 1,
        "rows_share": round(2 / 6, 4),
    }
    assert conflicting_texts([], []) == {"texts": 0, "rows_share": 0.0}


def test_the_label_mapping_reads_bins_or_values() -> None:
    bins = {"rating": "Stars", "rating_bins": [1, 3, 5], "classes": ["neg", "pos"]}
    assert label_mapping(bins) == {"column": "Stars", "classes": {"neg": "[1, 3)", "pos": "[3, 5]"}}
    values = {"label": "Rec", "label_values": {"no": [0], "yes": [1]}, "classes": ["no", "yes"]}
    assert label_mapping(values) == {"column": "Rec", "classes": {"no": [0], "yes": [1]}}


def test_the_card_holds_the_champions_figures_under_a_hugging_face_header() -> None:
    card = build_card(records())
    assert card["model"] | {"candidates": []} == {
        "name": "classical",
        "model_md5": "m.dir",
        "candidates": [],
        "champion_rule": "cheapest",
        "size_mb": 1.5,
        "latency_ms_per_1k": 20.0,
    }
    assert card["evaluation"]["out_of_domain"] == {
        "amazon": {"macro_f1": 0.7, "macro_f1_ci": [0.68, 0.72]}
    }
    assert card["limitations"]["weakest_class"] == "negative"
    assert card["limitations"]["weakest_slice"] == "long"
    assert card["limitations"]["conflicting_train_texts"] == {"texts": 1, "rows_share": 0.5}
    markdown = render_markdown(card)
    _, head, body = markdown.split("---\n", 2)
    index = yaml.safe_load(head)["model-index"][0]["results"][0]
    assert index["dataset"]["name"] == "shop"
    assert {m["type"]: m["value"] for m in index["metrics"]} == {"f1": 0.8, "accuracy": 0.9}
    for section in ("Intended use", "Data", "Training", "Evaluation (test)", "Limitations"):
        assert f"\n## {section}" in body
    assert "| negative | 0.6 | 0.5 |" in body and "| out of domain: amazon | 0.7 |" in body
    assert "1 identical train texts carry different labels (50.00% of train rows)" in body


def test_the_committed_card_is_the_gates_rendering_of_the_committed_reports() -> None:
    card = json.loads((REPO / paths.MODEL_CARD_JSON).read_text())
    assert (REPO / paths.MODEL_CARD).read_text() == render_markdown(card)
    metrics = json.loads((REPO / paths.EVAL_METRICS).read_text())
    champion = metrics["champion"]["name"]
    assert card["model"]["name"] == champion
    assert card["evaluation"]["test"]["macro_f1"] == metrics[champion]["test"]["macro_f1"]
    decision = json.loads((REPO / paths.GATE_DECISION).read_text())
    assert card["model"]["model_md5"] == decision["candidate"]["model_md5"]
    assert card["data"]["dataset"] == yaml.safe_load((REPO / "params.yaml").read_text())["dataset"]


@pytest.mark.parametrize("md5, attached", [("m.dir", True), ("other.dir", False)])
def test_promotion_attaches_only_the_card_of_the_model_it_promotes(
    md5: str, attached: bool, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentiment.registry import promotion

    card = build_card(records())
    monkeypatch.setattr(paths, "MODEL_CARD", tmp_path / "card.md")
    monkeypatch.setattr(paths, "MODEL_CARD_JSON", tmp_path / "card.json")
    assert promotion.champion_card(md5) is None  # the gate wrote none
    (tmp_path / "card.json").write_text(json.dumps(card))
    (tmp_path / "card.md").write_text(render_markdown(card))
    assert (promotion.champion_card(md5) == render_markdown(card)) is attached
