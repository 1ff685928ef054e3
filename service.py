"""BentoML service for the promoted sentiment model.

Two services: ``Sentiment`` is the HTTP API (validation, metrics, inference log) and funnels
every request into ``SentimentModel.classify``, one batchable method with adaptive batching,
which scores through the same ``sentiment.models.predictor`` code as evaluate and the gate.

Environment:
- ``SENTIMENT_MODEL_TAG``: BentoML model to serve (default ``sentiment:latest``, the one the
  gate exported last);
- ``SENTIMENT_FOLLOW_PRODUCTION`` (0; ``make serve`` sets 1): follow that tag in the store,
  checked every ``SENTIMENT_FOLLOW_INTERVAL_S`` (5) seconds: a promotion, rollback or deploy
  is loaded, checked and swapped in between batches, without a restart
  (``sentiment/serving/follow.py``); ``/readyz`` names the answering version in its
  ``x-model-version`` header. Off in the container image, which serves the model it was
  built with;
- ``SENTIMENT_MAX_CHARS`` (5000), ``SENTIMENT_MAX_BATCH`` (256) and
  ``SENTIMENT_MAX_BODY_BYTES`` (1 MiB): input limits (``sentiment/serving/request_guard.py``
  enforces them before BentoML reads a request, and ``/docs.json`` declares them);
- ``SENTIMENT_API_WORKERS`` (1): processes of the HTTP API (the model service has one);
- ``SENTIMENT_ONNX_SPIN`` (0 in the model service): whether ONNX Runtime's threads spin-wait
  between calls (faster alone, slower beside the API workers on the same cores);
- ``SENTIMENT_STOP_TIMEOUT_S`` (6): on SIGTERM each API worker stops accepting, finishes the
  requests it accepted and exits, or is ended this long after the signal; the model service
  (stopped at the same time) keeps scoring until the API workers have exited, at most one
  second longer;
- ``SENTIMENT_MODEL_CALL_TIMEOUT_S`` (60): bound on one call to the model service; it must
  exceed the batching window (10 s), so a call that times out is never resent;
- ``SENTIMENT_API_TOKEN``: when set, requests need ``Authorization: Bearer <token>``
  (``sentiment/serving/auth.py``); ``SENTIMENT_API_TOKEN_SCOPE``: ``predict`` (default: the probes,
  ``/metrics`` and the docs stay open) or ``all`` (only ``/readyz``, ``/livez``, ``/healthz``);
- ``SENTIMENT_INFERENCE_LOG``: JSONL path of the inference log (default
  ``inference-log/predictions.jsonl``; ``off`` disables it): each API worker writes its own
  file, ``predictions.worker-<n>.jsonl``, rotated at ``SENTIMENT_INFERENCE_LOG_MAX_BYTES``
  (10 MB) keeping ``SENTIMENT_INFERENCE_LOG_BACKUPS`` (5); texts are logged with e-mail
  addresses, URLs and phone numbers replaced (``SENTIMENT_LOG_REDACT``: ``all``, ``off`` or a
  subset such as ``email,url``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.handlers
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import aiohttp
import bentoml
import psutil
from pydantic import BaseModel, ConfigDict, Field

from sentiment.serving.follow import Follower, Serving
from sentiment.serving.readiness import VersionHeader
from sentiment.serving.request_guard import RequestGuard, Route, request_schema
from sentiment.serving.rules import (
    VISIBLE,
    label_names,
    nothing_to_score,
    redact,
    redaction_kinds,
    worker_log_path,
)

MODEL_TAG = os.environ.get("SENTIMENT_MODEL_TAG", "sentiment:latest")
FOLLOW_PRODUCTION = os.environ.get("SENTIMENT_FOLLOW_PRODUCTION", "0") == "1"
FOLLOW_INTERVAL_S = float(os.environ.get("SENTIMENT_FOLLOW_INTERVAL_S", "5"))
MAX_CHARS = int(os.environ.get("SENTIMENT_MAX_CHARS", "5000"))
MAX_BATCH = int(os.environ.get("SENTIMENT_MAX_BATCH", "256"))
MAX_BODY_BYTES = int(os.environ.get("SENTIMENT_MAX_BODY_BYTES", str(2**20)))
API_WORKERS = int(os.environ.get("SENTIMENT_API_WORKERS", "1"))
BATCH_WINDOW_MS = 10_000  # the longest a text waits in the model service's batching queue
CONNECTION_RETRIES = 4
MODEL_CALL_TIMEOUT_S = float(os.environ.get("SENTIMENT_MODEL_CALL_TIMEOUT_S", "60"))
if MODEL_CALL_TIMEOUT_S <= BATCH_WINDOW_MS / 1000:
    raise ValueError(
        f"SENTIMENT_MODEL_CALL_TIMEOUT_S={MODEL_CALL_TIMEOUT_S:g} must exceed the batching "
        f"window ({BATCH_WINDOW_MS / 1000:g} s): a call timed out while queued would be lost"
    )
REDACT = redaction_kinds(os.environ.get("SENTIMENT_LOG_REDACT", "all"))
API_STOP_S = float(os.environ.get("SENTIMENT_STOP_TIMEOUT_S", "6"))
MODEL_DRAIN_S = API_STOP_S + 1  # the model service outlives the API workers

ReviewText = Annotated[str, Field(min_length=1, max_length=MAX_CHARS)]


class PredictRequest(BaseModel):
    """``{"text": "..."}``: one review."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: ReviewText


