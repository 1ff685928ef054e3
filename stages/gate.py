"""gate: decide whether the champion beats production; ``promote`` makes it so.

The DVC stage only decides. It scores the candidate (``models/champion``) and the current
production model (registry alias ``production`` of ``gate.registered_model``, read-only) on
the same rows of the current test split, and writes ``reports/gate/decision.json``: every
rule, the paired bootstrap CI of the macro-F1 difference, and which production model it
compared against, and the champion's model card (``reports/gate/model_card.md`` and
``.json``, ``sentiment.model_card``). Acting is a separate, idempotent command,
``python -m sentiment.registry promote``: it makes the registry and the BentoML store match the
decision (deciding again first if production moved since), so a skipped stage, an applied
experiment or an empty registry still ends promoted or kept as the rules say.

    python -m stages.gate            # the DVC stage: decide
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sentiment import paths
from sentiment.cli import entry_point, fail, no_options
from sentiment.fileio import atomic_path, read_split, write_json
from sentiment.headlines import stage_line
from sentiment.model_card import build_card, conflicting_texts, render_markdown
from sentiment.params import load_params, read_params_file
from sentiment.registry.decision import decision_for, verdict
from sentiment.registry.store import registry_error
from sentiment.tracking import dvc_md5, log_key_metrics, stage_run


def run_stage(params: dict[str, Any]) -> dict[str, Any]:
    """The DVC stage: decide and record; the registry and the store are only read."""
    with stage_run("gate"):
        record = decision_for(MlflowClient(), params, paths.CHAMPION, paths.SPLITS["test"])
        write_json(paths.GATE_DECISION, record)
        write_json(paths.GATE_VERDICT, verdict(record))
        log_key_metrics(
            {
                "promote": int(record["promote"]),
                "candidate.test.macro_f1": record["candidate"]["macro_f1"],
            }
        )
        mlflow.log_artifact(str(paths.GATE_DECISION))
    return record


def write_model_card() -> None:
    """The champion's model card from the stages' records, as Markdown and JSON."""
    params = read_params_file()
    name = params["dataset"]
    declaration = params["datasets"][name]
    texts, labels = read_split(paths.SPLITS["train"])
    records = {
        record: json.loads(path.read_text())
        for record, path in (
            ("stats", paths.PREPARE_STATS),
            ("train", paths.TRAIN_METRICS),
            ("tune", paths.TUNE_BEST),
            ("evaluate", paths.EVAL_METRICS),
            ("decision", paths.GATE_DECISION),
        )
    }
    card = build_card(
        records
        | {
            "dataset": name,
            "declaration": declaration,
            "raw_md5": dvc_md5(paths.RAW / name / declaration["source"]),
            "params": params,
            "conflicts": conflicting_texts(texts, labels),
        }
    )
    write_json(paths.MODEL_CARD_JSON, card)
    with atomic_path(paths.MODEL_CARD) as tmp:
        tmp.write_text(render_markdown(card))


def main() -> None:
    no_options(__doc__)
    try:
        run_stage(load_params("gate"))
    except MlflowException as err:
        fail(registry_error("gate", err))
    write_model_card()
    print(stage_line("gate"))


if __name__ == "__main__":
    entry_point(main)
