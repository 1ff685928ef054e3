"""BentoML service for the promoted sentiment model.

One service: ``POST /predict`` and ``POST /predict_batch`` validate, score, count and log;
``GET /model/card`` answers the model card of the model answering now.
Texts of concurrent requests are scored together, one batch at a time, in this process
(``sentiment/serving/batcher.py``), through the same ``sentiment.models.predictor`` code as
evaluate and the gate.

Its settings (``SENTIMENT_MODEL_TAG``, following production, the request limits, workers,
the token, the inference log) are declared in ``sentiment/settings.py``, with their defaults
and bounds, and checked when this module is imported: a bad value stops ``bentoml serve`` in
one line naming the variable. docs/configuration.md lists them.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
from datetime import UTC, datetime
from typing import Annotated

import bentoml
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from sentiment.data.labels import label_names
from sentiment.models.trust import MODEL_CARD_KEY
from sentiment.params import ParamsError, production_tag
from sentiment.serving.batcher import Batcher
from sentiment.serving.follow import Follower, Serving
from sentiment.serving.readiness import VersionHeader
from sentiment.serving.request_guard import MESSAGE_SCHEMA, RequestGuard, Route, request_schema
from sentiment.serving.rules import (
    VISIBLE,
    decades_up_to,
    doubling_up_to,
    nothing_to_score,
    redact,
    redaction_kinds,
    worker_log_path,
)
from sentiment.settings import SettingError, check, setting

try:
    check("service")
    check("inference")
    # Unset: the production model of the dataset the params.yaml beside this file declares.
    MODEL_TAG = setting("SENTIMENT_MODEL_TAG") or production_tag()
except (SettingError, ParamsError) as err:  # one line, before BentoML starts anything
    raise SystemExit(f"service: {err}") from None
FOLLOW_PRODUCTION = setting("SENTIMENT_FOLLOW_PRODUCTION")
FOLLOW_INTERVAL_S = setting("SENTIMENT_FOLLOW_INTERVAL_S")
MAX_CHARS = setting("SENTIMENT_MAX_CHARS")
MAX_BATCH = setting("SENTIMENT_MAX_BATCH")  # texts of one request
MODEL_BATCH = setting("SENTIMENT_MODEL_BATCH")  # texts of one model call
MAX_BODY_BYTES = setting("SENTIMENT_MAX_BODY_BYTES")
# BentoML's "cpu_count" reads the container's CPU limit (cgroups), not the host's cores.
WORKERS: int | str = setting("SENTIMENT_WORKERS") or "cpu_count"
REDACT = redaction_kinds(setting("SENTIMENT_LOG_REDACT"))

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


# GET routes beside BentoML's POST APIs, in the same OpenAPI document (/docs.json).
model_app = FastAPI(title="model", docs_url=None, redoc_url=None, openapi_url=None)


class MarkdownResponse(PlainTextResponse):
    media_type = "text/markdown"


def inference_logger() -> logging.Logger | None:
    """A JSONL logger with size-based rotation, one file per worker, or None when off."""
    path = setting("SENTIMENT_INFERENCE_LOG")
    if path.lower() in ("", "off", "false", "0"):
        return None
    path = worker_log_path(path, bentoml.server_context.worker_index or 1)
    logger = logging.getLogger("sentiment.inference")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.open("a").close()  # writable? (a read-only root without a log volume is not)
            handler = logging.handlers.RotatingFileHandler(
                path,
                maxBytes=setting("SENTIMENT_INFERENCE_LOG_MAX_BYTES"),
                backupCount=setting("SENTIMENT_INFERENCE_LOG_BACKUPS"),
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
@bentoml.asgi_app(model_app, path="/model")
class Sentiment:
    """``POST /predict``, ``POST /predict_batch`` and ``GET /model/card``; health, metrics and
    docs from BentoML."""

    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        # The workers share the cores: each scores on its share, without spin-waiting
        # (bench.serve_load on 2 cores: see docs/benchmarks.md).
        share = 1 if WORKERS == "cpu_count" else max(1, (os.cpu_count() or 1) // int(WORKERS))
        os.environ.setdefault("SENTIMENT_ONNX_THREADS", str(share))
        os.environ.setdefault("SENTIMENT_ONNX_SPIN", "0")
        self.serving = load_serving(self.model_ref)
        self.batcher = Batcher(self.classify, MODEL_BATCH)
        self.log = inference_logger()
        self.scored = bentoml.metrics.Counter(
            name="sentiment_model_texts_total", documentation="Texts scored by the model"
        )
        self.batch_size = bentoml.metrics.Histogram(
            name="sentiment_batch_size",
            documentation="Texts per model call (concurrent requests scored together)",
            buckets=doubling_up_to(MODEL_BATCH),  # a larger request is split
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
            buckets=decades_up_to(MAX_CHARS),
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

    @model_app.get(
        "/card",
        summary="Model card",
        operation_id="model_card",
        description=(
            "The card of the model answering now (Markdown with a Hugging Face YAML header): "
            "what it is for, its data, training, test metrics with their CIs, behaviour tests, "
            "measured limitations and the gate's decision. Written by the pipeline's gate and "
            "stored with the model on promotion."
        ),
        response_class=MarkdownResponse,
        responses={
            200: {
                "description": "The card",
                "content": {"text/markdown": {"schema": {"type": "string"}}},
            },
            404: {
                "description": "The model was stored without a card",
                "content": {"application/json": {"schema": MESSAGE_SCHEMA}},
            },
        },
    )
    def model_card(self):
        serving = self.serving
        if serving.card is None:
            error = f"model {serving.tag} was stored without a model card"
            return JSONResponse({"error": error}, status_code=404)
        return MarkdownResponse(serving.card)


def load_serving(model: bentoml.Model | bentoml.models.BentoModel) -> Serving:
    """A store model loaded for serving, after its files matched their sha256 record."""
    from sentiment.models.predictor import load_predictor
    from sentiment.models.trust import bento_model_dir

    predictor = load_predictor(bento_model_dir(model))
    names = label_names(predictor.meta, f"BentoML model {model.tag}")
    version = model.info.labels.get("registry_version") or str(model.tag.version)
    threshold, card = predictor.meta.get("threshold"), model.info.metadata.get(MODEL_CARD_KEY)
    return Serving(str(model.tag), version, predictor, threshold, names, card)


ANSWERING: dict[str, Sentiment] = {}  # this worker's service, once it has started


def answering_version() -> str | None:
    """The version this worker answers with now (None before its model is loaded)."""
    service = ANSWERING.get("service")
    return service.serving.version if service is not None else None


if setting("SENTIMENT_API_TOKEN"):
    from sentiment.serving.auth import BearerAuth

    Sentiment.add_asgi_middleware(
        BearerAuth,
        token=setting("SENTIMENT_API_TOKEN"),
        scope=setting("SENTIMENT_API_TOKEN_SCOPE"),
    )
# After the token check (middlewares added first run first): refuse what is not a valid
# request before BentoML reads it.
Sentiment.add_asgi_middleware(RequestGuard, routes=ROUTES, max_body=MAX_BODY_BYTES)
# Last: `/readyz` answers with the version answering now.
Sentiment.add_asgi_middleware(VersionHeader, version=answering_version)
