"""The running service follows the promoted model in the BentoML store.

Promotion, rollback and deploy export the production version as a new store model, so
``<gate.bento_model>:latest`` names production. With ``SENTIMENT_FOLLOW_PRODUCTION=1`` the
model service checks that tag every ``SENTIMENT_FOLLOW_INTERVAL_S`` seconds. A new tag is loaded
beside the serving model and checked against its sha256 record. Only then is it swapped in,
between batches: a batch already being scored finishes on the model it started with. A model
that fails its checks is refused with one log line, and the old one keeps serving. It is not
retried until the tag changes again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("sentiment.follow")


@dataclass(frozen=True)
class Serving:
    """What answers a batch: one store model, loaded and checked."""

    tag: str
    version: str
    predictor: Any
    threshold: float | None
    names: list[str]
    card: str | None = None  # the model card (Markdown) promotion stored with it


def should_load(serving: str, latest: str | None, refused: set[str]) -> bool:
    """Whether the store's ``latest`` tag is a model to load now."""
    return latest is not None and latest != serving and latest not in refused


class Follower:
    """Polls ``resolve()`` (the tag the store names now) and swaps in what ``load(tag)``
    returns, through ``swap``; a load that raises is refused and logged once."""

    def __init__(
        self,
        current: Serving,
        resolve: Callable[[], str | None],
        load: Callable[[str], Serving],
        swap: Callable[[Serving], None],
    ) -> None:
        self.serving = current.tag
        self.resolve, self.load, self.swap = resolve, load, swap
        self.refused: set[str] = set()

    def poll(self) -> Serving | None:
        """One check: the model swapped in, or None."""
        try:
            latest = self.resolve()
        except Exception as err:  # a store being written: look again next time
            log.warning("model store not readable, still serving %s: %s", self.serving, err)
            return None
        if not should_load(self.serving, latest, self.refused):
            return None
        try:
            loaded = self.load(latest)
        except Exception as err:  # any failed check keeps the model that serves
            self.refused.add(latest)
            message = " ".join(str(err).split())
            log.error("refused %s, still serving %s: %s", latest, self.serving, message)
            return None
        self.swap(loaded)
        log.warning("now serving %s (registry version %s)", loaded.tag, loaded.version)
        self.serving = loaded.tag
        return loaded

    def start(self, interval_s: float) -> threading.Event:
        """Poll every ``interval_s`` seconds in a daemon thread; set the event to stop."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval_s):
                self.poll()

        threading.Thread(target=loop, name="follow-production", daemon=True).start()
        return stop
