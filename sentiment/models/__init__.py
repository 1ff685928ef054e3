"""Predictors and their backends, model directories, encoders, the classical search, the
transformer training, and evaluate's candidate scoring and champion rule."""
