"""The project's library: what the DVC stages in ``stages/``, the service and the commands
call. One folder per concern:

- ``data``: raw reviews to prepared splits, text cleaning and tokenising, label schemes;
- ``features``: the TF-IDF representation;
- ``models``: the predictors and their backends (scikit-learn, torch, ONNX Runtime), model
  directories, encoders, the classical search and transformer training, pinned numerics;
- ``evaluation``: metrics, the behavioural suite, candidate scoring and the champion rule;
- ``registry``: the gate's decision, the MLflow registry and BentoML store, promotion;
- ``monitoring``: drift detection;
- ``serving``: the service's middleware and request rules;

and beside them ``paths`` (every pipeline path), ``params`` (params.yaml, checked),
``tracking`` (MLflow), ``fileio``, ``cli`` and the commands ``score``, ``report`` and
``summary`` (``python -m sentiment.<command>``).
"""
