"""Baseline for bench.serve_load: FastAPI scoring one text per request, as the reference
projects served (no batching, no log). Same promoted model, same predictor code;
``SENTIMENT_INFERENCE_BACKEND`` picks torch or ONNX Runtime for a transformer."""

from __future__ import annotations

import os

import bentoml
from fastapi import FastAPI
from pydantic import BaseModel

from sentiment.models.predictor import label_ids, load_predictor
from sentiment.models.trust import bento_model_dir
from sentiment.params import production_tag

predictor = load_predictor(
    bento_model_dir(bentoml.models.get(os.environ.get("SENTIMENT_MODEL_TAG") or production_tag()))
)
app = FastAPI()


class Review(BaseModel):
    text: str


@app.post("/predict")
def predict(review: Review) -> dict:
    proba = predictor.predict_proba([review.text])
    label = int(label_ids(proba, predictor.meta.get("threshold"))[0])
    return {"label": ["negative", "positive"][label], "score": float(proba[0, 1])}
