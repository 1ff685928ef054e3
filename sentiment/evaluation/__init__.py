"""Metrics and the behavioural suite: what every model is measured by."""
