"""Metrics, the behavioural suite, candidate scoring and the champion rule."""
