"""BentoML service for the promoted sentiment model.

One service: ``POST /predict`` and ``POST /predict_batch`` validate, score, count and log.
Texts of concurrent requests are scored together, one batch at a time, in this process
(``sentiment/serving/batcher.py``), through the same ``sentiment.models.predictor`` code as
evaluate and the gate.

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
  ``SENTIMENT_MAX_BATCH`` also bounds the texts of one model call;
- ``SENTIMENT_WORKERS`` (one per core of the container's CPU limit): processes, each with its
  own model, batches and log, scoring with ``SENTIMENT_ONNX_THREADS`` (cores / workers)
  ONNX Runtime threads that do not spin-wait (``SENTIMENT_ONNX_SPIN``, 0 here);
- ``SENTIMENT_API_TOKEN``: when set, requests need ``Authorization: Bearer <token>``
  (``sentiment/serving/auth.py``); ``SENTIMENT_API_TOKEN_SCOPE``: ``predict`` (default: the probes,
  ``/metrics`` and the docs stay open) or ``all`` (only ``/readyz``, ``/livez``, ``/healthz``);
- ``SENTIMENT_INFERENCE_LOG``: JSONL path of the inference log (default
  ``inference-log/predictions.jsonl``; ``off`` disables it): each worker writes its own
  file, ``predictions.worker-<n>.jsonl``, rotated at ``SENTIMENT_INFERENCE_LOG_MAX_BYTES``
  (10 MB) keeping ``SENTIMENT_INFERENCE_LOG_BACKUPS`` (5); texts are logged with e-mail
  addresses, URLs and phone numbers replaced (``SENTIMENT_LOG_REDACT``: ``all``, ``off`` or a
  subset such as ``email,url``).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
from datetime import UTC, datetime
from typing import Annotated

import bentoml
from pydantic import BaseModel, ConfigDict, Field

from sentiment.data.labels import label_names
from sentiment.serving.batcher import Batcher
from sentiment.serving.follow import Follower, Serving
from sentiment.serving.readiness import VersionHeader
from sentiment.serving.request_guard import RequestGuard, Route, request_schema
from sentiment.serving.rules import (
    VISIBLE,
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
# BentoML's "cpu_count" reads the container's CPU limit (cgroups), not the host's cores.
WORKERS: int | str = int(os.environ.get("SENTIMENT_WORKERS", "0")) or "cpu_count"
REDACT = redaction_kinds(os.environ.get("SENTIMENT_LOG_REDACT", "all"))

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


def inference_logger() -> logging.Logger | None:
    """A JSONL logger with size-based rotation, one file per worker, or None when off."""
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
    workers=WORKERS,
    traffic={"timeout": 60, "max_concurrency": 1024},
    logging={"access": {"enabled": False}},  # the inference log records every prediction
)
class Sentiment:
    """``POST /predict`` and ``POST /predict_batch``; health, metrics and docs from BentoML."""

    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        # The workers share the cores: each scores on its share, without spin-waiting
        # (bench.serve_load on 2 cores: see docs/benchmarks.md).
        share = 1 if WORKERS == "cpu_count" else max(1, (os.cpu_count() or 1) // int(WORKERS))
        os.environ.setdefault("SENTIMENT_ONNX_THREADS", str(share))
        os.environ.setdefault("SENTIMENT_ONNX_SPIN", "0")
        self.serving = load_serving(self.model_ref)
        self.batcher = Batcher(self.classify, MAX_BATCH)
        self.log = inference_logger()
        self.scored = bentoml.metrics.Counter(
            name="sentiment_model_texts_total", documentation="Texts scored by the model"
        )
        self.batch_size = bentoml.metrics.Histogram(
            name="sentiment_batch_size",
            documentation="Texts per model call (concurrent requests scored together)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
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
        ANSWERING["service"] = self
        if FOLLOW_PRODUCTION:

            def swap(serving: Serving) -> None:
                self.serving = serving  # one reference: a batch reads it once

            Follower(
                self.serving,
                resolve=lambda: str(bentoml.models.get(MODEL_TAG).tag),
                load=lambda tag: load_serving(bentoml.models.get(tag)),
                swap=swap,
            ).start(FOLLOW_INTERVAL_S)

    def classify(self, texts: list[str]) -> list[dict]:
        """One model call for a batch (in the batcher's thread)."""
        from sentiment.models.predictor import label_ids

        serving = self.serving  # the whole batch on one model, even if a swap comes meanwhile
        proba = serving.predictor.predict_proba(texts)
        labels = label_ids(proba, serving.threshold)
        self.scored.inc(len(texts))
        self.batch_size.observe(len(texts))
        return [
            {
                "label": serving.names[label],
                "score": float(p[1] if len(serving.names) == 2 else p[label]),
                "confidence": float(p[label]),
                "model_version": serving.version,
            }
            for label, p in zip(labels, proba, strict=True)
        ]

    async def _score(self, texts: list[str]) -> list[Prediction]:
        results = await self.batcher(texts)
        now = datetime.now(UTC).isoformat()
        predictions = []
        for text, result in zip(texts, results, strict=True):
            self.predictions.labels(
                label=result["label"], model_version=result["model_version"]
            ).inc()
            self.confidence.observe(result["confidence"])
            self.length.observe(len(text))
            prediction = Prediction(
                label=result["label"], score=result["score"], model_version=result["model_version"]
            )
            if self.log is not None:
                record = {"timestamp": now, "text": redact(text, REDACT), **prediction.model_dump()}
                self.log.info(json.dumps(record, ensure_ascii=False))
            predictions.append(prediction)
        return predictions

    @bentoml.api(input_spec=PredictRequest)
    async def predict(self, text: str) -> Prediction:
        """Sentiment of one review."""
        return (await self._score([text]))[0]

    @bentoml.api(input_spec=PredictBatchRequest)
    async def predict_batch(self, texts: list[str]) -> list[Prediction]:
        """Sentiment of several reviews, in order."""
        return await self._score(texts)


def load_serving(model: bentoml.Model | bentoml.models.BentoModel) -> Serving:
    """A store model loaded for serving, after its files matched their sha256 record."""
    from sentiment.models.predictor import load_predictor
    from sentiment.models.trust import bento_model_dir

    predictor = load_predictor(bento_model_dir(model))
    names = label_names(predictor.meta, f"BentoML model {model.tag}")
    version = model.info.labels.get("registry_version") or str(model.tag.version)
    return Serving(str(model.tag), version, predictor, predictor.meta.get("threshold"), names)


ANSWERING: dict[str, Sentiment] = {}  # this worker's service, once it has started


def answering_version() -> str | None:
    """The version this worker answers with now (None before its model is loaded)."""
    service = ANSWERING.get("service")
    return service.serving.version if service is not None else None


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
# Last: `/readyz` answers with the version answering now.
Sentiment.add_asgi_middleware(VersionHeader, version=answering_version)
