"""The retrain loop: a drop of new rated reviews to a branch with the retrained pipeline.

``drop`` reads and validates the drop's files, ``ledger`` decides which rows are new,
``body`` writes the pull request's text, ``git`` and ``steps`` act on the checkout, the
DVC remote and ``origin``; ``python -m sentiment.retrain`` runs them in order.
"""
