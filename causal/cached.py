"""Cached nuisance predictions handed to EconML as ``model_y`` / ``model_t`` (``cv=1``): no refit inside EconML."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin


class CachedRegressor(RegressorMixin, BaseEstimator):
    """Hands precomputed out-of-fold outcome predictions to EconML as ``model_y``.

    Used with ``cv=1`` (EconML's "no cross-fitting" path): ``_crossfit`` then fits this model once on all rows
    in their original order and predicts those same rows, so EconML's residuals ``Y - m(x)`` are exactly the
    cached cross-fitted ones and no nuisance model is refitted. ``fit`` checks the target it is given equals the
    one the predictions were made for, so rows cannot be misaligned silently.

    Parameters
    ----------
    predictions : ndarray of shape (n,)
        Out-of-fold E[Y | x].
    target : ndarray of shape (n,)
        The outcome the predictions belong to.
    """

    def __init__(self, predictions: np.ndarray, target: np.ndarray):
        self.predictions = predictions
        self.target = target

    def fit(self, X: np.ndarray, y: np.ndarray, **_: Any) -> CachedRegressor:
        y = np.asarray(y, dtype=np.float64).ravel()
        if len(y) != len(self.target) or not np.array_equal(y, np.asarray(self.target, dtype=np.float64).ravel()):
            raise ValueError(
                "CachedRegressor: EconML passed a different outcome than the cached predictions belong to; "
                "it must be fitted with cv=1 on the same rows in the same order"
            )
        self.n_features_in_ = np.shape(X)[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if np.shape(X)[0] != len(self.predictions):
            raise ValueError(
                f"CachedRegressor holds {len(self.predictions)} cached predictions and cannot predict "
                f"{np.shape(X)[0]} new rows"
            )
        return np.asarray(self.predictions, dtype=np.float64)


class CachedClassifier(ClassifierMixin, BaseEstimator):
    """Hands precomputed out-of-fold propensities to EconML as ``model_t`` (binary treatment, ``cv=1``).

    Parameters
    ----------
    propensity : ndarray of shape (n,)
        Out-of-fold P(T=1 | x).
    target : ndarray of shape (n,)
        The 0/1 treatment the propensities belong to.
    """

    def __init__(self, propensity: np.ndarray, target: np.ndarray):
        self.propensity = propensity
        self.target = target

    def fit(self, X: np.ndarray, y: np.ndarray, **_: Any) -> CachedClassifier:
        y = np.asarray(y).ravel()
        if len(y) != len(self.target) or not np.array_equal(
            y.astype(np.int64), np.asarray(self.target).astype(np.int64)
        ):
            raise ValueError(
                "CachedClassifier: EconML passed a different treatment than the cached propensities belong to; "
                "it must be fitted with cv=1 on the same rows in the same order"
            )
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = np.shape(X)[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if np.shape(X)[0] != len(self.propensity):
            raise ValueError(
                f"CachedClassifier holds {len(self.propensity)} cached propensities and cannot predict "
                f"{np.shape(X)[0]} new rows"
            )
        e = np.asarray(self.propensity, dtype=np.float64)
        return np.column_stack([1.0 - e, e])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)
