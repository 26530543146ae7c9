"""Sensitivity to unmeasured confounding, and refutation tests of a fitted pipeline.

Unconfoundedness cannot be tested, so every estimate ships with figures that say how strong an unmeasured
confounder would have to be to change the conclusion, and with refutations that would catch a broken pipeline.
This module fills the ``sensitivity`` block of the results contract:

* :func:`e_value`, :func:`e_value_from_smd`, :func:`e_value_for_effect` -- VanderWeele & Ding (2017): the minimum
  strength of association (risk-ratio scale) an unmeasured confounder needs with both treatment and outcome to
  explain away the estimate (and the confidence limit nearest the null).
* :func:`ovb_robustness` and :func:`ovb_contour_plot` -- Cinelli & Hazlett (2020) omitted-variable-bias analysis
  of the linear outcome model: partial R^2 of the treatment with the outcome, robustness values RV_q and
  RV_{q,alpha}, bounds from benchmark covariates ("1x, 2x, 3x as strong as popularity") and the contour plot.
* :func:`dml_sensitivity`, :func:`dml_sensitivity_from_residuals` -- Chernozhukov et al. (2022) bounds for the
  DML ATE through EconML (>= 0.16): ``sensitivity_interval``, ``robustness_value``, ``sensitivity_summary``.
* :func:`refute` -- placebo treatment, random common cause, data subsets and dummy outcome, each with a verdict
  and its plain-language reading.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from causal.mediation import encode_covariates

log = logging.getLogger(__name__)

SMD_TO_RR = 0.91  # VanderWeele (2017): RR ~ exp(0.91 * d) for a standardised mean difference d

# --------------------------------------------------------------------------------------------------------------
# E-values
# --------------------------------------------------------------------------------------------------------------


def _e_value_point(rr: float) -> float:
    rr = 1 / rr if rr < 1 else rr
    return float(rr + np.sqrt(rr * (rr - 1)))


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
    if not np.isfinite(rr) or rr <= 0:
        raise ValueError(f"rr must be a positive finite risk ratio, got {rr}")
    for name, value in (("ci_low", ci_low), ("ci_high", ci_high)):
        if value is not None and (not np.isfinite(value) or value <= 0):
            raise ValueError(f"{name} must be a positive finite risk ratio, got {value}")
    if ci_low is not None and ci_high is not None and ci_low > ci_high:
        raise ValueError(f"ci_low ({ci_low}) is above ci_high ({ci_high})")
    e_point = _e_value_point(rr)
    e_ci = None
    if ci_low is not None or ci_high is not None:
        low = ci_low if ci_low is not None else 0.0
        high = ci_high if ci_high is not None else np.inf
        if low <= 1 <= high:
            e_ci = 1.0
        else:
            nearest = low if rr > 1 else high
            e_ci = _e_value_point(nearest)
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


# --------------------------------------------------------------------------------------------------------------
# Cinelli & Hazlett (2020)
# --------------------------------------------------------------------------------------------------------------


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
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not q > 0:
        raise ValueError(f"q must be positive, got {q}")
    for role, name in (("treatment", treatment), ("outcome", outcome)):
        if name not in frame.columns:
            raise ValueError(f"{role} column {name!r} not in the table")
        if name in covariates:
            raise ValueError(f"{role} column {name!r} is also listed as a covariate")
    encoded, groups = encode_covariates(frame, covariates, what="covariates")
    for name, cols in (covariate_groups or {}).items():
        absent = [c for c in cols if c not in encoded.columns]
        if absent or not cols:
            raise ValueError(f"covariate group {name!r}: column(s) {absent or cols} are not among the covariates")
        groups[name] = list(cols)
    missing = [b for b in benchmark_covariates if b not in groups]
    if missing:
        raise ValueError(f"benchmark covariate(s) {missing} must also be among the covariates {list(covariates)}")
    d = pd.to_numeric(frame[treatment], errors="raise").to_numpy(dtype=float)
    y = pd.to_numeric(frame[outcome], errors="raise").to_numpy(dtype=float)
    if not (np.isfinite(d).all() and np.isfinite(y).all()):
        raise ValueError(f"treatment {treatment!r} or outcome {outcome!r} has missing or non-finite values")

    x_cov = np.column_stack([np.ones(len(y)), encoded.to_numpy()])
    x_full = np.column_stack([d, x_cov])  # column 0 is the treatment
    fit = sm.OLS(y, x_full).fit()
    est, se, dof = float(fit.params[0]), float(fit.bse[0]), int(round(fit.df_resid))
    if dof < 2:
        raise ValueError(f"outcome regression has {dof} residual degrees of freedom: too few rows for the model")
    t_value = est / se
    low, high = fit.conf_int(alpha=alpha)[0]
    partial_r2 = t_value**2 / (t_value**2 + dof)
    rv = robustness_value(t_value, dof, q=q)
    rv_alpha = robustness_value(t_value, dof, q=q, alpha=alpha)

    kds = np.atleast_1d(np.asarray(kd, dtype=float))
    kys = kds if ky is None else np.atleast_1d(np.asarray(ky, dtype=float))
    if kys.shape != kds.shape:
        raise ValueError(f"kd and ky must have the same length, got {kds.tolist()} and {kys.tolist()}")
    columns = list(encoded.columns)
    fit_d = sm.OLS(d, x_cov).fit() if benchmark_covariates else None
    benchmarks: dict[str, dict[str, float]] = {}
    bounds: list[dict[str, Any]] = []
    for name in benchmark_covariates:
        idx = [columns.index(c) + 1 for c in groups[name]]  # +1: the intercept is column 0 of x_cov
        r2dxj_x = _partial_r2(fit_d, x_cov, d, idx)
        r2yxj_dx = _partial_r2(fit, x_full, y, [i + 1 for i in idx])
        benchmarks[name] = {"r2dxj_x": r2dxj_x, "r2yxj_dx": r2yxj_dx}
        for k_d, k_y in zip(kds, kys):
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
    reading = (
        f"A confounder explaining {100 * rv:.1f}% of the residual variance of both treatment and outcome would "
        f"explain away {100 * q:.0f}% of the estimate; {100 * rv_alpha:.1f}% of both would make it not "
        f"significant at alpha={alpha}. A confounder explaining all residual outcome variance would need "
        f"{100 * partial_r2:.1f}% of the treatment's residual variance to explain it away."
    )
    log.info("OVB robustness for %s on %s: RV_q=%.3f, RV_q,alpha=%.3f", treatment, outcome, rv, rv_alpha)
    return {
        "treatment": treatment,
        "outcome": outcome,
        "estimate": est,
        "stderr": se,
        "t_value": float(t_value),
        "dof": dof,
        "ci_low": float(low),
        "ci_high": float(high),
        "partial_r2": float(partial_r2),
        "robustness_value": rv,
        "robustness_value_alpha": rv_alpha,
        "q": float(q),
        "alpha": float(alpha),
        "reduce": reduce,
        "benchmarks": benchmarks,
        "bounds": bounds,
        "reading": reading,
    }


def ovb_contour_plot(
    result: Mapping[str, Any],
    path: str | Path,
    *,
    lim_x: float | None = None,
    lim_y: float | None = None,
    n_grid: int = 101,
    dpi: int = 120,
) -> Path:
    """Contour plot of the bias-adjusted estimate over a confounder's partial R^2 (Cinelli & Hazlett, Fig. 2).

    The x axis is R^2_{D~Z|X}, the y axis R^2_{Y~Z|D,X}; the red dashed contour is where the adjusted estimate is
    zero, and each benchmark bound from :func:`ovb_robustness` is marked.

    Parameters
    ----------
    result : mapping
        Output of :func:`ovb_robustness`.
    path : str or Path
        PNG file to write (parent folders are created).
    lim_x, lim_y : float, optional
        Axis upper limits (default: large enough for the benchmarks and the zero contour, at most 0.99).
    n_grid : int
        Grid points per axis.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from causal.report import plot_label

    est, se, dof = result["estimate"], result["stderr"], result["dof"]
    bounds = result.get("bounds", [])
    biggest = max([result["robustness_value"] * 1.5, 0.1] + [b["r2dz_x"] * 1.2 for b in bounds])
    lim_x = min(lim_x or biggest, 0.99)
    lim_y = min(lim_y or max([biggest] + [b["r2yz_dx"] * 1.2 for b in bounds]), 0.99)
    gx, gy = np.meshgrid(np.linspace(0, lim_x, n_grid), np.linspace(0, lim_y, n_grid))
    bias = se * np.sqrt(dof) * np.sqrt(gy * gx / (1 - gx))
    sign = np.sign(est) if est != 0 else 1.0
    adjusted = sign * (abs(est) - bias) if result.get("reduce", True) else sign * (abs(est) + bias)

    fig = Figure(figsize=(6, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    contours = ax.contour(gx, gy, adjusted, levels=12, colors="grey", linewidths=0.8)
    ax.clabel(contours, fontsize=7)
    if adjusted.min() < 0 < adjusted.max():
        ax.contour(gx, gy, adjusted, levels=[0.0], colors="red", linestyles="--", linewidths=1.5)
    ax.plot(0, 0, marker="^", color="black")
    ax.annotate(f"unadjusted ({est:.3g})", (0, 0), textcoords="offset points", xytext=(5, 5), fontsize=8)
    for b in bounds:
        ax.plot(b["r2dz_x"], b["r2yz_dx"], marker="D", color="red")
        ax.annotate(
            plot_label(f"{b['label']} ({b['adjusted_estimate']:.3g})"),
            (b["r2dz_x"], b["r2yz_dx"]),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=8,
        )
    ax.set_xlabel("partial R² of confounder with the treatment")
    ax.set_ylabel("partial R² of confounder with the outcome")
    ax.set_title(plot_label(f"Adjusted estimate of {result['treatment']} (red dashed: zero)"), fontsize=10)
    ax.set_xlim(0, lim_x)
    ax.set_ylim(0, lim_y)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


# --------------------------------------------------------------------------------------------------------------
# DML sensitivity (Chernozhukov et al. 2022, through EconML)
# --------------------------------------------------------------------------------------------------------------


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
    params = type(params)(*(np.squeeze(v) if np.ndim(v) < 2 else v for v in params))
    return _dml_block(params, c_y, c_t, rho, alpha, null_hypothesis)


# --------------------------------------------------------------------------------------------------------------
# refutations
# --------------------------------------------------------------------------------------------------------------

REFUTATIONS = ("placebo_treatment", "random_common_cause", "data_subset", "dummy_outcome")
RANDOM_COMMON_CAUSE = "_random_common_cause"

FitFn = Callable[[pd.DataFrame, Sequence[str]], "float | Mapping[str, float]"]


def _as_estimate(value: Any) -> dict[str, float]:
    if isinstance(value, Mapping):
        if "estimate" not in value:
            raise ValueError(f"fit_fn returned a mapping without 'estimate': keys {sorted(value)}")
        return {k: float(value[k]) for k in ("estimate", "stderr", "ci_low", "ci_high") if value.get(k) is not None}
    return {"estimate": float(value)}


def _null_check(name: str, estimates: np.ndarray, alpha: float, single: dict[str, float] | None) -> dict:
    """A refutation whose true effect is zero: passes when the interval for the refuted effect covers 0."""
    if len(estimates) == 1 and single is not None and "ci_low" in single:
        low, high = single["ci_low"], single["ci_high"]
        basis = "the refit's own confidence interval"
    elif len(estimates) >= 2:
        half = stats.t.ppf(1 - alpha / 2, len(estimates) - 1) * estimates.std(ddof=1) / np.sqrt(len(estimates))
        low, high = estimates.mean() - half, estimates.mean() + half
        basis = f"the mean of {len(estimates)} refits +/- t * sd / sqrt(n_sims)"
    else:
        raise ValueError(f"{name}: one simulation needs a fit_fn that returns ci_low/ci_high; use n_sims >= 2")
    return {"ci_low": float(low), "ci_high": float(high), "passed": bool(low <= 0 <= high), "interval_basis": basis}


def _dummy_outcome(frame: pd.DataFrame, outcome: str, confounders: Sequence[str], rng: np.random.Generator):
    """An outcome with the confounders' structure and no treatment effect: fitted E[Y|W] + permuted residuals."""
    y = frame[outcome].to_numpy(dtype=float)
    if not confounders:
        return rng.permutation(y)
    w = np.column_stack([np.ones(len(y)), encode_covariates(frame, confounders)[0].to_numpy()])
    fitted = w @ np.linalg.lstsq(w, y, rcond=None)[0]
    return fitted + rng.permutation(y - fitted)


def refute(
    fit_fn: FitFn,
    frame: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    kinds: Sequence[str] = REFUTATIONS,
    n_sims: int = 20,
    seed: int = 0,
    alpha: float = 0.05,
    subset_fraction: float = 0.8,
    tolerance_se: float = 1.0,
    confounders: Sequence[str] = (),
    original: float | Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Refutation tests: refit the estimator on altered data where the right answer is known.

    Each kind refits ``fit_fn`` ``n_sims`` times:

    * ``placebo_treatment`` -- the treatment column is randomly permuted, so its true effect is 0. Passes when
      the interval for the mean placebo effect covers 0.
    * ``random_common_cause`` -- an independent standard-normal column (``_random_common_cause``) is added and
      passed to ``fit_fn`` as an extra confounder; a valid adjustment leaves the estimate where it was. Passes
      when the mean change is within ``tolerance_se`` standard errors of the original estimate.
    * ``data_subset`` -- a random ``subset_fraction`` of the rows; the estimate should move only by sampling error,
      whose standard deviation for a nested subsample is ``se * sqrt(1 / fraction - 1)``. Passes when the mean
      change is within ``z_(1-alpha/2)`` such standard deviations.
    * ``dummy_outcome`` -- the outcome is replaced by the confounders' linear prediction plus permuted residuals
      (or the permuted outcome without ``confounders``): it keeps the outcome's dependence on W but has no
      treatment effect, so an estimator that adjusts for W finds 0. Passes like the placebo.

    A refutation that *fails* means the estimate changed when it should not have (or found an effect where there
    is none): a sign of a broken pipeline, leakage or residual confounding by the measured covariates. Passing is
    necessary, not sufficient: no refutation can detect confounding by an unmeasured variable.

    Parameters
    ----------
    fit_fn : callable ``(frame, extra_confounders) -> float | mapping``
        Refits the estimator on ``frame`` (same columns, possibly permuted or subset), adjusting for the configured
        confounders plus the names in ``extra_confounders``; returns the estimate or a mapping with ``estimate``
        and optionally ``stderr``, ``ci_low``, ``ci_high``.
    frame : pandas.DataFrame
        The analysis table.
    treatment, outcome : str
        Columns that the placebo / dummy-outcome refutations replace.
    kinds : sequence of str
        Which refutations to run (subset of ``REFUTATIONS``).
    n_sims : int
        Refits per kind.
    seed : int
        Seed of all permutations, noise columns and subsets.
    alpha : float
        Test level.
    subset_fraction : float
        Fraction of rows kept by ``data_subset``.
    tolerance_se : float
        Allowed mean change, in original standard errors, for ``random_common_cause``.
    confounders : sequence of str
        Confounders used to build the dummy outcome.
    original : float or mapping, optional
        The original estimate (with ``stderr``); computed by ``fit_fn(frame, ())`` when omitted.

    Returns
    -------
    list of dict
        One per kind: ``name``, ``estimate`` (mean refit estimate), ``original``, ``passed``, ``reading``,
        ``n_sims``, ``sims_sd``, ``ci_low``/``ci_high`` (null checks) or ``tolerance`` (stability checks), and for
        the placebo ``p_value`` (permutation p-value of the original estimate among the placebo estimates).
    """
    unknown = sorted(set(kinds) - set(REFUTATIONS))
    if unknown:
        raise ValueError(f"unknown refutation kind(s) {unknown}; choose from {list(REFUTATIONS)}")
    for role, name in (("treatment", treatment), ("outcome", outcome)):
        if name not in frame.columns:
            raise ValueError(f"{role} column {name!r} not in the table")
    if n_sims < 1:
        raise ValueError(f"n_sims must be at least 1, got {n_sims}")
    if not 0 < subset_fraction < 1:
        raise ValueError(f"subset_fraction must be in (0, 1), got {subset_fraction}")
    if RANDOM_COMMON_CAUSE in frame.columns:
        raise ValueError(f"the table already has a column {RANDOM_COMMON_CAUSE!r}")

    orig = _as_estimate(fit_fn(frame, ()) if original is None else original)
    theta, se = orig["estimate"], orig.get("stderr")
    needs_se = {"random_common_cause", "data_subset"} & set(kinds)
    if needs_se and se is None:
        raise ValueError(f"refutations {sorted(needs_se)} need the original estimate's stderr: return it from fit_fn")
    seeds = np.random.SeedSequence(seed).spawn(len(REFUTATIONS))
    results = []
    for kind in kinds:
        rng = np.random.default_rng(seeds[REFUTATIONS.index(kind)])
        sims = []
        for _ in range(n_sims):
            if kind == "placebo_treatment":
                altered = frame.assign(**{treatment: rng.permutation(frame[treatment].to_numpy())})
                sims.append(_as_estimate(fit_fn(altered, ())))
            elif kind == "random_common_cause":
                altered = frame.assign(**{RANDOM_COMMON_CAUSE: rng.normal(size=len(frame))})
                sims.append(_as_estimate(fit_fn(altered, (RANDOM_COMMON_CAUSE,))))
            elif kind == "data_subset":
                keep = np.sort(rng.choice(len(frame), size=int(round(subset_fraction * len(frame))), replace=False))
                sims.append(_as_estimate(fit_fn(frame.iloc[keep], ())))
            else:
                altered = frame.assign(**{outcome: _dummy_outcome(frame, outcome, confounders, rng)})
                sims.append(_as_estimate(fit_fn(altered, ())))
        est = np.array([s["estimate"] for s in sims])
        row: dict[str, Any] = {
            "name": kind,
            "estimate": float(est.mean()),
            "original": theta,
            "n_sims": n_sims,
            "sims_sd": float(est.std(ddof=1)) if n_sims > 1 else float("nan"),
        }
        if kind in ("placebo_treatment", "dummy_outcome"):
            row |= _null_check(kind, est, alpha, sims[0] if n_sims == 1 else None)
            what = "a permuted treatment" if kind == "placebo_treatment" else "an outcome with no treatment effect"
            row["reading"] = (
                f"With {what} the estimate is {row['estimate']:.4g} [{row['ci_low']:.4g}, {row['ci_high']:.4g}]; "
                + (
                    "the interval covers 0 as it should: passed."
                    if row["passed"]
                    else "the interval excludes 0, so the estimator finds an effect where none exists: failed."
                )
            )
            if kind == "placebo_treatment":
                row["p_value"] = float((1 + np.sum(np.abs(est) >= abs(theta))) / (n_sims + 1))
        else:
            change = float(est.mean() - theta)
            if kind == "random_common_cause":
                tol = tolerance_se * se
                cause = f"{tolerance_se:g} standard error(s) of the original estimate"
            else:
                tol = stats.norm.ppf(1 - alpha / 2) * se * np.sqrt(1 / subset_fraction - 1)
                cause = f"the sampling error of a {100 * subset_fraction:.0f}% subset"
            row |= {"change": change, "tolerance": float(tol), "passed": bool(abs(change) <= tol)}
            row["reading"] = f"The estimate moved by {change:+.4g} (tolerance {tol:.4g}, {cause}): " + (
                "stable, passed." if row["passed"] else "it changed more than it should have: failed."
            )
        log.info("refutation %s: %s", kind, "passed" if row["passed"] else "FAILED")
        results.append(row)
    return results


# --------------------------------------------------------------------------------------------------------------
# pipeline step
# --------------------------------------------------------------------------------------------------------------

_STEP_KEYS = {"analyses", "alpha", "ovb", "dml", "refutations", "misclassification", "cluster"}
_OVB_KEYS = {"benchmark_covariates", "kd", "ky", "q", "plot"}
_DML_KEYS = {"c_y", "c_t", "rho", "null_hypothesis"}
_REFUTE_KEYS = {"kinds", "n_sims", "subset_fraction", "tolerance_se", "seed"}
ANALYSES = ("e_value", "ovb", "dml", "refutations", "misclassification")


def _encoded_groups(columns: Sequence[str], raw: Sequence[str]) -> dict[str, list[str]]:
    """Encoded W columns of each raw confounder: ``c``, ``c=level``, ``c_pcK`` and ``c__missing`` (causal.data)."""
    import re

    groups = {}
    for name in raw:
        pattern = re.compile(rf"{re.escape(name)}(=.*|_pc\d+|__missing)?")
        groups[name] = [c for c in columns if pattern.fullmatch(c)]
    return {k: v for k, v in groups.items() if v}


def _check_keys(opts: Mapping[str, Any], allowed: set[str], key: str) -> dict[str, Any]:
    opts = dict(opts or {})
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise ValueError(f"config key {key}: unknown key(s) {unknown}; allowed {sorted(allowed)}")
    return opts


def _refit_partially_linear(ctx: Any, treatment: str, outcome: str, w_columns: list[str], seed: int) -> FitFn:
    """fit_fn for :func:`refute`: re-cross-fit the run's nuisance models and re-estimate the partially linear
    effect on the altered table (the pipeline refitted end to end, without re-tuning)."""
    from causal import dml
    from causal.mediation import cross_fit_predict
    from causal.nuisance import derive_seed, make_classifier, make_regressor

    nuisance_cfg = ctx.step_config("nuisance")
    binary = set(np.unique(ctx.dataset.t).tolist()) <= {0.0, 1.0}
    fitted = ctx.nuisance if binary else None  # the run's (possibly tuned) parameters, cached by the dml step
    clf_params = getattr(fitted, "classifier_params_", None) or nuisance_cfg.get("classifier")
    reg_params = getattr(fitted, "regressor_params_", None) or nuisance_cfg.get("regressor")
    n_jobs, n_folds = int(nuisance_cfg.get("n_jobs", 1)), int(nuisance_cfg.get("folds", 5))
    counter = iter(range(10**9))

    def fit(frame: pd.DataFrame, extra: Sequence[str] = ()) -> dict[str, float]:
        k = next(counter)
        w = frame[[*w_columns, *extra]].to_numpy(dtype=float)
        t, y = frame[treatment].to_numpy(dtype=float), frame[outcome].to_numpy(dtype=float)
        binary = set(np.unique(t).tolist()) <= {0.0, 1.0}
        s = derive_seed(seed, f"refute_{k}")
        t_model = (
            _ProbaRegressor(make_classifier(clf_params, seed=s, n_jobs=n_jobs))
            if binary
            else make_regressor(reg_params, seed=s, n_jobs=n_jobs)
        )
        e = cross_fit_predict(t_model, w, t, n_folds=n_folds, seed=s)
        m = cross_fit_predict(make_regressor(reg_params, seed=s, n_jobs=n_jobs), w, y, n_folds=n_folds, seed=s)
        return dml.partially_linear(y, t, e, m, alpha=ctx.alpha)

    return fit


class _ProbaRegressor:
    """A classifier seen as a regressor of P(T=1 | x), so cross_fit_predict can fit a propensity."""

    def __init__(self, classifier: Any):
        self.classifier = classifier

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"classifier": self.classifier}

    def set_params(self, **params: Any) -> _ProbaRegressor:
        self.classifier = params.get("classifier", self.classifier)
        return self

    def fit(self, x: np.ndarray, t: np.ndarray) -> _ProbaRegressor:
        from sklearn.base import clone

        self.fitted_ = clone(self.classifier).fit(x, t.astype(int))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.fitted_.predict_proba(x)[:, 1]


def run_step(ctx: Any) -> dict[str, Any]:
    """Pipeline step ``sensitivity`` (after ``dml``): the results contract's ``sensitivity`` block.

    Reads the ``sensitivity`` config node (conf/sensitivity/default.yaml): ``analyses`` (any of ``e_value``,
    ``ovb``, ``dml``, ``refutations``, ``misclassification``), ``alpha``, and one node per analysis. The E-value and
    the DML bounds use the ``dml`` step's ATE and fitted estimator; OVB fits the linear outcome model on the kept
    units with the encoded confounders; refutations re-cross-fit the run's nuisance models (partially linear
    effect). ``misclassification`` is written to the top-level ``misclassification`` key
    (:func:`causal.misclassification.run_step`).
    """
    opts = _check_keys(ctx.step_config("sensitivity"), _STEP_KEYS, "sensitivity")
    analyses = list(opts.get("analyses") or ANALYSES[:4])
    bad = sorted(set(analyses) - set(ANALYSES))
    if bad:
        raise ValueError(f"config key sensitivity.analyses: unknown analysis {bad}; choose from {list(ANALYSES)}")
    alpha = float(opts.get("alpha") or ctx.alpha)
    ds, keep = ctx.dataset, np.asarray(ctx.keep, dtype=bool)
    treatment, outcome = ds.roles.treatment, ds.roles.outcome
    frame = ds.W.loc[keep].reset_index(drop=True)
    frame = frame.assign(**{treatment: ds.t[keep], outcome: ds.y[keep]})
    w_columns = list(ds.W.columns)
    out: dict[str, Any] = {}
    ate = ctx.results.get("ate")

    if "e_value" in analyses:
        if ate is None:
            raise ValueError("config key sensitivity.analyses: e_value needs the dml step's ATE; put dml before it")
        detail = e_value_for_effect(ate["estimate"], ate.get("stderr"), float(np.std(ds.y[keep], ddof=1)), alpha=alpha)
        out.update(e_value=detail["e_value"], e_value_ci=detail["e_value_ci"], e_value_detail=detail)

    if "ovb" in analyses:
        ovb_opts = _check_keys(opts.get("ovb"), _OVB_KEYS, "sensitivity.ovb")
        groups = _encoded_groups(w_columns, ds.roles.confounders)
        benchmarks = list(ovb_opts.get("benchmark_covariates") or [])
        absent = [b for b in benchmarks if b not in groups]
        if absent:
            raise ValueError(
                f"config key sensitivity.ovb.benchmark_covariates: {absent} are not confounders "
                f"(roles.confounders: {ds.roles.confounders})"
            )
        linear = ovb_robustness(
            frame,
            treatment,
            outcome,
            w_columns,
            benchmark_covariates=benchmarks,
            kd=ovb_opts.get("kd", (1, 2, 3)),
            ky=ovb_opts.get("ky"),
            q=float(ovb_opts.get("q", 1.0)),
            alpha=alpha,
            covariate_groups={b: groups[b] for b in benchmarks},
        )
        out["linear"] = linear
        if ovb_opts.get("plot", True):
            png = ovb_contour_plot(linear, ctx.out_dir / "ovb_contour.png")
            ctx.results.setdefault("plots", {})["ovb_contour"] = png.name

    if "dml" in analyses:
        dml_opts = _check_keys(opts.get("dml"), _DML_KEYS, "sensitivity.dml")
        params = {k: float(dml_opts[k]) for k in ("c_y", "c_t", "rho", "null_hypothesis") if k in dml_opts}
        estimator = getattr(ctx.effect, "estimator", None)
        try:
            out["dml"] = dml_sensitivity(estimator, alpha=alpha, **params) | {"source": "econml estimator"}
        except (TypeError, AttributeError, ValueError) as err:
            # EconML refuses some fits (e.g. effect modifiers in a forest): fall back to the cached residuals of
            # the partially linear model, which is what LinearDML without X stores.
            log.info("EconML sensitivity unavailable (%s); using the cached nuisance residuals", err)
            nuis = ctx.nuisance
            out["dml"] = dml_sensitivity_from_residuals(
                ds.y[keep] - nuis.outcome_[keep], ds.t[keep] - nuis.propensity_[keep], alpha=alpha, **params
            ) | {"source": "partially linear residuals"}

    if "refutations" in analyses:
        ref_opts = _check_keys(opts.get("refutations"), _REFUTE_KEYS, "sensitivity.refutations")
        seed = int(ref_opts["seed"]) if ref_opts.get("seed") is not None else ctx.seed
        fit_fn = _refit_partially_linear(ctx, treatment, outcome, w_columns, seed)
        out["refutations"] = refute(
            fit_fn,
            frame,
            treatment=treatment,
            outcome=outcome,
            kinds=list(ref_opts.get("kinds") or REFUTATIONS),
            n_sims=int(ref_opts.get("n_sims", 5)),
            seed=seed,
            alpha=alpha,
            subset_fraction=float(ref_opts.get("subset_fraction", 0.8)),
            tolerance_se=float(ref_opts.get("tolerance_se", 1.0)),
            confounders=w_columns,
        )

    if "misclassification" in analyses:
        from causal.misclassification import run_step as misclassification_step

        ctx.results["misclassification"] = misclassification_step(ctx)
    return out
