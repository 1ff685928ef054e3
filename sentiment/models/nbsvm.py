"""NB-weighted log-count-ratio features under a logistic regression: NBSVM (Wang and Manning,
"Baselines and Bigrams", ACL 2012), with the logistic loss as in its later variants.

For each class k (one model for two classes), a feature's weight is its log-count ratio
``r_k = log((p_k / |p_k|_1) / (q_k / |q_k|_1))``, ``p_k`` the smoothed (``alpha``) counts of
the feature over class k's rows and ``q_k`` over the others', and a logistic regression learns
on the features scaled by ``r_k``. Counts are of presence (``binarize``, the paper's choice)
or of the TF-IDF values as given. The fitted model keeps one weight vector per class,
``r_k`` times the regression's coefficients, so scoring is one sparse product and the saved
file holds arrays only.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted


class NBLogisticRegression(ClassifierMixin, BaseEstimator):
    """NBSVM with a logistic loss, one vs rest over more than two classes."""

    def __init__(
        self,
        alpha: float = 1.0,
        C: float = 1.0,
        binarize: bool = True,
        class_weight: str | None = None,
        max_iter: int = 2000,
        random_state: int | None = None,
    ) -> None:
        self.alpha = alpha
        self.C = C
        self.binarize = binarize
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.random_state = random_state

    def _counts(self, x: sp.spmatrix) -> sp.csr_matrix:
        x = sp.csr_matrix(x, dtype=np.float64)
        return (x > 0).astype(np.float64) if self.binarize else x

    def fit(self, x: sp.spmatrix, y: np.ndarray) -> NBLogisticRegression:
        """One ratio vector and one regression per class (the positive one for two)."""
        counts, y = self._counts(x), np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"NBSVM needs two classes or more, got {self.classes_.tolist()}")
        ones = self.classes_[1:] if len(self.classes_) == 2 else self.classes_
        weights, intercepts = [], []
        for k in ones:
            mine = y == k
            p = np.asarray(counts[mine].sum(axis=0)).ravel() + self.alpha
            q = np.asarray(counts[~mine].sum(axis=0)).ravel() + self.alpha
            ratio = np.log(p / p.sum()) - np.log(q / q.sum())
            regression = LogisticRegression(
                C=self.C,
                class_weight=self.class_weight,
                max_iter=self.max_iter,
                random_state=self.random_state,
            ).fit(counts @ sp.diags(ratio), mine)
            weights.append(ratio * regression.coef_[0])
            intercepts.append(regression.intercept_[0])
        self.coef_ = np.vstack(weights)
        self.intercept_ = np.asarray(intercepts)
        self.n_features_in_ = counts.shape[1]
        return self

    def decision_function(self, x: sp.spmatrix) -> np.ndarray:
        """Each class's score (one column for two classes: the positive one's)."""
        check_is_fitted(self, "coef_")
        scores = np.asarray(self._counts(x) @ self.coef_.T) + self.intercept_
        return scores.ravel() if len(self.classes_) == 2 else scores

    def predict_proba(self, x: sp.spmatrix) -> np.ndarray:
        """Sigmoids of the scores, normalised over the classes beyond two (as one vs rest)."""
        scores = self.decision_function(x)
        if len(self.classes_) == 2:
            positive = 1.0 / (1.0 + np.exp(-scores))
            return np.column_stack([1.0 - positive, positive])
        proba = 1.0 / (1.0 + np.exp(-scores))
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, x: sp.spmatrix) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(x), axis=1)]
