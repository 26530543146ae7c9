"""Doubly robust (AIPW) estimates of the stated estimands, with clipping and repeated cross-fitting.

Estimands (config ``estimand``)
-------------------------------
* ``ate`` -- the average effect over all units: E[Y(1) - Y(0)];
* ``att`` -- the average effect over the treated units: E[Y(1) - Y(0) | T = 1];
* ``ate_overlap`` -- the average effect over the units the overlap step keeps (its trimming rule): the ATE of that
  sub-population, which differs from the ATE when effects vary with the propensity.

Scores (Robins, Rotnitzky & Zhao, 1994; Hahn, 1998; the scores of DoubleML's IRM and EconML's DRLearner), with the
cross-fitted propensity e(x) and the outcome of each arm, mu1(x) = E[Y | T=1, x] and mu0(x) = E[Y | T=0, x]
(:class:`causal.nuisance.CrossFitNuisance`: one model of (x, T) or one model per arm)::

    ATE: psi_i = mu1 - mu0 + t (y - mu1) / e - (1 - t) (y - mu0) / (1 - e)
    ATT: psi_i = [t (y - mu0) - (1 - t) e (y - mu0) / (1 - e)] / p,      p = mean(t)

The estimate is the mean of psi; its standard error the standard deviation of the influence function
(psi_i - theta for the ATE; psi_i - t_i theta / p for the ATT) over sqrt(n). Neither depends on any CATE model.
With cluster labels (``data.cluster``, e.g. the simulator's titles, whose artworks share a title-level shock; else
``nuisance.cluster``) the variance is cluster-robust: the influence is summed within each cluster,
var = G / (G - 1) * sum_g (sum_{i in g} IF_i)^2 / n^2 over G clusters (with one unit per cluster: the plain one).

Extreme propensities (the documented rule): e is clipped to [clip, 1 - clip] (``dml.clip``, default 0.05; for the
ATT only the upper bound applies) inside the scores, and the number of units clipped is reported with every
estimate. Clipping keeps the population (unlike
trimming, which changes the estimand to ``ate_overlap``) at the price of a small bias for the clipped units.

Model-averaged standard error: with a stacked outcome (``nuisance.stack`` with ``outcome``) the estimate is the
weighted mean of the estimates with each member's outcome model alone (the score is linear in mu1 and mu0), and its
standard error counts their disagreement, sum_k w_k sqrt(se_k^2 + (theta_k - theta)^2) (Buckland, Burnham & Augustin,
1997). Where the propensity leaves outcome-model error uncorrected (units without comparable units of the other arm,
a poorly fitted propensity), members that fit equally well can still give different answers; the plain standard
error would ignore that.

Repeated cross-fitting (``nuisance.repeats`` = R fold splits): each repeat r gives (theta_r, se_r); the estimate is
the median of theta_r and its variance the median of se_r^2 + (theta_r - theta)^2 (Chernozhukov et al., 2018,
section 3.4; DoubleML's aggregation), which adds the spread due to the fold split to the sampling variance.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from causal.dml import effect

log = logging.getLogger(__name__)

ESTIMANDS = ("ate", "att", "ate_overlap")
POPULATIONS = {
    "ate": "all units",
    "att": "treated units",
    "ate_overlap": "units kept by the overlap rule",
}
# 0.05: on scripts/bench_accuracy.py (7 seeds, n=500) 0.01 let one Nie & Wager A replication's spline propensity of
# 0.02 drive its ATE off by 0.9 (mean abs error 0.23 vs 0.11 with 0.05); elsewhere the two were within noise.
DEFAULT_CLIP = 0.05
# Share of clipped units above which the estimate is said to extrapolate (log here, a sentence in the report): the
# doubly robust correction has no units of the other arm there, so those units' effects are the outcome models'.
# On ACIC 2016 instance 1 (scripts/bench_accuracy.py) 47% of units had no treated unit near them and the ATE was
# off by 6 standard errors.
EXTRAPOLATED_SHARE = 0.05


def clip_propensity(
    propensity: np.ndarray, clip: float = DEFAULT_CLIP, *, upper_only: bool = False
) -> tuple[np.ndarray, int]:
    """e clipped to [clip, 1 - clip] (to at most 1 - clip with ``upper_only``: the ATT divides by 1 - e only, and
    raising a control's tiny e would give it weight), and how many units were moved (shape (n,), int)."""
    if not 0 <= clip < 0.5:
        raise ValueError(f"dml.clip must be in [0, 0.5), got {clip}")
    e = np.asarray(propensity, dtype=np.float64)
    clipped = np.minimum(e, 1 - clip) if upper_only else np.clip(e, clip, 1 - clip)
    return clipped, int(np.sum(clipped != e))


def ate_scores(y: np.ndarray, t: np.ndarray, e: np.ndarray, mu1: np.ndarray, mu0: np.ndarray) -> np.ndarray:
    """AIPW scores of the ATE, shape (n,); ``e`` already clipped."""
    y = np.asarray(y, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    return mu1 - mu0 + t * (y - mu1) / e - (1 - t) * (y - mu0) / (1 - e)


def att_scores(y: np.ndarray, t: np.ndarray, e: np.ndarray, mu0: np.ndarray) -> np.ndarray:
    """Scores whose mean is the AIPW ATT, shape (n,); ``e`` already clipped."""
    y = np.asarray(y, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    p = t.mean()
    return (t * (y - mu0) - (1 - t) * e * (y - mu0) / (1 - e)) / p


def cov_of_mean(values: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Covariance matrix (k, k) of the column means of ``values`` (n, k) or (n,): the sample covariance over n, or
    cluster-robust with ``groups`` (cluster labels, shape (n,)): G / (G - 1) * sum_g S_g S_g' / n^2, S_g the
    within-cluster sums of the centred rows (with one unit per cluster: the plain one, up to its ddof)."""
    d = np.asarray(values, dtype=np.float64)
    d = d[:, None] if d.ndim == 1 else d
    n = d.shape[0]
    if groups is None:
        return np.atleast_2d(np.cov(d, rowvar=False)) / n
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    sums = np.zeros((int(codes.max()) + 1, d.shape[1]))
    np.add.at(sums, codes.ravel(), d - d.mean(axis=0))
    n_groups = sums.shape[0]
    if n_groups < 2:
        raise ValueError("cluster-robust standard errors need at least two clusters")
    return np.atleast_2d(n_groups / (n_groups - 1) * sums.T @ sums) / n**2


def mean_stderr(influence: np.ndarray, groups: np.ndarray | None = None) -> float:
    """Standard error of a mean whose per-unit influence is ``influence`` (shape (n,), centred): sqrt(sum IF^2 /
    ((n - 1) n)), or cluster-robust with ``groups``: sqrt(G / (G - 1) * sum_g (sum_{i in g} IF_i)^2) / n
    (:func:`cov_of_mean`)."""
    return float(np.sqrt(cov_of_mean(influence, groups)[0, 0]))


def _one(
    kind: str,
    y: np.ndarray,
    t: np.ndarray,
    e: np.ndarray,
    mu1: np.ndarray,
    mu0: np.ndarray,
    groups: np.ndarray | None = None,
) -> tuple:
    """(theta, se, scores) of one repeat."""
    if kind == "att":
        s = att_scores(y, t, e, mu0)
        theta = float(s.mean())
        influence = s - np.asarray(t, dtype=np.float64) * theta / np.mean(t)
    else:
        s = ate_scores(y, t, e, mu1, mu0)
        theta = float(s.mean())
        influence = s - theta
    return theta, mean_stderr(influence, groups), s


def _repeats(
    kind: str,
    y: np.ndarray,
    t: np.ndarray,
    e_all: np.ndarray,
    mu1_all: np.ndarray,
    mu0_all: np.ndarray,
    clip: float,
    groups: np.ndarray | None,
) -> tuple[list[float], list[float], list[int], np.ndarray]:
    """(theta_r, se_r, units clipped) of each repeat and the scores averaged over the repeats."""
    arrays = [np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in (e_all, mu1_all, mu0_all)]
    thetas, ses, n_clipped = [], [], []
    scores = np.zeros(len(y))
    for e, mu1, mu0 in zip(*arrays, strict=True):
        e_c, moved = clip_propensity(e, clip, upper_only=kind == "att")
        theta, se, s = _one(kind, y, t, e_c, mu1, mu0, groups)
        thetas.append(theta)
        ses.append(se)
        n_clipped.append(moved)
        scores += s / len(arrays[0])
    return thetas, ses, n_clipped, scores


def model_averaged_stderr(
    kind: str,
    y: np.ndarray,
    t: np.ndarray,
    e_all: np.ndarray,
    members: Mapping[str, tuple[float, np.ndarray, np.ndarray]],
    theta: float,
    *,
    clip: float = DEFAULT_CLIP,
    groups: np.ndarray | None = None,
) -> tuple[float, dict[str, float]]:
    """Standard error of the stacked-outcome estimate ``theta`` that counts the outcome learners' disagreement
    (Buckland, Burnham & Augustin, 1997): sum_k w_k sqrt(se_k^2 + (theta_k - theta)^2), theta_k and se_k the
    estimate with member k's outcome alone (median over repeats, :func:`aggregate`).

    Returns the standard error and ``{member: theta_k}``."""
    total, by_member = 0.0, {}
    for name, (weight, mu1, mu0) in members.items():
        thetas, ses, _, _ = _repeats(kind, y, t, e_all, mu1, mu0, clip, groups)
        theta_k, se_k = aggregate(np.array(thetas), np.array(ses))
        by_member[name] = theta_k
        total += float(weight) * float(np.sqrt(se_k**2 + (theta_k - theta) ** 2))
    return total, by_member


def member_scores(
    kind: str,
    y: np.ndarray,
    t: np.ndarray,
    e_all: np.ndarray,
    members: Mapping[str, tuple[float, np.ndarray, np.ndarray]],
    *,
    clip: float = DEFAULT_CLIP,
) -> dict[str, tuple[float, np.ndarray]]:
    """``{member: (weight, per-unit scores averaged over the repeats)}`` of a stacked outcome's members (arrays as
    in :func:`aipw`): their weighted sum is the stack's scores, for model-averaged group effects
    (:func:`causal.heterogeneity.group_effects`)."""
    return {
        name: (float(weight), _repeats(kind, y, t, e_all, mu1, mu0, clip, None)[3])
        for name, (weight, mu1, mu0) in members.items()
    }


def aggregate(thetas: np.ndarray, ses: np.ndarray) -> tuple[float, float]:
    """Median aggregation over repeated cross-fits: (median theta, sqrt(median(se^2 + (theta_r - median)^2)))."""
    thetas, ses = np.asarray(thetas, dtype=np.float64), np.asarray(ses, dtype=np.float64)
    theta = float(np.median(thetas))
    return theta, float(np.sqrt(np.median(ses**2 + (thetas - theta) ** 2)))


def aipw(
    kind: str,
    y: np.ndarray,
    t: np.ndarray,
    propensity: np.ndarray,
    outcome_treated: np.ndarray,
    outcome_control: np.ndarray,
    *,
    clip: float = DEFAULT_CLIP,
    alpha: float = 0.05,
    groups: np.ndarray | None = None,
    members: Mapping[str, tuple[float, np.ndarray, np.ndarray]] | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """AIPW estimate of ``ate`` (also used for ``ate_overlap`` on the kept rows) or ``att``.

    Parameters
    ----------
    kind : {"ate", "att", "ate_overlap"}
    y, t : ndarray of shape (n,)
    propensity, outcome_treated, outcome_control : ndarray of shape (n,) or (R, n)
        Cross-fitted e, mu1, mu0; with R repeats (rows), the estimate is median-aggregated (:func:`aggregate`).
    clip : float
        Propensity clipping bound.
    alpha : float
        1 - confidence level.
    groups : ndarray of shape (n,), optional
        Cluster labels: cluster-robust standard errors (:func:`mean_stderr`).
    members : mapping, optional
        A stacked outcome's members, ``{name: (weight, mu1, mu0)}`` (arrays as above; the outcome arrays are their
        weighted sums, ``CrossFitNuisance.outcome_members_``): the standard error is then model-averaged
        (:func:`model_averaged_stderr`), and the record adds ``stderr_within_model`` and ``estimates_by_member``.

    Returns
    -------
    record : dict
        The effect record (``estimate``, ``stderr``, ``ci_low``, ``ci_high``) plus ``n``, ``estimand``,
        ``population``, ``n_clipped`` (units clipped, in the first repeat), ``clip``, ``repeats`` and
        ``estimates_by_repeat``.
    scores : ndarray of shape (n,)
        Per-unit scores averaged over the repeats (their mean is the average of the repeats' estimates).
    """
    if kind not in ESTIMANDS:
        raise ValueError(f"estimand must be one of {ESTIMANDS}, got {kind!r}")
    if kind == "att" and not np.any(np.asarray(t) == 1):
        raise ValueError("the ATT needs treated units")
    e_all = np.atleast_2d(np.asarray(propensity, dtype=np.float64))
    thetas, ses, n_clipped, scores = _repeats(kind, y, t, e_all, outcome_treated, outcome_control, clip, groups)
    theta, se = aggregate(np.array(thetas), np.array(ses))
    averaged: dict[str, Any] = {}
    if members is not None and len(members) > 1:
        se_within = se
        se, by_member = model_averaged_stderr(kind, y, t, e_all, members, theta, clip=clip, groups=groups)
        averaged = {"stderr_within_model": se_within, "estimates_by_member": by_member}
    if n_clipped[0] >= EXTRAPOLATED_SHARE * len(y):
        log.warning(
            "%s: %d of %d units (%.0f%%) have a propensity beyond the clipping bound %g: their effect is the outcome "
            "models' extrapolation, an error the interval does not fully include (estimand=ate_overlap does not "
            "extrapolate)",
            kind,
            n_clipped[0],
            len(y),
            100 * n_clipped[0] / len(y),
            clip,
        )
    clusters = {} if groups is None else {"n_clusters": int(len(np.unique(np.asarray(groups))))}
    record = effect(
        theta,
        se,
        alpha,
        n=int(len(y) if kind != "att" else np.sum(np.asarray(t) == 1)),
        n_units=int(len(y)),
        estimand=kind,
        population=POPULATIONS[kind],
        method=f"AIPW ({kind.upper() if kind != 'ate_overlap' else 'ATE on the overlap population'}) with "
        "per-arm outcome predictions"
        + (f"; standard error robust to {clusters['n_clusters']} clusters" if clusters else "")
        + (f"; model-averaged over {len(averaged['estimates_by_member'])} outcome learners" if averaged else ""),
        n_clipped=int(n_clipped[0]),
        clip=float(clip),
        repeats=len(thetas),
        estimates_by_repeat=[float(v) for v in thetas],
        **clusters,
        **averaged,
    )
    return record, scores
