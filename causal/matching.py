"""Propensity-score nearest-neighbour matching with a caliper, and its Abadie--Imbens variance.

Units are matched on the logit of the cross-fitted propensity (one dimension; scikit-learn's ``NearestNeighbors``),
with replacement, ``n_neighbors`` = M matches per unit, and a caliper of ``caliper`` standard deviations of the
logit propensity (0.2 is Austin's 2011 recommendation); a unit with no match inside the caliper is left out and
counted (the estimand becomes the effect on the matched units).

* ATT: each treated unit is matched to its M nearest controls; tau = mean over matched treated units of
  Y_i - mean(Y of its matches).
* ATE: every unit is also matched to the other arm, and tau = mean over matched units of Y_hat(1) - Y_hat(0),
  the missing potential outcome imputed by the matches.

Variance (Abadie & Imbens, 2006, Econometrica 74(1), Theorem 7; Stata's ``teffects nnmatch`` ``vce(robust)``): with
K_j the number of times unit j is used as a match and sigma^2_j its conditional outcome variance, estimated from
its J nearest neighbours in its own arm (sigma^2_j = J / (J + 1) (Y_j - mean of their Y)^2)::

    ATE: V = [ sum_i (Y_hat1_i - Y_hat0_i - tau)^2 + sum_j ((K_j / M)^2 + (2M - 1) / M * K_j / M) sigma^2_j ] / N^2
    ATT: V = [ sum_{i treated} (Y_i - Y_hat0_i - tau)^2 + sum_{j control} K_j (K_j - 1) / M^2 sigma^2_j ] / N1^2

Bias correction (Abadie & Imbens, 2011, JBES 29(1); Stata's ``biasadj``), on by default: a match's outcome is
shifted by the outcome model's difference between the two units, Y_j + mu_a(X_i) - mu_a(X_j) (a = the match's arm),
with the run's cross-fitted mu1, mu0; it removes the bias from imperfect matches (a match on an estimated score is
never exact), and the variance formula stays the same. The matched pairs handed to Rosenbaum's bounds are the raw
differences Y_i - Y_j.

No bootstrap: the bootstrap is not valid for nearest-neighbour matching (Abadie & Imbens, 2008). The formula
treats the propensity as known; Abadie & Imbens (2016) show the correction for an estimated propensity makes the
ATE variance smaller (so this one is conservative for the ATE) and can go either way for the ATT. The matching
estimator is not bias-corrected, so with a continuous score its bias shrinks with the caliper and the sample size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

from causal.dml import effect

DEFAULT_CALIPER = 0.2
DEFAULT_NEIGHBORS = 1
DEFAULT_VARIANCE_NEIGHBORS = 2


@dataclass
class MatchResult:
    """One matching estimate.

    Attributes
    ----------
    record : dict
        The effect record (``estimate``, ``stderr``, ``ci_low``, ``ci_high``) plus ``estimand``, ``n_matched``,
        ``n_unmatched``, ``caliper`` and ``method``.
    contributions : ndarray of shape (n,)
        Per-unit terms whose mean over all n units is the estimate (0 for unmatched units); the agreement test uses
        them as the estimator's linearisation.
    pair_differences : ndarray
        ATT only: Y_i - mean(Y of its matches) per matched treated unit (the matched pairs of Rosenbaum's bounds).
    """

    record: dict[str, Any]
    contributions: np.ndarray
    pair_differences: np.ndarray


def logit(e: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """log(e / (1 - e)) with e kept in [eps, 1 - eps]."""
    e = np.clip(np.asarray(e, dtype=np.float64), eps, 1 - eps)
    return np.log(e / (1 - e))


def _neighbours(score: np.ndarray, source: np.ndarray, target: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row index in ``target``, its ``m`` nearest rows of ``source`` by ``score``: (distances, indices
    into the full arrays), each of shape (len(target), m)."""
    nn = NearestNeighbors(n_neighbors=m).fit(score[source, None])
    dist, idx = nn.kneighbors(score[target, None])
    return dist, source[idx]


def conditional_variance(y: np.ndarray, t: np.ndarray, score: np.ndarray, j: int) -> np.ndarray:
    """sigma^2_i = J / (J + 1) * (Y_i - mean of Y over its J nearest same-arm neighbours)^2, shape (n,)."""
    sigma2 = np.zeros(len(y))
    for arm in (0, 1):
        rows = np.flatnonzero(t == arm)
        k = min(j, len(rows) - 1)
        if k < 1:
            continue
        _, idx = _neighbours(score, rows, rows, k + 1)
        own = idx[:, 1:]  # the first neighbour of a unit is itself (ties aside)
        sigma2[rows] = k / (k + 1) * (y[rows] - y[own].mean(axis=1)) ** 2
    return sigma2


def match_effect(
    kind: str,
    y: np.ndarray,
    t: np.ndarray,
    propensity: np.ndarray,
    *,
    caliper: float = DEFAULT_CALIPER,
    n_neighbors: int = DEFAULT_NEIGHBORS,
    variance_neighbors: int = DEFAULT_VARIANCE_NEIGHBORS,
    outcome_models: tuple[np.ndarray, np.ndarray] | None = None,
    alpha: float = 0.05,
) -> MatchResult:
    """Nearest-neighbour propensity matching estimate of the ``ate`` or the ``att`` (see the module docstring).

    Parameters
    ----------
    kind : {"ate", "att"}
    y, t, propensity : ndarray of shape (n,)
        Outcome, 0/1 treatment and (cross-fitted) propensity.
    caliper : float or None
        Largest match distance in standard deviations of the logit propensity; ``None``: no caliper.
    n_neighbors : int
        M, matches per unit (with replacement).
    variance_neighbors : int
        J, same-arm neighbours of the conditional variance estimate.
    outcome_models : (mu1, mu0), each of shape (n,), optional
        Cross-fitted outcome predictions for the bias correction; ``None``: no correction.
    alpha : float
        1 - confidence level.

    Returns
    -------
    MatchResult
    """
    if kind not in ("ate", "att"):
        raise ValueError(f"matching estimand must be ate or att, got {kind!r}")
    y, t = np.asarray(y, dtype=np.float64), np.asarray(t).astype(int)
    score = logit(propensity)
    m = int(n_neighbors)
    if min(np.sum(t == 1), np.sum(t == 0)) < m:
        raise ValueError(f"matching needs at least n_neighbors={m} units in each arm")
    width = np.inf if caliper is None else float(caliper) * float(np.std(score, ddof=1))
    imputed = np.full(len(y), np.nan)  # the other arm's outcome imputed by the matches (bias-corrected)
    raw = np.full(len(y), np.nan)  # the same without the correction
    used = np.zeros(len(y))  # K_j: times unit j serves as a match
    arms = (1,) if kind == "att" else (1, 0)
    for arm in arms:
        target, source = np.flatnonzero(t == arm), np.flatnonzero(t != arm)
        dist, idx = _neighbours(score, source, target, m)
        ok = dist.max(axis=1) <= width
        raw[target[ok]] = y[idx[ok]].mean(axis=1)
        shift = 0.0
        if outcome_models is not None:
            mu = np.asarray(outcome_models[0 if arm == 1 else 1], dtype=np.float64)  # the matches' arm
            shift = mu[target[ok]] - mu[idx[ok]].mean(axis=1)
        imputed[target[ok]] = raw[target[ok]] + shift
        np.add.at(used, idx[ok].ravel(), 1.0)
    matched = ~np.isnan(imputed) & (t == 1 if kind == "att" else True)
    if not matched.any():
        raise ValueError(f"no unit has a match within the caliper ({caliper} SD of the logit propensity)")
    sigma2 = conditional_variance(y, t, score, int(variance_neighbors))
    diff = np.where(t == 1, y - imputed, imputed - y)  # Y_hat(1) - Y_hat(0)
    n_m = int(matched.sum())
    tau = float(diff[matched].mean())
    k = used / m
    if kind == "att":
        extra = np.where(t == 0, used * (used - 1) / m**2 * sigma2, 0.0)
    else:
        extra = (k**2 + (2 * m - 1) / m * k) * sigma2
    var = (np.sum((diff[matched] - tau) ** 2) + np.sum(extra)) / n_m**2
    contributions = np.where(matched, diff, 0.0) * len(y) / n_m
    record = effect(
        tau,
        float(np.sqrt(var)),
        alpha,
        estimand=kind,
        n_matched=n_m,
        n_unmatched=int((t == 1).sum() if kind == "att" else len(y)) - n_m,
        caliper=None if caliper is None else float(caliper),
        n_neighbors=m,
        bias_corrected=outcome_models is not None,
        method=f"propensity-score nearest-neighbour matching ({kind.upper()}, {m} match(es) with replacement, "
        f"{'bias-corrected, ' if outcome_models is not None else ''}Abadie-Imbens variance)",
    )
    pairs = (y - raw)[matched] if kind == "att" else np.empty(0)
    return MatchResult(record=record, contributions=contributions, pair_differences=pairs)
