"""Predictors and their backends, model directories, encoders, search and training."""
