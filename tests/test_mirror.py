"""mirror: a serving host's BentoML store kept on the registry's production; a registry that
cannot be reached is said once. (Across hosts: tests/test_across_hosts_registry.py.)"""

from __future__ import annotations

import threading
from pathlib import Path

import bentoml
import pytest

from sentiment import paths
from sentiment.registry.mirror import mirror
from tests.conftest import free_port
from tests.test_gate import PARAMS, decide_and_act, make_model, project_copy, served_version


def looked(seconds: float) -> list[str]:
    """What ``mirror``, looking every 0.05 s for ``seconds``, said."""
    said: list[str] = []
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    mirror(PARAMS, 0.05, said.append, stop)
    return said


@pytest.mark.slow
def test_mirror_exports_what_the_store_lacks_and_says_a_lost_registry_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_copy(tmp_path, monkeypatch)
    make_model(paths.CHAMPION, 4)
    decide_and_act(PARAMS)  # version 1, exported to this project's store
    for model in bentoml.models.list(PARAMS["bento_model"]):  # as on a serving host: none
        bentoml.models.delete(model.tag)
    said = looked(1.0)
    assert len(said) == 1 and said[0].startswith("production is version 1; exported to BentoML")
    assert served_version() == "1"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    said = looked(1.0)
    assert len(said) == 1 and said[0].endswith("; the store keeps its model"), said
    assert served_version() == "1"
