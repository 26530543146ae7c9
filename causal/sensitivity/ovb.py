"""Omitted-variable-bias analysis of the linear outcome model (Cinelli & Hazlett, 2020).

Partial R^2 of the treatment with the outcome, the robustness values RV_q and RV_{q,alpha}, bounds on a
confounder's strength from benchmark covariates ("1x, 2x, 3x as strong as popularity") and the estimate adjusted
for such a confounder. The contour plot of the adjusted estimate is :func:`causal.sensitivity.plots.ovb_contour_plot`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from causal.mediation import encode_covariates

log = logging.getLogger(__name__)


def robustness_value(t_value: float, dof: int, *, q: float = 1.0, alpha: float | None = None) -> float:
    """Robustness value RV_q (``alpha=None``) or RV_{q,alpha} of Cinelli & Hazlett (2020), eqs. (18)-(19).

    The partial R^2 that a confounder needs with *both* treatment and outcome to reduce the estimate by
    ``100 * q`` percent (RV_q), or to make the reduced estimate not significant at level ``alpha`` (RV_{q,alpha}).

    Parameters
    ----------
    t_value : float
        t statistic of the treatment coefficient.
    dof : int
        Residual degrees of freedom of the outcome regression.
    q : float
        Fraction of the estimate to explain away (1 = all of it).
    alpha : float, optional
        Significance level for RV_{q,alpha}.
    """
    fq = q * abs(t_value) / np.sqrt(dof)
    if alpha is None:
        return float(0.5 * (np.sqrt(fq**4 + 4 * fq**2) - fq**2))
    f_crit = abs(stats.t.ppf(alpha / 2, dof - 1)) / np.sqrt(dof - 1)
    fqa = fq - f_crit
    if fqa < 0:
        return 0.0
    if fq > 1 / f_crit:  # the bound on R^2_{D~Z|X} does not bind
        return float((fq**2 - f_crit**2) / (1 + fq**2))
    return float(0.5 * (np.sqrt(fqa**4 + 4 * fqa**2) - fqa**2))


def _partial_r2(fit: Any, x: np.ndarray, y: np.ndarray, columns: Sequence[int]) -> float:
    """Partial R^2 of regressors ``columns`` with y given the other columns of the fitted OLS ``fit`` of y on x.

    One column: t^2 / (t^2 + dof). A group (the dummies of a categorical): (RSS_restricted - RSS_full) /
    RSS_restricted, which equals sensemakr's group partial R^2 F * p / (F * p + dof).
    """
    if len(columns) == 1:
        t_value = fit.tvalues[columns[0]]
        return float(t_value**2 / (t_value**2 + fit.df_resid))
    keep = np.setdiff1d(np.arange(x.shape[1]), columns)
    restricted = sm.OLS(y, x[:, keep]).fit()
    return float((restricted.ssr - fit.ssr) / restricted.ssr)


def benchmark_bounds(r2dxj_x: float, r2yxj_dx: float, kd: float, ky: float | None = None) -> tuple[float, float]:
    """Bounds on a confounder's partial R^2 from a benchmark covariate Xj (Cinelli & Hazlett 2020, sec. 6.1).

    Parameters
    ----------
    r2dxj_x : float
        Partial R^2 of Xj with the treatment, given the other covariates.
    r2yxj_dx : float
        Partial R^2 of Xj with the outcome, given the treatment and the other covariates.
    kd, ky : float
        The confounder is ``kd`` times as strongly associated with the treatment (``ky`` with the outcome) as Xj;
        ``ky`` defaults to ``kd``.

    Returns
    -------
    (r2dz_x, r2yz_dx) : tuple of float
        Bounds on R^2_{D~Z|X} and R^2_{Y~Z|D,X}; the latter is capped at 1 (with a warning in the log).
    """
    ky = kd if ky is None else ky
    r2dz_x = kd * r2dxj_x / (1 - r2dxj_x)
    if r2dz_x >= 1:
        raise ValueError(f"kd={kd} implies R^2_(D~Z|X) = {r2dz_x:.3f} >= 1: impossible; use a smaller kd")
    r2zxj_xd = kd * r2dxj_x**2 / ((1 - kd * r2dxj_x) * (1 - r2dxj_x))
    if r2zxj_xd >= 1:
        raise ValueError(f"kd={kd} is impossible for this benchmark; use a smaller kd")
    r2yz_dx = ((np.sqrt(ky) + np.sqrt(r2zxj_xd)) / np.sqrt(1 - r2zxj_xd)) ** 2 * (r2yxj_dx / (1 - r2yxj_dx))
    if r2yz_dx > 1:
        log.warning("bound on R^2_(Y~Z|D,X) for kd=%s, ky=%s is %.3f > 1; capped at 1", kd, ky, r2yz_dx)
        r2yz_dx = 1.0
    return float(r2dz_x), float(r2yz_dx)


def adjusted_effect(
    estimate: float,
    stderr: float,
    dof: int,
    r2dz_x: float,
    r2yz_dx: float,
    *,
    alpha: float = 0.05,
    reduce: bool = True,
) -> dict[str, float]:
    """Estimate, standard error, t and interval after adjusting for a confounder of the given strength.

    Cinelli & Hazlett (2020), eqs. (4)-(6): ``|bias| = se * sqrt(dof * R2yz * R2dz / (1 - R2dz))`` and
    ``se_adj = se * sqrt((1 - R2yz) / (1 - R2dz) * dof / (dof - 1))``; the interval uses t with ``dof``
    degrees of freedom, as sensemakr does.
    """
    bias = stderr * np.sqrt(dof) * np.sqrt(r2yz_dx * r2dz_x / (1 - r2dz_x))
    sign = np.sign(estimate) if estimate != 0 else 1.0
    adj = sign * (abs(estimate) - bias) if reduce else sign * (abs(estimate) + bias)
    adj_se = stderr * np.sqrt((1 - r2yz_dx) / (1 - r2dz_x) * dof / (dof - 1))
    tq = abs(stats.t.ppf(alpha / 2, dof))
    return {
        "adjusted_estimate": float(adj),
        "adjusted_se": float(adj_se),
        "adjusted_t": float(adj / adj_se) if adj_se > 0 else float("nan"),
        "adjusted_ci_low": float(adj - tq * adj_se),
        "adjusted_ci_high": float(adj + tq * adj_se),
    }


def _check_ovb_args(
    frame: pd.DataFrame, treatment: str, outcome: str, covariates: Sequence[str], *, q: float, alpha: float
) -> None:
    """Raise ``ValueError`` on a bad level, a bad q, or a treatment/outcome column absent or also a covariate."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not q > 0:
        raise ValueError(f"q must be positive, got {q}")
    for role, name in (("treatment", treatment), ("outcome", outcome)):
        if name not in frame.columns:
            raise ValueError(f"{role} column {name!r} not in the table")
        if name in covariates:
            raise ValueError(f"{role} column {name!r} is also listed as a covariate")


