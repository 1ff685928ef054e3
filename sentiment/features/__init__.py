"""The TF-IDF representation featurize fits."""
