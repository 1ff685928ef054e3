"""The project's library: what the DVC stages in ``stages/``, the service and the commands
call. One folder per concern, imports running one way (docs/development.md):

- ``registry``: the gate's decision, the MLflow registry and BentoML store, promotion;
- ``monitoring``: drift detection (the battery, reference, report) and Prometheus files;
- ``scoring``: batch scoring of files, in one process or on Ray, local or on a bucket;
- ``serving``: the service's middleware, request rules and batching;
- ``models``: the predictors and their backends (scikit-learn, torch, ONNX Runtime), model
  trust, encoders, the classical search, transformer training, candidate scoring;
- ``evaluation``: metrics and the behavioural suite;
- ``features``: the TF-IDF representation;
- ``data``: raw reviews to prepared splits, text cleaning, label schemes, file reading;

and beside them ``commands`` (every ``python -m`` entry point), ``settings`` (every
environment variable), ``paths``, ``params``, ``headlines``, ``tracking`` (MLflow),
``fileio``, ``cli``, and the commands ``ingest``, ``report`` and ``summary``.
"""
