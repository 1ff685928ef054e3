"""The gate's decision, the MLflow registry and BentoML store, promotion and rollback."""
