"""Baron & Kenny (1986): the three regressions, classical standard errors and the Sobel test."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from causal.mediation.common import (
    _check_alpha,
    _check_roles,
    _column,
    _groups_array,
    encode_covariates,
    mediation_verdict,
)

log = logging.getLogger(__name__)


# Internal regressor names that cannot collide with encoded covariates ("col=level" or the column's own name).
_CONST, _T, _M = "__const__", "__treatment__", "__mediator__"


def _coef(result: Any, name: str, alpha: float) -> dict[str, float]:
    low, high = result.conf_int(alpha=alpha).loc[name]
    return {
        "estimate": float(result.params[name]),
        "stderr": float(result.bse[name]),
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": float(result.pvalues[name]),
    }


def baron_kenny(
    frame: pd.DataFrame,
    treatment: str,
    mediator: str,
    outcome: str,
    confounders: Sequence[str] = (),
    *,
    alpha: float = 0.05,
    cov_type: str = "nonrobust",
    groups: str | Sequence | np.ndarray | None = None,
) -> dict[str, Any]:
    """Baron & Kenny (1986) regressions with the Sobel (1982) test.

    Three OLS regressions, each with an intercept and the confounders W::

        Y ~ c  * T + W            (total effect c)
        M ~ a  * T + W            (path a)
        Y ~ c' * T + b * M + W    (direct effect c' and path b)

    The indirect effect is ``a * b`` with the first-order Sobel standard error
    ``sqrt(b**2 * se_a**2 + a**2 * se_b**2)`` and a normal test. In OLS with the same W, ``c = c' + a * b`` exactly.

    Verdict (significance at level ``alpha``): ``"none"`` if the Sobel test is not significant; ``"full"`` if it is
    and c' is not (the direct effect is no longer significant once the mediator is held fixed); ``"partial"`` if
    both are.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per unit.
    treatment, mediator, outcome : str
        Numeric (or boolean) columns; the treatment may be binary or continuous (e.g. face count).
    confounders : sequence of str
        Covariates W; categorical columns are one-hot encoded (:func:`encode_covariates`).
    alpha : float
        Significance level and 1 - confidence level.
    cov_type : str
        statsmodels covariance type of the coefficients: ``"nonrobust"`` (classical, as in Baron & Kenny),
        ``"HC1"`` (heteroskedasticity-robust) or ``"cluster"`` (needs ``groups``).
    groups : str or array of shape (n_units,), optional
        Cluster labels (a column name or values) for ``cov_type="cluster"``.

    Returns
    -------
    dict
        ``total``, ``path_a``, ``path_b``, ``direct`` (each ``{"estimate", "stderr", "ci_low", "ci_high",
        "p_value"}``), ``indirect`` (Sobel), ``sobel`` (``{"z", "p_value"}``), ``proportion_mediated``
        (``a * b / c``), ``verdict``, ``steps`` (which paths are significant), plus the column names, ``n``,
        ``alpha``, ``cov_type`` and ``method = "baron_kenny"``. Effects are in outcome units per unit of treatment.
    """
    _check_alpha(alpha)
    _check_roles(treatment, mediator, outcome, confounders)
    t = _column(frame, treatment, "treatment")
    m = _column(frame, mediator, "mediator")
    y = _column(frame, outcome, "outcome")
    w, _ = encode_covariates(frame, confounders)
    fit_kwargs: dict[str, Any] = {"cov_type": cov_type}
    if cov_type == "cluster":
        g = _groups_array(frame, groups)
        if g is None:
            raise ValueError("cov_type='cluster' needs groups (a column name or one label per row)")
        fit_kwargs["cov_kwds"] = {"groups": pd.factorize(g)[0]}
    base = pd.concat(
        [pd.Series(1.0, index=frame.index, name=_CONST), pd.Series(t, index=frame.index, name=_T), w], axis=1
    )
    with_m = base.assign(**{_M: m})
    res_total = sm.OLS(y, base).fit(**fit_kwargs)
    res_a = sm.OLS(m, base).fit(**fit_kwargs)
    res_direct = sm.OLS(y, with_m).fit(**fit_kwargs)

    total = _coef(res_total, _T, alpha)
    path_a = _coef(res_a, _T, alpha)
    path_b = _coef(res_direct, _M, alpha)
    direct = _coef(res_direct, _T, alpha)
    a, b = path_a["estimate"], path_b["estimate"]
    ab = a * b
    se_ab = float(np.sqrt(b**2 * path_a["stderr"] ** 2 + a**2 * path_b["stderr"] ** 2))
    z = ab / se_ab if se_ab > 0 else np.inf
    p_sobel = float(2 * stats.norm.sf(abs(z)))
    zq = stats.norm.ppf(1 - alpha / 2)
    indirect = {
        "estimate": ab,
        "stderr": se_ab,
        "ci_low": ab - zq * se_ab,
        "ci_high": ab + zq * se_ab,
        "p_value": p_sobel,
    }
    steps = {
        "c_significant": total["p_value"] < alpha,
        "a_significant": path_a["p_value"] < alpha,
        "b_significant": path_b["p_value"] < alpha,
        "c_prime_significant": direct["p_value"] < alpha,
        "indirect_significant": p_sobel < alpha,
    }
    verdict = mediation_verdict(steps["indirect_significant"], steps["c_prime_significant"])
    c = total["estimate"]
    log.info(
        "Baron-Kenny %s -> %s -> %s: a*b=%.4g (Sobel p=%.3g), c'=%.4g: %s",
        treatment,
        mediator,
        outcome,
        ab,
        p_sobel,
        direct["estimate"],
        verdict,
    )
    return {
        "method": "baron_kenny",
        "treatment": treatment,
        "mediator": mediator,
        "outcome": outcome,
        "n": len(frame),
        "alpha": alpha,
        "cov_type": cov_type,
        "total": total,
        "path_a": path_a,
        "path_b": path_b,
        "direct": direct,
        "indirect": indirect,
        "sobel": {"z": float(z), "p_value": p_sobel},
        "proportion_mediated": float(ab / c) if c != 0 else float("nan"),
        "verdict": verdict,
        "steps": {k: bool(v) for k, v in steps.items()},
    }
