"""Mediation: how much of a treatment's effect on the outcome runs through a mediator.

The creative question is whether face count hurts take rate because of the number of people or because each face
gets smaller (treatment ``face_count``, mediator ``face_area_mean``). Three estimators answer it, all returning the
``mediation`` block of the results contract::

    {"treatment", "mediator", "total", "direct", "indirect", "proportion_mediated", "verdict", ...}

where ``total``, ``direct`` and ``indirect`` are ``{"estimate", "stderr", "ci_low", "ci_high"}``.

* :func:`baron_kenny` -- the three regressions of Baron & Kenny (1986), classical standard errors and the Sobel test.
* :func:`linear_mediation` -- the product-of-coefficients indirect effect ``a * b`` and the direct effect ``c'``
  with nonparametric bootstrap percentile intervals (Preacher & Hayes, 2008).
* :func:`ml_mediation` -- natural direct and indirect effects in a partially linear model whose confounding
  functions are learned by cross-fitted machine-learning models (double machine learning, Chernozhukov et al.,
  2018), optionally with a treatment-mediator interaction.

All three adjust for the confounders named by the caller. Confounders may be numeric, boolean or categorical:
categorical (object, string, category) columns are one-hot encoded here with the first level dropped
(:func:`encode_covariates`), so a caller can pass the engagement table as it is.

Verdict rule (used by all three, with each method's own notion of "significant" at level ``alpha``):

* ``"none"``: the indirect effect is not significant;
* ``"full"``: the indirect effect is significant and the direct effect c' is not;
* ``"partial"``: both the indirect and the direct effect are significant.

The classical Baron & Kenny prerequisite that the total effect c be significant is reported
(``steps["c_significant"]``) but not required, following Zhao, Lynch & Chen (2010): an indirect effect can exist
when opposing direct and indirect paths cancel in c.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from causal.crossfit import cross_predict, make_folds
from causal.learners import select_predict

log = logging.getLogger(__name__)

VERDICTS = ("full", "partial", "none")

ML_ASSUMPTIONS = (
    "sequential ignorability: given the confounders W, the treatment is as good as random for the mediator and "
    "the outcome, and given W and the treatment, the mediator is as good as random for the outcome",
    "no mediator-outcome confounder is itself affected by the treatment",
    "partially linear structure: M = alpha*T + h(W) + noise and Y = theta*T + beta*M [+ gamma*T*M] + g(W) + "
    "noise, with h and g arbitrary (learned) and constant alpha, beta, theta, gamma",
    "no treatment-mediator interaction unless interaction=True (then gamma is estimated and the effects depend "
    "on the contrast levels)",
    "overlap: the treatment and the mediator keep residual variation given W",
)


# --------------------------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------------------------


def encode_covariates(
    frame: pd.DataFrame, columns: Sequence[str], *, what: str = "confounders"
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Numeric design matrix for covariates, one-hot encoding categorical columns.

    Parameters
    ----------
    frame : pandas.DataFrame
        The analysis table, one row per unit.
    columns : sequence of str
        Covariate names. Numeric and boolean columns are used as they are (booleans as 0/1); object, string and
        category columns are one-hot encoded with the first level dropped (the models carry an intercept).
    what : str
        Name of the role, used in error messages (e.g. ``"confounders"``).

    Returns
    -------
    design : pandas.DataFrame, shape (n_units, n_encoded)
        Float columns, index aligned with ``frame``.
    groups : dict of str to list of str
        For each original column, the encoded column names it became (one name for a numeric column).

    Raises
    ------
    ValueError
        If a column is missing, has missing values, or holds non-finite numbers.
    """
    columns = list(columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: column(s) {missing} not in the table (columns: {list(frame.columns)})")
    parts: list[pd.DataFrame] = []
    groups: dict[str, list[str]] = {}
    for col in columns:
        series = frame[col]
        if series.isna().any():
            raise ValueError(f"{what}: column {col!r} has {int(series.isna().sum())} missing value(s)")
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
            values = series.astype(float)
            if not np.isfinite(values.to_numpy()).all():
                raise ValueError(f"{what}: column {col!r} has non-finite values")
            part = values.to_frame(col)
        else:
            part = pd.get_dummies(series.astype(str), prefix=col, prefix_sep="=", drop_first=True, dtype=float)
        groups[col] = list(part.columns)
        parts.append(part)
    if not parts:
        return pd.DataFrame(index=frame.index), groups
    return pd.concat(parts, axis=1), groups


def _column(frame: pd.DataFrame, name: str, role: str) -> np.ndarray:
    if name not in frame.columns:
        raise ValueError(f"{role} column {name!r} not in the table (columns: {list(frame.columns)})")
    series = frame[name]
    if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
        raise ValueError(f"{role} column {name!r} must be numeric or boolean, got dtype {series.dtype}")
    values = series.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise ValueError(f"{role} column {name!r} has missing or non-finite values")
    if np.ptp(values) == 0:
        raise ValueError(f"{role} column {name!r} is constant")
    return values


def _groups_array(frame: pd.DataFrame, groups: str | Sequence | np.ndarray | None) -> np.ndarray | None:
    if groups is None:
        return None
    if isinstance(groups, str):
        if groups not in frame.columns:
            raise ValueError(f"groups column {groups!r} not in the table")
        return frame[groups].to_numpy()
    arr = np.asarray(groups)
    if arr.shape != (len(frame),):
        raise ValueError(f"groups must have one label per row ({len(frame)}), got shape {arr.shape}")
    return arr


def bootstrap_indices(
    n: int, n_boot: int, rng: np.random.Generator, groups: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Row indices of nonparametric bootstrap resamples.

    Parameters
    ----------
    n : int
        Number of rows.
    n_boot : int
        Number of resamples.
    rng : numpy.random.Generator
        Source of randomness.
    groups : array of shape (n,), optional
        Cluster labels (e.g. ``title_id``): whole clusters are resampled, so rows of one title stay together.

    Yields
    ------
    numpy.ndarray of int
        Indices of one resample (length n without groups; the sampled clusters' rows with groups).
    """
    if groups is None:
        for _ in range(n_boot):
            yield rng.integers(0, n, size=n)
        return
    _, codes = np.unique(groups, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(codes.max() + 2))
    members = [order[starts[g] : starts[g + 1]] for g in range(codes.max() + 1)]
    for _ in range(n_boot):
        picked = rng.integers(0, len(members), size=len(members))
        yield np.concatenate([members[g] for g in picked])


def _effect(estimate: float, draws: np.ndarray, alpha: float) -> dict[str, float]:
    draws = draws[np.isfinite(draws)]
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return {
        "estimate": float(estimate),
        "stderr": float(np.std(draws, ddof=1)),
        "ci_low": float(low),
        "ci_high": float(high),
    }


def _excludes_zero(effect: dict[str, float]) -> bool:
    return effect["ci_low"] > 0 or effect["ci_high"] < 0


def mediation_verdict(indirect_significant: bool, direct_significant: bool) -> str:
    """The verdict rule of this module (see the module docstring): ``"none"``, ``"full"`` or ``"partial"``."""
    if not indirect_significant:
        return "none"
    return "partial" if direct_significant else "full"


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _check_roles(treatment: str, mediator: str, outcome: str, confounders: Sequence[str]) -> None:
    roles = [treatment, mediator, outcome]
    if len(set(roles)) != 3:
        raise ValueError(f"treatment, mediator and outcome must be three different columns, got {roles}")
    overlap = sorted(set(roles) & set(confounders))
    if overlap:
        raise ValueError(f"column(s) {overlap} are both a confounder and the treatment/mediator/outcome")


# --------------------------------------------------------------------------------------------------------------
# Baron & Kenny
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# linear product-of-coefficients with bootstrap
# --------------------------------------------------------------------------------------------------------------


def _paths(t: np.ndarray, m: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float, float, float]:
    """(a, b, c', c) from the three OLS regressions (normal equations: the designs are small and well posed)."""
    x2 = np.column_stack([np.ones(len(t)), t, w, m])
    gram = x2.T @ x2
    rhs = x2.T @ np.column_stack([m, y])
    k = x2.shape[1] - 1  # x1 = x2 without the mediator column: a nested Gram matrix
    coef_1 = _solve(gram[:k, :k], rhs[:k])  # columns: M ~ x1 (path a), Y ~ x1 (total c)
    coef_2 = _solve(gram, rhs[:, 1])  # Y ~ x2 (direct c', path b)
    return float(coef_1[1, 0]), float(coef_2[-1]), float(coef_2[1]), float(coef_1[1, 1])


def _solve(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Normal equations; a resample can lose every unit of a dummy level, then the minimum-norm solution (the
    empty column gets 0 and the treatment and mediator coefficients stay identified)."""
    try:
        return np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(gram, rhs, rcond=None)[0]


def linear_mediation(
    frame: pd.DataFrame,
    treatment: str,
    mediator: str,
    outcome: str,
    confounders: Sequence[str] = (),
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: str | Sequence | np.ndarray | None = None,
) -> dict[str, Any]:
    """Indirect (``a * b``) and direct (``c'``) effects with bootstrap percentile intervals.

    The same three linear models as :func:`baron_kenny`; the intervals come from ``n_boot`` nonparametric
    bootstrap resamples of the rows (of whole clusters when ``groups`` is given), refitting all regressions in
    each resample (Preacher & Hayes, 2008). Under linearity, no treatment-mediator interaction and sequential
    ignorability given the confounders, ``a * b`` is the natural indirect effect and ``c'`` the natural direct
    effect of one unit of treatment (Imai, Keele & Tingley, 2010).

    Verdict: the indirect (direct) effect is significant when its bootstrap percentile interval excludes 0; the
    rule is :func:`mediation_verdict`.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per unit.
    treatment, mediator, outcome : str
        Numeric (or boolean) columns.
    confounders : sequence of str
        Covariates W; categorical columns are one-hot encoded (:func:`encode_covariates`).
    n_boot : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling.
    alpha : float
        1 - confidence level of the percentile intervals.
    groups : str or array of shape (n_units,), optional
        Cluster labels (column name or values) for a cluster bootstrap.

    Returns
    -------
    dict
        The results-contract ``mediation`` block: ``treatment``, ``mediator``, ``total``, ``direct``,
        ``indirect`` (each ``{"estimate", "stderr", "ci_low", "ci_high"}``; stderr is the bootstrap standard
        deviation), ``proportion_mediated`` (indirect / total) with ``proportion_mediated_ci``, ``verdict``, plus
        ``path_a``, ``path_b``, ``method = "linear_bootstrap"``, ``n``, ``n_boot``, ``alpha``.
    """
    _check_alpha(alpha)
    _check_roles(treatment, mediator, outcome, confounders)
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2, got {n_boot}")
    t = _column(frame, treatment, "treatment")
    m = _column(frame, mediator, "mediator")
    y = _column(frame, outcome, "outcome")
    w = encode_covariates(frame, confounders)[0].to_numpy()
    g = _groups_array(frame, groups)

    a, b, c_prime, c = _paths(t, m, y, w)
    draws = np.empty((n_boot, 4))
    rng = np.random.default_rng(seed)
    # Each replicate is a small least-squares problem: threaded BLAS only adds overhead (20x slower measured on a
    # loaded 2-core machine), so the loop runs single-threaded.
    with threadpool_limits(limits=1, user_api="blas"):
        for i, idx in enumerate(bootstrap_indices(len(t), n_boot, rng, g)):
            draws[i] = _paths(t[idx], m[idx], y[idx], w[idx])
    ab_draws = draws[:, 0] * draws[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        prop_draws = ab_draws / draws[:, 3]
    indirect = _effect(a * b, ab_draws, alpha)
    direct = _effect(c_prime, draws[:, 2], alpha)
    total = _effect(c, draws[:, 3], alpha)
    prop_ci = np.quantile(prop_draws[np.isfinite(prop_draws)], [alpha / 2, 1 - alpha / 2])
    verdict = mediation_verdict(_excludes_zero(indirect), _excludes_zero(direct))
    log.info(
        "linear mediation %s -> %s -> %s: indirect %.4g [%.4g, %.4g], direct %.4g: %s",
        treatment,
        mediator,
        outcome,
        indirect["estimate"],
        indirect["ci_low"],
        indirect["ci_high"],
        c_prime,
        verdict,
    )
    return {
        "method": "linear_bootstrap",
        "treatment": treatment,
        "mediator": mediator,
        "outcome": outcome,
        "n": len(frame),
        "n_boot": n_boot,
        "alpha": alpha,
        "total": total,
        "direct": direct,
        "indirect": indirect,
        "path_a": _effect(a, draws[:, 0], alpha),
        "path_b": _effect(b, draws[:, 1], alpha),
        "proportion_mediated": float(a * b / c) if c != 0 else float("nan"),
        "proportion_mediated_ci": [float(prop_ci[0]), float(prop_ci[1])],
        "verdict": verdict,
    }


# --------------------------------------------------------------------------------------------------------------
# partially linear double machine learning
# --------------------------------------------------------------------------------------------------------------


def default_nuisance_regressor(seed: int = 0) -> HistGradientBoostingRegressor:
    """A modest gradient-boosting regressor, used when the caller passes no nuisance model."""
    return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, random_state=seed)


def cross_fit_predict(
    model: Any,
    w: np.ndarray,
    target: np.ndarray,
    *,
    n_folds: int = 5,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Out-of-fold predictions of ``target`` from ``w`` (each row predicted by a model that never saw it).

    Parameters
    ----------
    model : scikit-learn regressor or classifier
        Cloned for every fold (:func:`causal.crossfit.cross_predict`); a classifier predicts P(target = 1 | w).
    w : array of shape (n_units, n_features)
        Covariates; with no columns the out-of-fold mean is returned.
    target : array of shape (n_units,)
    n_folds : int
        Number of folds (``GroupKFold`` when ``groups`` is given, else shuffled ``KFold``).
    seed : int
        Seed of the fold split.
    groups : array of shape (n_units,), optional
        Cluster labels kept within one fold.

    Returns
    -------
    numpy.ndarray of shape (n_units,)
    """
    folds = make_folds(len(target), n_folds=n_folds, seed=seed, groups=groups)
    return cross_predict(model, w, target, folds)


def _oof_r2(target: np.ndarray, pred: np.ndarray) -> float:
    return float(1 - np.mean((target - pred) ** 2) / np.var(target))


def _plm_effects(
    res: dict[str, np.ndarray], t_mean: float, m_mean: float, t0: float, t1: float, interaction: bool
) -> np.ndarray:
    """(total, direct, indirect, alpha, beta, theta[, gamma]) from residuals of one (re)sample."""
    rt, rm, ry = res["t"], res["m"], res["y"]
    alpha_ = float(rt @ rm / (rt @ rt))
    delta = t1 - t0
    if interaction:
        design = np.column_stack([rt, rm, res["tm"]])
        theta, beta, gamma = np.linalg.lstsq(design, ry, rcond=None)[0]
        mean_m_t0 = m_mean + alpha_ * (t0 - t_mean)
        direct = theta * delta + gamma * delta * mean_m_t0
        indirect = (beta + gamma * t1) * alpha_ * delta
    else:
        theta, beta = np.linalg.lstsq(np.column_stack([rt, rm]), ry, rcond=None)[0]
        gamma = 0.0
        direct = theta * delta
        indirect = alpha_ * beta * delta
    return np.array([direct + indirect, direct, indirect, alpha_, beta, theta, gamma])


def _plm_bootstrap(
    res: dict[str, np.ndarray],
    t: np.ndarray,
    m: np.ndarray,
    contrast: tuple[float, float],
    interaction: bool,
    n_boot: int,
    rng: np.random.Generator,
    groups: np.ndarray | None,
) -> np.ndarray:
    """Bootstrap draws of :func:`_plm_effects` over rows (clusters), nuisances held fixed; shape (n_boot, 7)."""
    draws = np.empty((n_boot, 7))
    with threadpool_limits(limits=1, user_api="blas"):  # small problems, as in linear_mediation
        for i, idx in enumerate(bootstrap_indices(len(t), n_boot, rng, groups)):
            sample = {k: v[idx] for k, v in res.items()}
            draws[i] = _plm_effects(sample, t[idx].mean(), m[idx].mean(), *contrast, interaction)
    return draws


def _aggregate_effect(points: Sequence[float], draws: Sequence[np.ndarray], alpha: float) -> dict[str, float]:
    """One split: the percentile interval of its bootstrap. Several: median estimate, variance
    median(sd_r^2 + (point_r - median)^2) (Chernozhukov et al.'s aggregation), normal interval."""
    if len(points) == 1:
        return _effect(points[0], draws[0], alpha)
    from causal.estimands import aggregate

    sds = [np.std(d[np.isfinite(d)], ddof=1) for d in draws]
    theta, se = aggregate(np.array(points), np.array(sds))
    z = float(stats.norm.ppf(1 - alpha / 2))
    return {"estimate": theta, "stderr": se, "ci_low": theta - z * se, "ci_high": theta + z * se}


def ml_mediation(
    frame: pd.DataFrame,
    treatment: str,
    mediator: str,
    outcome: str,
    confounders: Sequence[str] = (),
    *,
    model_y: Any = None,
    model_t: Any = None,
    model_m: Any = None,
    outcome_pred: np.ndarray | None = None,
    treatment_pred: np.ndarray | None = None,
    mediator_pred: np.ndarray | None = None,
    interaction: bool = False,
    control_value: float | None = None,
    treat_value: float | None = None,
    n_folds: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: str | Sequence | np.ndarray | None = None,
    candidates: Sequence[Any] | None = None,
    candidate_options: Mapping[str, Any] | None = None,
    repeats: int = 1,
) -> dict[str, Any]:
    """Natural direct and indirect effects with cross-fitted machine-learning nuisance models.

    Model (partially linear in treatment T and mediator M, arbitrary in the confounders W)::

        M = alpha * T + h(W) + u,                         E[u | T, W] = 0
        Y = theta * T + beta * M [+ gamma * T * M] + g(W) + e,   E[e | T, M, W] = 0

    Every variable is residualised on W with out-of-fold predictions (E[Y|W], E[T|W], E[M|W] and, with the
    interaction, E[T*M|W]); alpha comes from regressing the mediator residual on the treatment residual, and
    (theta, beta[, gamma]) from regressing the outcome residual on the others (Robinson's partialling out, which
    is Neyman-orthogonal, so first-order errors in the learned nuisances do not bias the effects). For a contrast
    from ``control_value`` t0 to ``treat_value`` t1 (delta = t1 - t0):

    * without interaction: direct (NDE) = theta * delta, indirect (NIE) = alpha * beta * delta;
    * with interaction: NDE = delta * (theta + gamma * E[M(t0)]), NIE = alpha * delta * (beta + gamma * t1), where
      E[M(t0)] = mean(M) + alpha * (t0 - mean(T)).

    total = NDE + NIE. Intervals: bootstrap percentile intervals over rows (clusters with ``groups``) of the
    residuals, with the nuisance predictions held fixed -- valid because the score is orthogonal, as in
    DoubleML's multiplier bootstrap. In finite samples the intervals ignore the nuisances' own sampling noise: in
    a simulation with an interaction and 15-parameter nuisances (n=3000) the bootstrap standard errors were 9-14%
    smaller than the spread of the estimates. With an interaction, the learner for E[T*M|W] has to represent a
    product of the treatment and mediator regressions, which trees learn slowly.

    Assumptions are returned in ``assumptions`` (see ``ML_ASSUMPTIONS``): sequential ignorability, no
    treatment-induced mediator-outcome confounding, the partially linear form, no treatment-mediator interaction
    unless ``interaction=True``, and overlap.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per unit.
    treatment, mediator, outcome : str
        Numeric (or boolean) columns.
    confounders : sequence of str
        Covariates W (categoricals one-hot encoded).
    model_y, model_t, model_m : scikit-learn regressors, optional
        Nuisance learners for E[Y|W], E[T|W], E[M|W] (and E[T*M|W], which uses ``model_m``); default
        :func:`default_nuisance_regressor`.
    outcome_pred, treatment_pred, mediator_pred : array of shape (n_units,), optional
        Cross-fitted out-of-fold predictions already computed by the pipeline (E[Y|W], E[T|W] -- the propensity
        for a binary treatment -- and E[M|W]); a given one replaces fitting the matching model.
    interaction : bool
        Estimate gamma (treatment-mediator interaction).
    control_value, treat_value : float, optional
        The contrast t0 -> t1. Defaults: 0 -> 1 for a binary treatment; median(T) -> median(T) + 1 otherwise
        (one more unit, e.g. one more face).
    n_folds : int
        Cross-fitting folds for the nuisances fitted here.
    n_boot : int
        Bootstrap resamples.
    seed : int
        Seed of the folds, the learners' default and the bootstrap.
    alpha : float
        1 - confidence level.
    groups : str or array of shape (n_units,), optional
        Cluster labels: folds and bootstrap keep clusters together.
    candidates : sequence of learner specs, optional
        When a model is not given, each nuisance's learner is chosen among these by out-of-fold MSE
        (:func:`causal.learners.select_predict`, the constant baseline included).
    candidate_options : mapping, optional
        ``n_jobs`` and ``xgb_params`` for the candidates.
    repeats : int
        Independent cross-fitting splits (clusters shuffled into folds from the second on), each with its own
        bootstrap; the reported effects are the median over repeats with the variance of
        :func:`causal.estimands.aggregate` (the bootstrap variance plus the spread over splits) and normal
        intervals. 1: one split and percentile intervals. The chosen learners are kept after the first split.

    Returns
    -------
    dict
        The results-contract ``mediation`` block (``treatment``, ``mediator``, ``total``, ``direct``,
        ``indirect``, ``proportion_mediated``, ``verdict``) plus ``method = "partially_linear_dml"``,
        ``parameters`` (alpha, beta, theta, gamma, each an effect dict), ``contrast``, ``nuisance_r2``
        (out-of-fold R^2 of each nuisance), ``assumptions``, ``n``, ``n_boot``, ``alpha``.
    """
    _check_alpha(alpha)
    _check_roles(treatment, mediator, outcome, confounders)
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2, got {n_boot}")
    t = _column(frame, treatment, "treatment")
    m = _column(frame, mediator, "mediator")
    y = _column(frame, outcome, "outcome")
    w = encode_covariates(frame, confounders)[0].to_numpy()
    g = _groups_array(frame, groups)
    n = len(t)

    binary = set(np.unique(t)) <= {0.0, 1.0}
    if control_value is None:
        control_value = 0.0 if binary else float(np.median(t))
    if treat_value is None:
        treat_value = 1.0 if binary else control_value + 1.0

    chosen: dict[str, Any] = {}
    split = {"r": 0}

    def nuisance(given: np.ndarray | None, model: Any, target: np.ndarray, name: str) -> np.ndarray:
        if given is not None:
            given = np.asarray(given, dtype=float)
            if given.shape != (n,) or not np.isfinite(given).all():
                raise ValueError(f"{name} must be {n} finite out-of-fold predictions, got shape {given.shape}")
            chosen[name] = "given"
            return given
        r = split["r"]
        fold_seed = seed if r == 0 else seed + 7919 * r
        folds = make_folds(n, n_folds=n_folds, seed=fold_seed, groups=g, shuffle_groups=r > 0)
        if model is None and candidates:
            pool = candidates if r == 0 else [chosen[name]["chosen"]]
            pred, record = select_predict(
                pool, w, target, folds, seed=seed, role=f"mediation {name}", **dict(candidate_options or {})
            )
            chosen.setdefault(name, record)
            return pred
        learner = model if model is not None else default_nuisance_regressor(seed)
        chosen[name] = type(learner).__name__
        return cross_predict(learner, w, target, folds)

    targets = {"y": y, "t": t, "m": m}
    if interaction:
        targets["tm"] = t * m
    rng = np.random.default_rng(seed)
    given = (outcome_pred, treatment_pred, mediator_pred)
    fits = []  # (point, draws, preds) per repeat
    for r in range(1 if all(v is not None for v in given) else max(int(repeats), 1)):
        split["r"] = r
        preds = {
            "y": nuisance(outcome_pred, model_y, y, "outcome_pred"),
            "t": nuisance(treatment_pred, model_t, t, "treatment_pred"),
            "m": nuisance(mediator_pred, model_m, m, "mediator_pred"),
        }
        if interaction:
            preds["tm"] = nuisance(None, model_m, targets["tm"], "tm")
        res = {k: targets[k] - preds[k] for k in targets}
        point = _plm_effects(res, t.mean(), m.mean(), control_value, treat_value, interaction)
        boot = _plm_bootstrap(res, t, m, (control_value, treat_value), interaction, n_boot, rng, g)
        fits.append((point, boot, preds))
    preds = fits[0][2]
    names = ("total", "direct", "indirect", "alpha", "beta", "theta", "gamma")
    effects = {
        name: _aggregate_effect([f[0][j] for f in fits], [f[1][:, j] for f in fits], alpha)
        for j, name in enumerate(names)
    }
    total, direct, indirect = (effects[k] for k in ("total", "direct", "indirect"))
    point = np.array([effects[k]["estimate"] for k in names])
    params = {name: effects[name] for name in ("alpha", "beta", "theta")}
    if interaction:
        params["gamma"] = effects["gamma"]
    verdict = mediation_verdict(_excludes_zero(indirect), _excludes_zero(direct))
    log.info(
        "DML mediation %s -> %s -> %s: NIE %.4g [%.4g, %.4g], NDE %.4g: %s",
        treatment,
        mediator,
        outcome,
        indirect["estimate"],
        indirect["ci_low"],
        indirect["ci_high"],
        direct["estimate"],
        verdict,
    )
    return {
        "method": "partially_linear_dml",
        "treatment": treatment,
        "mediator": mediator,
        "outcome": outcome,
        "n": n,
        "n_boot": n_boot,
        "alpha": alpha,
        "contrast": {"control_value": float(control_value), "treat_value": float(treat_value)},
        "interaction": interaction,
        "total": total,
        "direct": direct,
        "indirect": indirect,
        "proportion_mediated": float(point[2] / point[0]) if point[0] != 0 else float("nan"),
        "verdict": verdict,
        "parameters": params,
        "nuisance_r2": {k: _oof_r2(targets[k], preds[k]) for k in targets},
        "learners": chosen,
        "repeats": len(fits),
        "assumptions": list(ML_ASSUMPTIONS),
    }


MEDIATION_METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "baron_kenny": baron_kenny,
    "linear": linear_mediation,
    "ml": ml_mediation,
}


# --------------------------------------------------------------------------------------------------------------
# pipeline step
# --------------------------------------------------------------------------------------------------------------

_STEP_KEYS = {"methods", "primary", "alpha", "n_boot", "cluster", "cov_type", "ml"}
_ML_KEYS = {"n_folds", "interaction", "control_value", "treat_value", "reuse_nuisance", "repeats"}
CONTRACT_KEYS = ("treatment", "mediator", "total", "direct", "indirect", "proportion_mediated", "verdict")


def run_step(ctx: Any) -> dict[str, Any]:
    """Pipeline step ``mediation``: ``roles.treatment`` -> ``roles.mediator`` -> ``roles.outcome``.

    Reads the ``mediation`` config node (conf/mediation/default.yaml): ``methods`` (any of ``baron_kenny``,
    ``linear``, ``ml``), ``primary`` (the method whose estimates fill the results-contract keys), ``n_boot``,
    ``alpha`` (default: the run's), ``cluster`` (a column whose rows are resampled together, e.g. ``title_id``),
    ``cov_type`` (Baron & Kenny standard errors; default ``cluster`` with a cluster column, else ``nonrobust``),
    and ``ml`` (``n_folds``, ``interaction``, ``control_value``, ``treat_value``, ``reuse_nuisance``).

    The confounders are the dataset's encoded W (dummies, embedding components, missing indicators), restricted to
    the units kept by the overlap step. The ML nuisances are XGBoost regressors with the ``nuisance.regressor``
    parameters; for a binary treatment with ``reuse_nuisance`` the pipeline's cached E[T|x] and E[Y|x] are used.

    Returns
    -------
    dict
        The contract keys from the primary method, plus ``method``, ``outcome``, ``n`` and ``methods`` (every
        method's full output).
    """
    from causal.nuisance import derive_seed, make_regressor

    opts = ctx.step_config("mediation")
    unknown = sorted(set(opts) - _STEP_KEYS)
    if unknown:
        raise ValueError(f"config group mediation: unknown key(s) {unknown}; allowed {sorted(_STEP_KEYS)}")
    ml_opts = dict(opts.get("ml") or {})
    unknown = sorted(set(ml_opts) - _ML_KEYS)
    if unknown:
        raise ValueError(f"config key mediation.ml: unknown key(s) {unknown}; allowed {sorted(_ML_KEYS)}")
    methods = list(opts.get("methods") or MEDIATION_METHODS)
    bad = sorted(set(methods) - set(MEDIATION_METHODS))
    if bad:
        raise ValueError(
            f"config key mediation.methods: unknown method(s) {bad}; choose from {list(MEDIATION_METHODS)}"
        )
    primary = opts.get("primary") or ("ml" if "ml" in methods else methods[-1])
    if primary not in methods:
        raise ValueError(f"config key mediation.primary={primary!r} is not among mediation.methods {methods}")

    ds, keep = ctx.dataset, np.asarray(ctx.keep, dtype=bool)
    roles = ds.roles
    if roles.mediator is None or ds.m is None:
        raise ValueError("config key roles.mediator: the mediation step needs a mediator column")
    frame = ds.W.loc[keep].reset_index(drop=True)
    frame = frame.assign(**{roles.treatment: ds.t[keep], roles.mediator: ds.m[keep], roles.outcome: ds.y[keep]})
    confounders = list(ds.W.columns)
    cluster = opts.get("cluster")
    groups = None
    if cluster:
        if cluster not in ds.frame.columns:
            raise ValueError(f"config key mediation.cluster: column {cluster!r} not in {ds.source}")
        groups = ds.frame.loc[keep, cluster].to_numpy()
    alpha = float(opts.get("alpha") or ctx.alpha)
    n_boot = int(opts.get("n_boot", 1000))
    seed = derive_seed(ctx.seed, "mediation")
    args = (frame, roles.treatment, roles.mediator, roles.outcome, confounders)

    results: dict[str, dict[str, Any]] = {}
    if "baron_kenny" in methods:
        cov_type = opts.get("cov_type") or ("cluster" if groups is not None else "nonrobust")
        results["baron_kenny"] = baron_kenny(*args, alpha=alpha, cov_type=cov_type, groups=groups)
    if "linear" in methods:
        results["linear"] = linear_mediation(*args, n_boot=n_boot, seed=seed, alpha=alpha, groups=groups)
    if "ml" in methods:
        nuisance_cfg = ctx.step_config("nuisance")
        n_jobs = int(nuisance_cfg.get("n_jobs", 1))
        # The same learner choice as the pipeline's nuisances (nuisance.candidates); XGBoost-only without it.
        candidates = nuisance_cfg.get("candidates")
        learner = None if candidates else make_regressor(nuisance_cfg.get("regressor"), seed=seed, n_jobs=n_jobs)
        cached: dict[str, np.ndarray] = {}
        binary = set(np.unique(ds.t).tolist()) <= {0.0, 1.0}
        if binary and ml_opts.get("reuse_nuisance", True):
            cached = {"treatment_pred": ctx.nuisance.propensity_[keep], "outcome_pred": ctx.nuisance.outcome_[keep]}
        results["ml"] = ml_mediation(
            *args,
            model_y=learner,
            model_t=learner,
            model_m=learner,
            **cached,
            interaction=bool(ml_opts.get("interaction", False)),
            control_value=ml_opts.get("control_value"),
            treat_value=ml_opts.get("treat_value"),
            n_folds=int(ml_opts.get("n_folds") or nuisance_cfg.get("folds", 5)),
            n_boot=n_boot,
            seed=seed,
            alpha=alpha,
            groups=groups,
            candidates=candidates,
            candidate_options={"n_jobs": n_jobs, "xgb_params": nuisance_cfg.get("regressor")},
            repeats=int(ml_opts.get("repeats") or 1),
        )
    chosen = results[primary]
    out = {key: chosen[key] for key in CONTRACT_KEYS}
    out.update(method=chosen["method"], outcome=roles.outcome, n=int(keep.sum()), alpha=alpha, methods=results)
    if primary != "baron_kenny" and "baron_kenny" in results:
        out["comparison"] = compare_methods(chosen, results["baron_kenny"], names=(primary, "baron_kenny"))
        out["disagreement"] = out["comparison"]["disagree"]
    return out


def compare_methods(
    first: Mapping[str, Any], second: Mapping[str, Any], *, names: tuple[str, str] = ("ml", "baron_kenny")
) -> dict[str, Any]:
    """Do two mediation methods tell the same story? Their intervals of each effect overlap and verdicts agree.

    Parameters
    ----------
    first, second : mapping
        Mediation blocks with ``total``, ``direct``, ``indirect`` (effect records) and ``verdict``.
    names : (str, str)
        The methods' names, for the output.

    Returns
    -------
    dict
        ``disagree`` (bool: some pair of intervals does not overlap, or the verdicts differ), ``effects``
        ({effect: {name: estimate, ..., "intervals_overlap": bool}}), ``verdicts`` ({name: verdict}), ``reading``.
    """
    effects = {}
    for key in ("total", "direct", "indirect"):
        a, b = first[key], second[key]
        overlap = a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"]
        effects[key] = {names[0]: a["estimate"], names[1]: b["estimate"], "intervals_overlap": bool(overlap)}
    verdicts = {names[0]: first["verdict"], names[1]: second["verdict"]}
    apart = [k for k, v in effects.items() if not v["intervals_overlap"]]
    disagree = bool(apart) or verdicts[names[0]] != verdicts[names[1]]
    parts = [f"non-overlapping intervals for {', '.join(apart)}"] if apart else []
    if verdicts[names[0]] != verdicts[names[1]]:
        parts.append(f"verdicts {verdicts[names[0]]} vs {verdicts[names[1]]}")
    reading = (
        f"{names[0]} and {names[1]} disagree ({'; '.join(parts)}): the linear model of {names[1]} may miss "
        f"non-linear confounding; {names[0]} is the primary reading"
        if disagree
        else f"{names[0]} and {names[1]} agree"
    )
    return {"disagree": disagree, "effects": effects, "verdicts": verdicts, "reading": reading}