class PredictBatchRequest(BaseModel):
    """``{"texts": ["...", ...]}``: up to ``SENTIMENT_MAX_BATCH`` reviews."""

    model_config = ConfigDict(extra="forbid", strict=True)
    texts: Annotated[list[ReviewText], Field(min_length=1, max_length=MAX_BATCH)]


class Prediction(BaseModel):
    label: str = Field(description="The model's class name")
    score: float = Field(
        description="Two classes: P(second class, 'positive'); more: P(the predicted label)"
    )
    model_version: str


ROUTES = {
    "/predict": Route(
        PredictRequest,
        request_schema(PredictRequest, VISIBLE),
        lambda request: [(["text"], request.text)],
        nothing_to_score,
    ),
    "/predict_batch": Route(
        PredictBatchRequest,
        request_schema(PredictBatchRequest, VISIBLE),
        lambda request: [(["texts", i], text) for i, text in enumerate(request.texts)],
        nothing_to_score,
    ),
}


def api_workers_alive() -> bool:
    """Whether a worker of this server other than the model service's is still running.

    The workers are the children of BentoML's arbiter; the model service's own carry its
    class name on their command line.
    """
    me = psutil.Process()
    parent = me.parent()
    for sibling in parent.children() if parent else []:
        try:
            if sibling.pid == me.pid or sibling.status() == psutil.STATUS_ZOMBIE:
                continue
            if SentimentModel.name not in " ".join(sibling.cmdline()):
                return True
        except psutil.Error:  # exited meanwhile
            continue
    return False


def defer_sigterm(busy: Callable[[], bool], at_most_s: float) -> None:
    """Pass SIGTERM on to the server's own handler once ``busy()`` is false, or
    ``at_most_s`` after the signal (main thread only).

    BentoML's arbiter stops every service at once; without this the model service would
    close while the API still has accepted requests to score (seen as 500s in a test).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    stop = signal.getsignal(signal.SIGTERM)
    if not callable(stop):
        return

    def drain_then_stop(signum: int, frame: object) -> None:
        deadline = time.monotonic() + at_most_s
        try:
            while time.monotonic() < deadline and busy():
                time.sleep(0.05)
        finally:  # whatever happens, the server stops
            stop(signum, frame)

    def later(signum: int, frame: object) -> None:
        threading.Thread(target=drain_then_stop, args=(signum, frame), daemon=True).start()

    signal.signal(signal.SIGTERM, later)


def bound_sigterm(seconds: float) -> None:
    """On SIGTERM, start the server's graceful stop at once and end the process
    ``seconds`` later if it has not ended by then (main thread only).

    Stopping gracefully, an API worker waits for every request it accepted; one whose call
    to the model hangs kept it alive for close to a minute in tests. Past the bound, what
    is still open is dropped, as an orchestrator's SIGKILL would, but on time.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    stop = signal.getsignal(signal.SIGTERM)
    if not callable(stop):
        return

    def force_exit() -> None:
        logging.shutdown()  # flush the inference log: no half-written line
        os._exit(1)

    def stop_within(signum: int, frame: object) -> None:
        timer = threading.Timer(seconds, force_exit)
        timer.daemon = True  # a worker that ended in time does not wait for it
        timer.start()
        stop(signum, frame)

    signal.signal(signal.SIGTERM, stop_within)


