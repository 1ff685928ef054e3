"""MLflow "model from code" for any flavor: MLflow loads this file, the stages don't import it.

The logged model carries the model directory as an artifact and scores through the same
``sentiment.models.predictor`` code as evaluate and the service.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class SentimentModel(PythonModel):
    """``predict(DataFrame with a 'text' column)`` -> label id and P(positive) per row."""

    def load_context(self, context: Any) -> None:
        from sentiment.models.predictor import load_predictor

        self.predictor = load_predictor(context.artifacts["model_dir"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        from sentiment.models.predictor import label_ids

        proba = self.predictor.predict_proba(model_input["text"].astype(str).tolist())
        labels = label_ids(proba, self.predictor.meta.get("threshold"))
        return pd.DataFrame({"label": labels, "score": proba[:, -1]})


set_model(SentimentModel())
