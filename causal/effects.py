"""Effect records and the doubly robust score: ``effect`` ({estimate, stderr, ci_low, ci_high, ...}), the naive
difference in means, the AIPW score of each unit and the mean of scores with its standard error."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

# EconML clips e(1-e) at 0.01 in CausalForestDML's doubly robust ATE; the same value keeps the two comparable.
VAR_T_CLIP = 1e-2


def _z(alpha: float) -> float:
    return float(stats.norm.ppf(1.0 - alpha / 2.0))


def effect(estimate: float, stderr: float, alpha: float = 0.05, **extra: Any) -> dict[str, Any]:
    """The results contract's effect record ``{"estimate", "stderr", "ci_low", "ci_high"}`` (normal CI)."""
    z = _z(alpha)
    return {
        "estimate": float(estimate),
        "stderr": float(stderr),
        "ci_low": float(estimate - z * stderr),
        "ci_high": float(estimate + z * stderr),
        **extra,
    }


def naive_difference(y: np.ndarray, t: np.ndarray, alpha: float = 0.05) -> dict[str, float]:
    """Difference in mean outcome between arms, with a Welch (unequal variance) normal CI.

    Returns
    -------
    dict
        ``difference_in_means``, ``stderr``, ``ci_low``, ``ci_high``, ``n_treated``, ``n_control``.
    """
    y = np.asarray(y, dtype=np.float64)
    treated = np.asarray(t).astype(bool)
    a, b = y[treated], y[~treated]
    if a.size < 2 or b.size < 2:
        raise ValueError(f"naive difference needs >= 2 units per arm; got {a.size} treated, {b.size} control")
    diff = a.mean() - b.mean()
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    rec = effect(diff, se, alpha)
    return {
        "difference_in_means": rec["estimate"],
        "stderr": rec["stderr"],
        "ci_low": rec["ci_low"],
        "ci_high": rec["ci_high"],
        "n_treated": int(a.size),
        "n_control": int(b.size),
    }


def dr_scores(y: np.ndarray, t: np.ndarray, propensity: np.ndarray, outcome: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Doubly robust scores of the R-learner parameterisation (see the module docstring).

    Parameters
    ----------
    y, t : ndarray of shape (n,)
        Outcome and 0/1 treatment.
    propensity, outcome : ndarray of shape (n,)
        Cross-fitted e(x) and m(x) = E[Y | x].
    tau : ndarray of shape (n,)
        CATE per unit, preferably out of sample.

    Returns
    -------
    ndarray of shape (n,)
        psi_i; its mean is the ATE estimate, in outcome units per unit of treatment.
    """
    y = np.asarray(y, dtype=np.float64)
    e = np.asarray(propensity, dtype=np.float64)
    t_res = np.asarray(t, dtype=np.float64) - e
    y_res = y - np.asarray(outcome, dtype=np.float64)
    tau = np.asarray(tau, dtype=np.float64)
    var_t = np.clip(e * (1.0 - e), VAR_T_CLIP, np.inf)
    return tau + (y_res - tau * t_res) * t_res / var_t


def mean_effect(scores: np.ndarray, alpha: float = 0.05) -> dict[str, Any]:
    """Mean of scores with SE sd/sqrt(n) and a normal CI (an effect record plus ``n``)."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[~np.isnan(s)]
    se = s.std(ddof=1) / np.sqrt(s.size) if s.size > 1 else float("nan")
    return effect(s.mean() if s.size else float("nan"), se, alpha, n=int(s.size))
