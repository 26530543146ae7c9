"""Bounds on the DML ATE under unobserved confounding (Chernozhukov et al., 2022), through EconML (>= 0.16).

From a fitted EconML estimator (:func:`dml_sensitivity`) or from the cross-fitted residuals of a partially linear
model (:func:`dml_sensitivity_from_residuals`): ``sensitivity_interval``, ``robustness_value`` and
``sensitivity_summary``, in one result layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _dml_block(params: Any, c_y: float, c_t: float, rho: float, alpha: float, null_hypothesis: float) -> dict[str, Any]:
    from econml.validate.sensitivity_analysis import RV, sensitivity_interval, sensitivity_summary

    kwargs = dict(params._asdict())
    theta_low, theta_high = sensitivity_interval(
        **kwargs, alpha=alpha, c_y=c_y, c_t=c_t, rho=rho, interval_type="theta"
    )
    ci_low, ci_high = sensitivity_interval(**kwargs, alpha=alpha, c_y=c_y, c_t=c_t, rho=rho, interval_type="ci")
    rv_ci = RV(**kwargs, alpha=alpha, null_hypothesis=null_hypothesis, interval_type="ci")
    rv_theta = RV(**kwargs, alpha=alpha, null_hypothesis=null_hypothesis, interval_type="theta")
    summary = sensitivity_summary(**kwargs, null_hypothesis=null_hypothesis, alpha=alpha, c_y=c_y, c_t=c_t, rho=rho)
    return _dml_output(
        float(kwargs["theta"]),
        theta_low,
        theta_high,
        ci_low,
        ci_high,
        rv_ci,
        rv_theta,
        str(summary),
        c_y,
        c_t,
        rho,
        alpha,
        null_hypothesis,
    )


def _dml_output(
    theta, theta_low, theta_high, ci_low, ci_high, rv_ci, rv_theta, summary, c_y, c_t, rho, alpha, null_hypothesis
) -> dict[str, Any]:
    return {
        "estimate": float(theta),
        "c_y": float(c_y),
        "c_t": float(c_t),
        "rho": float(rho),
        "alpha": float(alpha),
        "null_hypothesis": float(null_hypothesis),
        "theta_low": float(theta_low),
        "theta_high": float(theta_high),
        "ci_low": float(ci_low),
        "ci_high": float(ci_high),
        "robustness_value": float(rv_ci),
        "robustness_value_theta": float(rv_theta),
        "summary": summary,
        "reading": (
            f"A confounder explaining {100 * c_y:.0f}% of the outcome's residual variation and {100 * c_t:.0f}% of "
            f"the treatment's (correlation rho={rho}) leaves the ATE within [{ci_low:.4g}, {ci_high:.4g}]. "
            f"Confounding of strength {100 * rv_ci:.1f}% on both would be needed for the interval to reach "
            f"{null_hypothesis:g}."
        ),
    }


def dml_sensitivity(
    est: Any,
    *,
    c_y: float = 0.05,
    c_t: float = 0.05,
    rho: float = 1.0,
    alpha: float = 0.05,
    null_hypothesis: float = 0.0,
) -> dict[str, Any]:
    """Sensitivity of a fitted EconML DML estimator's ATE to unobserved confounding (Chernozhukov et al. 2022).

    Calls the estimator's ``sensitivity_interval`` (theta bounds and the confidence bounds), ``robustness_value``
    and ``sensitivity_summary`` (EconML >= 0.16; ATE only, single treatment and outcome -- EconML issue #978).

    Parameters
    ----------
    est : fitted econml DML / LinearDML / CausalForestDML (or DRLearner)
        The estimator behind the pipeline's ATE.
    c_y : float in [0, 1)
        Share of the outcome's residual variation an unobserved confounder explains.
    c_t : float in [0, 1)
        Share of the treatment's (Riesz representer's) variation it explains.
    rho : float in [-1, 1]
        Correlation between the confounding terms (1 is the worst case).
    alpha : float
        1 - confidence level.
    null_hypothesis : float
        Value the robustness value is measured against.

    Returns
    -------
    dict
        ``estimate``, ``theta_low``, ``theta_high`` (bounds on the ATE), ``ci_low``, ``ci_high`` (confidence bounds
        under that confounding), ``robustness_value`` (CI version), ``robustness_value_theta``, ``summary`` (text
        table), ``reading``, and the parameters.
    """
    for name in ("sensitivity_interval", "robustness_value", "sensitivity_summary"):
        if not hasattr(est, name):
            raise TypeError(f"{type(est).__name__} has no {name}(): need an EconML >= 0.16 DML or DR estimator")
    theta_low, theta_high = est.sensitivity_interval(alpha=alpha, c_y=c_y, c_t=c_t, rho=rho, interval_type="theta")
    ci_low, ci_high = est.sensitivity_interval(alpha=alpha, c_y=c_y, c_t=c_t, rho=rho, interval_type="ci")
    rv_ci = est.robustness_value(null_hypothesis=null_hypothesis, alpha=alpha, interval_type="ci")
    rv_theta = est.robustness_value(null_hypothesis=null_hypothesis, alpha=alpha, interval_type="theta")
    summary = est.sensitivity_summary(null_hypothesis=null_hypothesis, alpha=alpha, c_y=c_y, c_t=c_t, rho=rho)
    theta = float(np.mean([theta_low, theta_high]))  # the theta bounds are symmetric about the estimate
    return _dml_output(
        theta,
        theta_low,
        theta_high,
        ci_low,
        ci_high,
        rv_ci,
        rv_theta,
        str(summary),
        c_y,
        c_t,
        rho,
        alpha,
        null_hypothesis,
    )


def dml_sensitivity_from_residuals(
    y_res: np.ndarray,
    t_res: np.ndarray,
    *,
    c_y: float = 0.05,
    c_t: float = 0.05,
    rho: float = 1.0,
    alpha: float = 0.05,
    null_hypothesis: float = 0.0,
) -> dict[str, Any]:
    """The same analysis as :func:`dml_sensitivity` from cross-fitted residuals of a partially linear model.

    For the pipeline's cached out-of-fold predictions: ``y_res = Y - m_hat(X)``, ``t_res = T - e_hat(X)``. The
    ATE is ``sum(y_res * t_res) / sum(t_res**2)``, and EconML's ``dml_sensitivity_values`` gives (theta, sigma^2,
    nu^2) and their covariance, exactly what a fitted ``LinearDML`` without effect modifiers stores.

    Parameters
    ----------
    y_res, t_res : array of shape (n_units,)
        Outcome and treatment residuals.
    c_y, c_t, rho, alpha, null_hypothesis
        As in :func:`dml_sensitivity`.
    """
    from econml.validate.sensitivity_analysis import dml_sensitivity_values

    y_res = np.asarray(y_res, dtype=float).ravel()
    t_res = np.asarray(t_res, dtype=float).ravel()
    if y_res.shape != t_res.shape or not (np.isfinite(y_res).all() and np.isfinite(t_res).all()):
        raise ValueError(f"y_res and t_res must be finite and of equal length, got {y_res.shape}, {t_res.shape}")
    params = dml_sensitivity_values(t_res, y_res)
    # One treatment and one outcome: the length-1 vectors become scalars; the 2-d covariance stays as it is.
    params = type(params)(*(np.squeeze(v) if np.ndim(v) < 2 else v for v in params))
    return _dml_block(params, c_y, c_t, rho, alpha, null_hypothesis)
