"""Drift detection on text, for the pipeline and for the inference log."""
