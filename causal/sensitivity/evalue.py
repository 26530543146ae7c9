"""E-values (VanderWeele & Ding, 2017): how strong an unmeasured confounder must be to explain an estimate away.

The minimum strength of association, on the risk-ratio scale, that an unmeasured confounder needs with both the
treatment and the outcome to explain away the estimate (and the confidence limit nearest the null). A continuous
outcome goes through the standardised mean difference (:func:`e_value_from_smd`, :func:`e_value_for_effect`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

SMD_TO_RR = 0.91  # VanderWeele (2017): RR ~ exp(0.91 * d) for a standardised mean difference d


def _e_value_point(rr: float) -> float:
    rr = 1 / rr if rr < 1 else rr
    return float(rr + np.sqrt(rr * (rr - 1)))


def _check_risk_ratios(rr: float, ci_low: float | None, ci_high: float | None) -> None:
    """Raise ``ValueError`` unless the ratio and its limits are positive, finite and ordered."""
    if not np.isfinite(rr) or rr <= 0:
        raise ValueError(f"rr must be a positive finite risk ratio, got {rr}")
    for name, value in (("ci_low", ci_low), ("ci_high", ci_high)):
        if value is not None and (not np.isfinite(value) or value <= 0):
            raise ValueError(f"{name} must be a positive finite risk ratio, got {value}")
    if ci_low is not None and ci_high is not None and ci_low > ci_high:
        raise ValueError(f"ci_low ({ci_low}) is above ci_high ({ci_high})")


def _e_value_interval(rr: float, ci_low: float | None, ci_high: float | None) -> float | None:
    """E-value of the limit closest to 1 (1 when the interval contains 1); None without limits."""
    if ci_low is None and ci_high is None:
        return None
    low = ci_low if ci_low is not None else 0.0
    high = ci_high if ci_high is not None else np.inf
    if low <= 1 <= high:
        return 1.0
    nearest = low if rr > 1 else high
    return _e_value_point(nearest)


def e_value(rr: float, ci_low: float | None = None, ci_high: float | None = None) -> dict[str, Any]:
    """E-value of a risk ratio and of its confidence limit nearest the null (VanderWeele & Ding, 2017).

    ``E = RR + sqrt(RR * (RR - 1))`` for RR >= 1 (RR < 1 is inverted first). The E-value of the interval is that
    of the limit closest to 1, or 1 when the interval contains 1.

    Parameters
    ----------
    rr : float
        Risk ratio (> 0). Odds or hazard ratios of a rare outcome can be passed as they are.
    ci_low, ci_high : float, optional
        Confidence limits of the risk ratio.

    Returns
    -------
    dict
        ``rr``, ``e_value``, ``ci_low``, ``ci_high``, ``e_value_ci`` (None without limits), ``scale``,
        ``reading`` (one sentence for the report).
    """
    _check_risk_ratios(rr, ci_low, ci_high)
    e_point = _e_value_point(rr)
    e_ci = _e_value_interval(rr, ci_low, ci_high)
    reading = (
        f"An unmeasured confounder associated with both treatment and outcome by a risk ratio of {e_point:.2f} "
        "each, above the measured covariates, could explain away the estimate"
    )
    if e_ci is not None:
        reading += f"; {e_ci:.2f} each could move the confidence interval to include the null."
    return {
        "rr": float(rr),
        "e_value": e_point,
        "ci_low": None if ci_low is None else float(ci_low),
        "ci_high": None if ci_high is None else float(ci_high),
        "e_value_ci": e_ci,
        "scale": "risk ratio",
        "reading": reading,
    }


def e_value_from_smd(d: float, se: float | None = None, *, alpha: float = 0.05) -> dict[str, Any]:
    """E-value for a continuous outcome through the standardised mean difference.

    Uses the approximation RR ~ exp(0.91 * d), with confidence limits exp(0.91 * d -/+ 0.91 * z * se)
    (VanderWeele, 2017; VanderWeele & Ding, 2017, for an approximately normal outcome), and then :func:`e_value`.

    Parameters
    ----------
    d : float
        Standardised mean difference (effect divided by the outcome's standard deviation).
    se : float, optional
        Standard error of ``d``.
    alpha : float
        1 - confidence level of the limits (0.05 gives the familiar 0.91 * 1.96 = 1.78).

    Returns
    -------
    dict
        As :func:`e_value`, plus ``d``, ``se``, ``approximation`` (the formula, stated for the report).
    """
    if not np.isfinite(d):
        raise ValueError(f"d must be finite, got {d}")
    rr = float(np.exp(SMD_TO_RR * d))
    low = high = None
    if se is not None:
        if not se > 0:
            raise ValueError(f"se must be positive, got {se}")
        z = stats.norm.ppf(1 - alpha / 2)
        low, high = float(np.exp(SMD_TO_RR * (d - z * se))), float(np.exp(SMD_TO_RR * (d + z * se)))
    out = e_value(rr, low, high)
    out.update(
        d=float(d),
        se=None if se is None else float(se),
        approximation="RR ~ exp(0.91 * d), d = standardised mean difference (VanderWeele & Ding 2017)",
    )
    return out


def e_value_for_effect(
    estimate: float, stderr: float | None, outcome_sd: float, *, alpha: float = 0.05
) -> dict[str, Any]:
    """E-value of an effect on a continuous outcome (e.g. the ATE on take rate): ``d = estimate / outcome_sd``.

    Parameters
    ----------
    estimate, stderr : float
        The effect and its standard error, in outcome units.
    outcome_sd : float
        Standard deviation of the outcome (the report uses the sample SD of the analysed units).
    alpha : float
        1 - confidence level.
    """
    if not outcome_sd > 0:
        raise ValueError(f"outcome_sd must be positive, got {outcome_sd}")
    return e_value_from_smd(estimate / outcome_sd, None if stderr is None else stderr / outcome_sd, alpha=alpha)