def inference_logger() -> logging.Logger | None:
    """A JSONL logger with size-based rotation, one file per API worker, or None when off."""
    path = os.environ.get("SENTIMENT_INFERENCE_LOG", "inference-log/predictions.jsonl")
    if path.lower() in ("", "off", "false", "0"):
        return None
    path = worker_log_path(path, bentoml.server_context.worker_index or 1)
    logger = logging.getLogger("sentiment.inference")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                path,
                maxBytes=int(os.environ.get("SENTIMENT_INFERENCE_LOG_MAX_BYTES", 10 * 2**20)),
                backupCount=int(os.environ.get("SENTIMENT_INFERENCE_LOG_BACKUPS", "5")),
                encoding="utf-8",
                delay=True,
            )
        except OSError as err:  # a broken log path must not stop serving
            logging.getLogger(__name__).warning("inference log disabled: %s", err)
            return None
        logger.addHandler(handler)
    return logger


@bentoml.service(
    workers=1,
    traffic={"timeout": 60, "max_concurrency": 1024},
    # The caller's client recycles its HTTP session every 100 calls by default, closing
    # calls still in flight: under load they fail or hang and are retried (in trials that
    # cost 16 % of req/s at concurrency 16, 45 % at 64). `Sentiment` logs every call.
    runner_connection={"max_requests": 2**31, "max_age": 86_400.0},
    logging={"access": {"enabled": False}},
)
class SentimentModel:
    """The model runner: one batchable method, adaptive batching across all requests."""

    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        # ONNX Runtime's threads must not spin-wait here: the API workers share the cores
        # (bench.serve_load at concurrency 16: 90 req/s with spinning on 1.86 cores; without,
        # 90 and 115 req/s in two runs, on 1.63 and 1.65 cores).
        os.environ.setdefault("SENTIMENT_ONNX_SPIN", "0")
        self.serving = load_serving(self.model_ref)
        self.scored = bentoml.metrics.Counter(
            name="sentiment_model_texts_total",
            documentation="Texts scored by the model service",
        )
        defer_sigterm(api_workers_alive, at_most_s=MODEL_DRAIN_S)
        if FOLLOW_PRODUCTION:

            def swap(serving: Serving) -> None:
                self.serving = serving  # one reference: a batch reads it once

            Follower(
                self.serving,
                resolve=lambda: str(bentoml.models.get(MODEL_TAG).tag),
                load=lambda tag: load_serving(bentoml.models.get(tag)),
                swap=swap,
            ).start(FOLLOW_INTERVAL_S)

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=BATCH_WINDOW_MS)
    def classify(self, texts: list[str]) -> list[dict]:
        from sentiment.models.predictor import decide

        serving = self.serving  # the whole batch on one model, even if a swap comes meanwhile
        proba = serving.predictor.predict_proba(texts)
        labels = decide(proba, serving.threshold)
        self.scored.inc(len(texts))
        return [
            {
                "label": serving.names[label],
                "score": float(p[1] if len(serving.names) == 2 else p[label]),
                "confidence": float(p[label]),
                "model_version": serving.version,
            }
            for label, p in zip(labels, proba, strict=True)
        ]

    @bentoml.api
    def version(self) -> str:
        """The registry version answering now."""
        return self.serving.version


def load_serving(model: bentoml.Model | bentoml.models.BentoModel) -> Serving:
    """A store model loaded for serving, after its files matched their sha256 record."""
    from sentiment.models.files import bento_model_dir
    from sentiment.models.predictor import load_predictor

    predictor = load_predictor(bento_model_dir(model))
    names = label_names(predictor.meta, f"BentoML model {model.tag}")
    version = model.info.labels.get("registry_version") or str(model.tag.version)
    return Serving(str(model.tag), version, predictor, predictor.meta.get("threshold"), names)


