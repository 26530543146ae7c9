"""Outcome super learner: a convex combination of candidate outcome models, weighted to their out-of-fold error.

The propensity's stack combines candidates on the logit scale (:class:`causal.learners.LogitStack`); the outcome's
combines their predictions linearly, with non-negative weights that sum to one (van der Laan, Polley & Hubbard,
2007: non-negative least squares on the cross-validated predictions, then normalised). The weights minimise the
same loss the single choice uses (``nuisance.outcome_loss``): each unit's own-arm squared error, inverse-propensity
weighted per arm under ``weighted``, so the combination targets the error of mu1 and mu0 over all units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import nnls
from sklearn.base import BaseEstimator, RegressorMixin, clone

# Members whose weight falls below this share are dropped (and the rest renormalised): each member costs one more
# cross-fit per repeat for a contribution within the noise of the weights themselves.
MIN_WEIGHT = 0.02
# Weight of the sum-to-one row, relative to the whole design's sum of squares: the sum is 1 to about 1e-6.
SUM_PENALTY = 1e6


def mean_stack_weights(predictions: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Convex weights of the columns of ``predictions`` that minimise the weighted squared error to ``y`` (non-negative,
    summing to one).

    Parameters
    ----------
    predictions : ndarray of shape (n, k)
        Out-of-fold predictions of k candidates (each unit's own-arm prediction).
    y : ndarray of shape (n,)
    sample_weight : ndarray of shape (n,), optional
        Non-negative unit weights.

    Returns
    -------
    ndarray of shape (k,)
        Non-negative, summing to one; weights under :data:`MIN_WEIGHT` set to zero. All zero when no column
        helps (then the caller keeps the single best).
    """
    a = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    root = np.sqrt(np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64))
    design, target = a * root[:, None], y * root
    # Sum to one: a heavily weighted extra row (a penalty on 1 - sum(w)), solved by NNLS with the rest.
    scale = np.sqrt(SUM_PENALTY * max(float(np.sum(design**2)), 1.0))
    weights, _ = nnls(np.vstack([design, np.full(a.shape[1], scale)]), np.append(target, scale))
    for _ in range(2):  # normalise, drop the negligible, normalise again
        total = weights.sum()
        if total <= 0:
            return np.zeros(a.shape[1])
        weights = weights / total
        weights[weights < MIN_WEIGHT] = 0.0
    return weights / weights.sum()


class MeanStack(RegressorMixin, BaseEstimator):
    """Regressor predicting ``sum_k weights[k] * f_k(x)``, each ``f_k`` a clone of ``estimators[k]`` fitted on the
    training rows; the weights are fixed (from :func:`mean_stack_weights` on out-of-fold predictions).

    Parameters
    ----------
    estimators : sequence of estimators
        Unfitted members.
    weights : sequence of float
        One per member, non-negative, summing to one.
    """

    def __init__(self, estimators: Sequence[Any], weights: Sequence[float]):
        self.estimators = estimators
        self.weights = weights

    def fit(self, x: np.ndarray, y: np.ndarray) -> MeanStack:
        """Fit every member on (x, y); ``x`` of shape (n, p), ``y`` of shape (n,)."""
        if len(self.estimators) != len(self.weights):
            raise ValueError(f"{len(self.estimators)} estimators but {len(self.weights)} weights")
        self.estimators_ = [clone(m).fit(x, y) for m in self.estimators]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Weighted mean of the members' predictions, shape (n,)."""
        parts = [np.asarray(m.predict(x), dtype=np.float64) for m in self.estimators_]
        return np.sum([w * p for w, p in zip(self.weights, parts, strict=True)], axis=0)