def _covariate_design(
    frame: pd.DataFrame,
    covariates: Sequence[str],
    covariate_groups: Mapping[str, Sequence[str]] | None,
    benchmark_covariates: Sequence[str],
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The encoded covariates and the encoded columns of every name a benchmark may refer to."""
    encoded, groups = encode_covariates(frame, covariates, what="covariates")
    for name, cols in (covariate_groups or {}).items():
        absent = [c for c in cols if c not in encoded.columns]
        if absent or not cols:
            raise ValueError(f"covariate group {name!r}: column(s) {absent or cols} are not among the covariates")
        groups[name] = list(cols)
    missing = [b for b in benchmark_covariates if b not in groups]
    if missing:
        raise ValueError(f"benchmark covariate(s) {missing} must also be among the covariates {list(covariates)}")
    return encoded, groups


def _treatment_outcome(frame: pd.DataFrame, treatment: str, outcome: str) -> tuple[np.ndarray, np.ndarray]:
    d = pd.to_numeric(frame[treatment], errors="raise").to_numpy(dtype=float)
    y = pd.to_numeric(frame[outcome], errors="raise").to_numpy(dtype=float)
    if not (np.isfinite(d).all() and np.isfinite(y).all()):
        raise ValueError(f"treatment {treatment!r} or outcome {outcome!r} has missing or non-finite values")
    return d, y


def _outcome_fit(
    d: np.ndarray, y: np.ndarray, x_cov: np.ndarray, *, q: float, alpha: float
) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """OLS of y on (d, x_cov): the fit, its design, and the treatment's estimate, partial R^2 and RV_q(,alpha)."""
    x_full = np.column_stack([d, x_cov])  # column 0 is the treatment
    fit = sm.OLS(y, x_full).fit()
    est, se, dof = float(fit.params[0]), float(fit.bse[0]), int(round(fit.df_resid))
    if dof < 2:
        raise ValueError(f"outcome regression has {dof} residual degrees of freedom: too few rows for the model")
    t_value = est / se
    low, high = fit.conf_int(alpha=alpha)[0]
    partial_r2 = t_value**2 / (t_value**2 + dof)
    summary = {
        "estimate": est,
        "stderr": se,
        "t_value": float(t_value),
        "dof": dof,
        "ci_low": float(low),
        "ci_high": float(high),
        "partial_r2": float(partial_r2),
        "robustness_value": robustness_value(t_value, dof, q=q),
        "robustness_value_alpha": robustness_value(t_value, dof, q=q, alpha=alpha),
    }
    return fit, x_full, summary


class _OutcomeModel(NamedTuple):
    """The fitted outcome regression and the arrays the benchmark partial R^2 are computed from."""

    fit: Any  # statsmodels OLS of y on x_full
    x_full: np.ndarray  # (treatment, intercept, covariates)
    d: np.ndarray
    y: np.ndarray
    x_cov: np.ndarray  # (intercept, covariates)


def _multipliers(kd: float | Sequence[float], ky: float | Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    kds = np.atleast_1d(np.asarray(kd, dtype=float))
    kys = kds if ky is None else np.atleast_1d(np.asarray(ky, dtype=float))
    if kys.shape != kds.shape:
        raise ValueError(f"kd and ky must have the same length, got {kds.tolist()} and {kys.tolist()}")
    return kds, kys


def _benchmark_rows(
    benchmark_covariates: Sequence[str],
    groups: Mapping[str, list[str]],
    columns: list[str],
    model: _OutcomeModel,
    summary: Mapping[str, Any],
    multipliers: tuple[np.ndarray, np.ndarray],
    *,
    alpha: float,
    reduce: bool,
) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Each benchmark's partial R^2 with treatment and outcome, and a bound row per (kd, ky) multiplier."""
    fit, x_full, d, y, x_cov = model
    est, se, dof = summary["estimate"], summary["stderr"], summary["dof"]
    fit_d = sm.OLS(d, x_cov).fit() if benchmark_covariates else None
    benchmarks: dict[str, dict[str, float]] = {}
    bounds: list[dict[str, Any]] = []
    for name in benchmark_covariates:
        idx = [columns.index(c) + 1 for c in groups[name]]  # +1: the intercept is column 0 of x_cov
        r2dxj_x = _partial_r2(fit_d, x_cov, d, idx)
        r2yxj_dx = _partial_r2(fit, x_full, y, [i + 1 for i in idx])
        benchmarks[name] = {"r2dxj_x": r2dxj_x, "r2yxj_dx": r2yxj_dx}
        for k_d, k_y in zip(*multipliers):
            r2dz_x, r2yz_dx = benchmark_bounds(r2dxj_x, r2yxj_dx, k_d, k_y)
            label = f"{k_d:g}x {name}" if k_d == k_y else f"{k_d:g}/{k_y:g}x {name}"
            bounds.append(
                {
                    "benchmark": name,
                    "label": label,
                    "kd": float(k_d),
                    "ky": float(k_y),
                    "r2dz_x": r2dz_x,
                    "r2yz_dx": r2yz_dx,
                }
                | adjusted_effect(est, se, dof, r2dz_x, r2yz_dx, alpha=alpha, reduce=reduce)
            )
    return benchmarks, bounds


def _ovb_reading(summary: Mapping[str, Any], q: float, alpha: float) -> str:
    rv, rv_alpha, partial_r2 = summary["robustness_value"], summary["robustness_value_alpha"], summary["partial_r2"]
    return (
        f"A confounder explaining {100 * rv:.1f}% of the residual variance of both treatment and outcome would "
        f"explain away {100 * q:.0f}% of the estimate; {100 * rv_alpha:.1f}% of both would make it not "
        f"significant at alpha={alpha}. A confounder explaining all residual outcome variance would need "
        f"{100 * partial_r2:.1f}% of the treatment's residual variance to explain it away."
    )


def ovb_robustness(
    frame: pd.DataFrame,
    treatment: str,
    outcome: str,
    covariates: Sequence[str] = (),
    *,
    benchmark_covariates: Sequence[str] = (),
    kd: float | Sequence[float] = (1, 2, 3),
    ky: float | Sequence[float] | None = None,
    q: float = 1.0,
    alpha: float = 0.05,
    reduce: bool = True,
    covariate_groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Omitted-variable-bias sensitivity of the linear outcome model (Cinelli & Hazlett, 2020).

    Fits ``outcome ~ 1 + treatment + covariates`` by OLS with classical standard errors and reports the partial
    R^2 of the treatment with the outcome, the robustness values RV_q and RV_{q,alpha}, and, for each benchmark
    covariate and multiplier, the bounds on a confounder's partial R^2 with treatment and outcome and the estimate
    adjusted for such a confounder.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per unit.
    treatment, outcome : str
        Numeric (or boolean) columns.
    covariates : sequence of str
        Observed covariates X; categorical columns are one-hot encoded (fixed effects, e.g. ``village``).
    benchmark_covariates : sequence of str
        Covariates (among ``covariates``) to benchmark against; a categorical one is benchmarked as the group of
        its dummies (group partial R^2).
    kd, ky : float or sequence of float
        Strength multipliers with the treatment and the outcome (``ky`` defaults to ``kd``).
    q : float
        Fraction of the estimate a confounder must explain away for RV_q.
    alpha : float
        Significance level of RV_{q,alpha} and of the intervals.
    reduce : bool
        Whether the confounder is assumed to pull the estimate toward zero (the usual worry).
    covariate_groups : mapping of str to sequence of str, optional
        Named groups of (already numeric) covariate columns that a benchmark name may refer to, e.g.
        ``{"genre": ["genre=action", "genre=comedy", ...]}`` when the caller passes a pre-encoded design.

    Returns
    -------
    dict
        ``treatment``, ``outcome``, ``estimate``, ``stderr``, ``t_value``, ``dof``, ``ci_low``, ``ci_high``,
        ``partial_r2`` (R^2_{Y~D|X}), ``robustness_value`` (RV_q), ``robustness_value_alpha`` (RV_{q,alpha}), ``q``,
        ``alpha``, ``benchmarks`` ({name: {"r2dxj_x", "r2yxj_dx"}}), ``bounds`` (list of {"benchmark", "kd", "ky",
        "r2dz_x", "r2yz_dx", "adjusted_estimate", "adjusted_se", "adjusted_t", "adjusted_ci_low",
        "adjusted_ci_high"}) and ``reading``.
    """
    _check_ovb_args(frame, treatment, outcome, covariates, q=q, alpha=alpha)
    encoded, groups = _covariate_design(frame, covariates, covariate_groups, benchmark_covariates)
    d, y = _treatment_outcome(frame, treatment, outcome)
    x_cov = np.column_stack([np.ones(len(y)), encoded.to_numpy()])
    fit, x_full, summary = _outcome_fit(d, y, x_cov, q=q, alpha=alpha)
    multipliers = _multipliers(kd, ky)
    benchmarks, bounds = _benchmark_rows(
        benchmark_covariates,
        groups,
        list(encoded.columns),
        _OutcomeModel(fit, x_full, d, y, x_cov),
        summary,
        multipliers,
        alpha=alpha,
        reduce=reduce,
    )
    log.info(
        "OVB robustness for %s on %s: RV_q=%.3f, RV_q,alpha=%.3f",
        treatment,
        outcome,
        summary["robustness_value"],
        summary["robustness_value_alpha"],
    )
    return {
        "treatment": treatment,
        "outcome": outcome,
        **summary,
        "q": float(q),
        "alpha": float(alpha),
        "reduce": reduce,
        "benchmarks": benchmarks,
        "bounds": bounds,
        "reading": _ovb_reading(summary, q, alpha),
    }