ANSWERING: dict[str, Sentiment] = {}  # this API worker's service, once it has started


async def answering_version() -> str | None:
    """The version the model service answers with now (None when it cannot tell)."""
    api = ANSWERING.get("service")
    if api is None:
        return None
    try:  # the client is set up on first use, not when the service starts
        return await asyncio.wait_for(api.model.to_async.version(), 5)
    except Exception:  # a probe must answer whatever the model service does
        return None


@bentoml.service(workers=API_WORKERS, traffic={"timeout": 60, "max_concurrency": 1024})
class Sentiment:
    """``POST /predict`` and ``POST /predict_batch``; health, metrics and docs from BentoML."""

    model = bentoml.depends(SentimentModel)

    def __init__(self) -> None:
        bound_sigterm(API_STOP_S)
        ANSWERING["service"] = self
        self.log = inference_logger()
        self.predictions = bentoml.metrics.Counter(
            name="sentiment_predictions_total",
            documentation="Predictions by label and by the model version that answered",
            labelnames=["label", "model_version"],
        )
        self.confidence = bentoml.metrics.Histogram(
            name="sentiment_confidence",
            documentation="Confidence of the predicted label",
            buckets=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
        )
        self.length = bentoml.metrics.Histogram(
            name="sentiment_text_length_chars",
            documentation="Length of scored texts",
            buckets=(10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
        )

    async def _classify(self, texts: list[str]) -> list[dict]:
        """Call the model service; resend only a call that never reached it.

        BentoML 1.4's internal client can reuse a connection the model server has already
        closed (bentoml/BentoML#4971, fix pending in PR #5698): the call fails before the
        model service accepts it, so resending it scores nothing twice. A call that takes
        longer than ``SENTIMENT_MODEL_CALL_TIMEOUT_S`` (above the batching window) is not
        resent: the client gets 503.
        """
        for attempt in range(CONNECTION_RETRIES):
            try:
                return await asyncio.wait_for(
                    self.model.to_async.classify(texts), MODEL_CALL_TIMEOUT_S
                )
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.01 * 2**attempt)
            except TimeoutError as err:
                raise bentoml.exceptions.ServiceUnavailable("the model did not answer") from err
        return await self.model.to_async.classify(texts)

    async def _score(self, texts: list[str]) -> list[Prediction]:
        results = await self._classify(texts)
        now = datetime.now(UTC).isoformat()
        for text, result in zip(texts, results, strict=True):
            self.predictions.labels(
                label=result["label"], model_version=result["model_version"]
            ).inc()
            self.confidence.observe(result.pop("confidence"))
            self.length.observe(len(text))
            if self.log is not None:
                record = {"timestamp": now, "text": redact(text, REDACT), **result}
                self.log.info(json.dumps(record, ensure_ascii=False))
        return [Prediction(**r) for r in results]

    @bentoml.api(input_spec=PredictRequest)
    async def predict(self, text: str) -> Prediction:
        """Sentiment of one review."""
        return (await self._score([text]))[0]

    @bentoml.api(input_spec=PredictBatchRequest)
    async def predict_batch(self, texts: list[str]) -> list[Prediction]:
        """Sentiment of several reviews, in order."""
        return await self._score(texts)


if os.environ.get("SENTIMENT_API_TOKEN"):
    from sentiment.serving.auth import BearerAuth, open_paths

    TOKEN_SCOPE = os.environ.get("SENTIMENT_API_TOKEN_SCOPE", "predict")
    open_paths(TOKEN_SCOPE)  # a bad scope stops `bentoml serve` here, not in every worker
    Sentiment.add_asgi_middleware(
        BearerAuth, token=os.environ["SENTIMENT_API_TOKEN"], scope=TOKEN_SCOPE
    )
# After the token check (middlewares added first run first): refuse what is not a valid
# request before BentoML reads it.
Sentiment.add_asgi_middleware(RequestGuard, routes=ROUTES, max_body=MAX_BODY_BYTES)
# Last: `/readyz` answers with the version the model service answers with now.
Sentiment.add_asgi_middleware(VersionHeader, version=answering_version)
