"""Keep a serving host's BentoML store holding the registry's production model.

A service that follows production (``SENTIMENT_FOLLOW_PRODUCTION=1``) watches its own store,
which promote, rollback and deploy fill on the host that runs them. On other serving hosts
``python -m sentiment.registry mirror --every S`` runs beside the service: every ``S``
seconds it exports production to the store when the store's latest model is not it. A
registry that cannot be reached is said once, and its return once; meanwhile the store, and
so the service, keep the model they have.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sentiment.registry.promotion import ensure_served
from sentiment.registry.store import production_version
from sentiment.tracking import redact_uri, tracking_uri


def mirror_once(params: dict) -> str:
    """One look: export production unless the store has it; what was found or done."""
    client = MlflowClient()
    current = production_version(client, params["registered_model"])
    if current is None:
        return "no production version yet; the store is left as it is"
    return f"production is version {current.version}; {ensure_served(client, params, current)}"


def mirror(params: dict, every_s: float, say: Callable[[str], None], stop: threading.Event) -> None:
    """Look every ``every_s`` seconds until ``stop`` is set; say what is news: the first
    look, a model exported, the registry lost or back."""
    mlflow.set_tracking_uri(tracking_uri())  # no experiment: nothing is logged
    reachable = None
    while True:
        try:
            line = mirror_once(params)
            news = reachable is not True or "exported" in line
            reachable = True
        except MlflowException as err:
            message = " ".join(err.message.split())[:300]
            line = f"registry {redact_uri(tracking_uri())}: {message}; the store keeps its model"
            news, reachable = reachable is not False, False
        if news:
            say(line)
        if stop.wait(every_s):
            return
