"""Double ML effect estimates: EconML LinearDML / CausalForestDML on cached nuisances, ATE, group CATEs, tests.

The estimand
------------
The ATE is E[tau(X)], the average effect over units. A partially linear model with a single coefficient,
Y - m(x) = theta (T - e(x)) + noise, estimates instead a variance-weighted average,
theta_PL = E[e(1-e) tau] / E[e(1-e)], which equals the ATE only when the effect is constant or unrelated to the
propensity. So the ATE here is the mean of doubly robust (AIPW) scores

    psi_i = tau(x_i) + (y_i - m(x_i) - tau(x_i) (t_i - e(x_i))) (t_i - e(x_i)) / (e(x_i) (1 - e(x_i)))

built from the cross-fitted e, m and the estimator's CATE tau (out-of-bag for the forest), with standard error
sd(psi) / sqrt(n). This is exactly how EconML computes ``CausalForestDML.ate_`` (same clip of e(1-e) at 0.01); it is
unbiased for the ATE when either the CATE-augmented outcome model or the propensity is right. The variance-weighted
coefficient is reported beside it as ``ate_partially_linear``.

Group CATEs (by each ``roles.groups`` column) are the same scores averaged within each level: the group average
treatment effect estimator of Semenova & Chernozhukov (2021). Its standard error is the within-level sd(psi) /
sqrt(n_level), which accounts for outcome noise. EconML's ``ate_inference(X=subset)`` instead reports either the
SE of tau at the subset's mean X (LinearDML: conditional on X, ignores the spread of X) or, for the forest, the root
mean of pointwise variances, which the EconML docs call "a conservative upper bound" -- neither is the SE of a group
mean.

Heterogeneity is tested two ways: the best linear predictor (BLP) regression of psi on (1, tau - mean tau) of
Chernozhukov et al. (2022) -- the test EconML's ``DRTester.evaluate_blp`` runs, here on the cached scores instead of
refitting nuisances -- and a Wald test that a group column's level effects are all equal.

Nuisances are never refitted here: :class:`causal.nuisance.CachedRegressor` / :class:`CachedClassifier` hand the
cross-fitted predictions to EconML with ``cv=1``, so EconML's final stages (OLS with heteroskedasticity-robust
covariance; the honest GRF forest with bootstrap-of-little-bags intervals) run on exactly the cached residuals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from causal.data import MIN_LEVEL_COUNT, pool_rare_levels
from causal.nuisance import CachedClassifier, CachedRegressor

log = logging.getLogger(__name__)

ESTIMATORS = ("linear_dml", "causal_forest")
# EconML clips e(1-e) at 0.01 in CausalForestDML's doubly robust ATE; the same value keeps the two comparable.
VAR_T_CLIP = 1e-2

_FOREST_KEYS = (
    "n_estimators",
    "max_depth",
    "min_samples_split",
    "min_samples_leaf",
    "max_samples",
    "max_samples_rows",
    "min_balancedness_tol",
    "max_features",
    "honest",
    "subforest_size",
    "n_jobs",
    "criterion",
)
# Passed through to EconML by both estimators: its own cross-fit step (here one pass over the cached predictions)
# runs as Ray tasks.
_RAY_KEYS = ("use_ray", "ray_remote_func_options")


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


def group_effects(
    scores: np.ndarray, groups: pd.DataFrame, alpha: float = 0.05, tau: np.ndarray | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Group average effects: DR scores averaged within each level of each group column.

    Parameters
    ----------
    scores : ndarray of shape (n,)
    groups : DataFrame of shape (n, g)
        Group columns (levels as strings).
    alpha : float
    tau : ndarray of shape (n,), optional
        The estimator's CATE; its level mean is added as ``cate_model`` (the plug-in, for comparison).

    Returns
    -------
    dict
        ``{column: [{"level", "n", "estimate", "stderr", "ci_low", "ci_high"[, "cate_model"]}, ...]}``, levels
        sorted by name.
    """
    frame = pd.DataFrame({"psi": np.asarray(scores, dtype=np.float64)})
    if tau is not None:
        frame["tau"] = np.asarray(tau, dtype=np.float64)
    out: dict[str, list[dict[str, Any]]] = {}
    for col in groups.columns:
        frame["level"] = groups[col].astype(str).to_numpy()
        agg = frame.groupby("level", sort=True).agg(
            n=("psi", "size"),
            mean=("psi", "mean"),
            sd=("psi", "std"),
            **({"tau": ("tau", "mean")} if tau is not None else {}),
        )
        rows = []
        for level, row in agg.iterrows():
            n = int(row["n"])
            se = float(row["sd"]) / np.sqrt(n) if n > 1 else float("nan")
            rec = {"level": str(level), "n": n, **effect(row["mean"], se, alpha)}
            if tau is not None:
                rec["cate_model"] = float(row["tau"])
            rows.append(rec)
        out[str(col)] = rows
    return out


def group_heterogeneity(cate_by_group: Mapping[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Wald test per group column that all level effects are equal.

    The level means are independent (disjoint units), so W = sum_l (est_l - pooled)^2 / se_l^2 with the
    inverse-variance pooled mean is chi-square with (levels - 1) degrees of freedom under equality.
    """
    out = {}
    for col, rows in cate_by_group.items():
        rows = [r for r in rows if np.isfinite(r["stderr"]) and r["stderr"] > 0]
        if len(rows) < 2:
            out[col] = {"chi2": float("nan"), "df": 0, "p_value": float("nan")}
            continue
        est = np.array([r["estimate"] for r in rows])
        w = 1.0 / np.array([r["stderr"] for r in rows]) ** 2
        pooled = np.sum(w * est) / w.sum()
        chi2 = float(np.sum(w * (est - pooled) ** 2))
        df = len(rows) - 1
        out[col] = {"chi2": chi2, "df": df, "p_value": float(stats.chi2.sf(chi2, df))}
    return out


def blp_test(scores: np.ndarray, tau: np.ndarray, alpha: float = 0.05) -> dict[str, Any]:
    """Best linear predictor of the effect (Chernozhukov, Demirer, Duflo & Fernandez-Val, 2022).

    OLS of psi on (1, tau - mean(tau)) with HC1 standard errors. ``beta_ate`` estimates the ATE; ``beta_het`` is
    1 when tau captures the heterogeneity exactly and 0 when it captures none; ``p_value`` is one-sided for
    beta_het > 0 ("heterogeneity detected").
    """
    import statsmodels.api as sm

    s = np.asarray(scores, dtype=np.float64)
    tau = np.asarray(tau, dtype=np.float64)
    ok = ~(np.isnan(s) | np.isnan(tau))
    s, tau = s[ok], tau[ok]
    centred = tau - tau.mean()
    if np.allclose(centred, 0.0):
        return {
            "beta_ate": effect(s.mean(), s.std(ddof=1) / np.sqrt(s.size), alpha),
            "beta_het": None,
            "p_value": float("nan"),
            "note": "the CATE is constant; no heterogeneity to test",
        }
    fit = sm.OLS(s, np.column_stack([np.ones_like(centred), centred])).fit(cov_type="HC1")
    params, bse = np.asarray(fit.params), np.asarray(fit.bse)
    z = params[1] / bse[1]
    return {
        "beta_ate": effect(params[0], bse[0], alpha),
        "beta_het": effect(params[1], bse[1], alpha),
        "p_value": float(stats.norm.sf(z)),
    }


def partially_linear(
    y: np.ndarray, t: np.ndarray, propensity: np.ndarray, outcome: np.ndarray, alpha: float = 0.05
) -> dict[str, Any]:
    """The single-coefficient partially linear DML estimate (residual-on-residual OLS, HC0 SE).

    This is what ``LinearDML`` without X returns: a variance-weighted average effect with weights e(1-e), not the
    ATE when the effect varies with the propensity.
    """
    t_res = np.asarray(t, dtype=np.float64) - np.asarray(propensity, dtype=np.float64)
    y_res = np.asarray(y, dtype=np.float64) - np.asarray(outcome, dtype=np.float64)
    sxx = np.sum(t_res**2)
    theta = np.sum(t_res * y_res) / sxx
    se = np.sqrt(np.sum(t_res**2 * (y_res - theta * t_res) ** 2)) / sxx
    return effect(
        theta,
        se,
        alpha,
        method="partially linear DML (variance-weighted average effect)",
        estimand="variance-weighted average effect, weights e(1-e): not the ATE when effects vary with e",
    )


def moderation(
    y: np.ndarray,
    t: np.ndarray,
    moderator: pd.Series,
    confounders: pd.DataFrame,
    *,
    alpha: float = 0.05,
    min_level_count: int = MIN_LEVEL_COUNT,
    max_levels: int | None = 50,
) -> dict[str, Any]:
    """Baron & Kenny moderation: OLS of y on T, the moderator, T x moderator and confounders, HC3 SEs.

    Fitted by :func:`ols_hc3` (statsmodels' HC3 numbers in O(n p) memory).

    A categorical moderator enters as dummies (reference: its most frequent level) and each T x level term is the
    difference in effect from the reference level; a numeric one is centred, so the T coefficient is the effect at
    the moderator's mean. Levels with fewer than ``min_level_count`` rows, and those beyond the ``max_levels`` most
    frequent, pool into "other" first (:func:`causal.data.pool_rare_levels`): each level costs two design columns
    and a column-by-column rank check, so 5,000 raw levels took over 11 minutes, for terms that are noise anyway.

    Parameters
    ----------
    y, t : ndarray of shape (n,)
    moderator : Series of length n
        Raw moderator column.
    confounders : DataFrame of shape (n, p), numeric
        Encoded confounders W. Columns in the span of the moderator's dummies (the moderator is usually a
        confounder too) are dropped so the design has full rank.
    min_level_count, max_levels : int
        Level pooling (config ``data.prepare.min_level_count`` and ``max_levels``).

    Returns
    -------
    dict
        ``kind`` ("categorical" or "numeric"), ``reference``, ``treatment`` (effect record at the reference level
        or mean), ``interactions`` ([{"term", "level", estimate, stderr, ci, p_value}]), ``joint`` (Wald test of
        all interaction terms: ``chi2``, ``df``, ``p_value``), ``cov_type`` ("HC3"), ``n``, and for a categorical
        moderator ``levels`` (distinct raw levels) and ``pooled_levels`` (how many went into "other").
    """
    y = np.asarray(y, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    numeric = pd.api.types.is_numeric_dtype(moderator) and not pd.api.types.is_bool_dtype(moderator)
    numeric = numeric and moderator.nunique(dropna=True) > 10
    if numeric:
        m = moderator.to_numpy(dtype=np.float64)
        m = np.where(np.isnan(m), np.nanmean(m), m) - np.nanmean(m)
        main = m[:, None]
        names = [str(moderator.name)]
        reference = "mean"
    else:
        raw = moderator.astype(str).fillna("missing")
        levels = pool_rare_levels(raw, min_count=min_level_count, max_levels=max_levels)
        pooling = {"levels": int(raw.nunique()), "pooled_levels": int(raw.nunique() - levels.nunique())}
        pooling["pooled_levels"] += int(pooling["pooled_levels"] > 0)  # "other" replaced them: it is not one of them
        counts = levels.value_counts()
        reference = str(sorted(counts.index[counts == counts.max()])[0])
        others = sorted(lv for lv in counts.index if lv != reference)
        main = np.column_stack([(levels == lv).to_numpy(dtype=np.float64) for lv in others]) if others else None
        names = others
    if main is None:
        note = "moderator has one level" + (" after pooling rare levels" if pooling["pooled_levels"] else "")
        return {"kind": "categorical", "reference": reference, "note": f"{note}; nothing to test", **pooling}
    head = np.column_stack([np.ones_like(t), t, t[:, None] * main, main])
    k = main.shape[1]
    params, cov, kept = ols_hc3(y, head, confounders.to_numpy(dtype=np.float64))
    bse = np.sqrt(np.diag(cov))
    inter = slice(2, 2 + k)
    z = _z(alpha)
    interactions = []
    for j, name in enumerate(names):
        est, se = params[2 + j], bse[2 + j]
        identified = bool(kept[2 + j])
        interactions.append(
            {
                "term": f"T x {name}",
                "level": name,
                "estimate": float(est) if identified else float("nan"),
                "stderr": float(se) if identified else float("nan"),
                "ci_low": float(est - z * se) if identified else float("nan"),
                "ci_high": float(est + z * se) if identified else float("nan"),
                "p_value": float(2 * stats.norm.sf(abs(est / se))) if identified and se > 0 else float("nan"),
                **({} if identified else {"note": "not identified: no treated (or no control) unit at this level"}),
            }
        )
    ok = kept[inter]
    b = params[inter][ok]
    v = cov[inter, inter][np.ix_(ok, ok)]
    chi2 = float(b @ np.linalg.solve(v, b)) if ok.any() else float("nan")
    return {
        "kind": "numeric" if numeric else "categorical",
        "reference": reference,
        "treatment": effect(params[1], bse[1], alpha),
        "interactions": interactions,
        "joint": {"chi2": chi2, "df": int(ok.sum()), "p_value": float(stats.chi2.sf(chi2, int(ok.sum())))},
        "cov_type": "HC3",
        "n": int(len(y)),
        **({} if numeric else pooling),
    }


def ols_hc3(
    y: np.ndarray, head: np.ndarray, controls: np.ndarray, *, tol: float = 1e-9, chunk: int = 250_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OLS of y on [head, controls] with HC3 covariance, in O(n p) memory; the ``head`` coefficients are returned.

    Gives statsmodels' ``OLS(y, design).fit(cov_type="HC3")`` numbers (checked in the tests) without its (n, p)
    pseudo-inverse and SVD copies, which at 1M rows took minutes and gigabytes. Controls are centred and scaled
    (their coefficients are not reported, and affine changes of them leave the others unchanged) and a column that
    is (numerically) a linear combination of the columns before it is dropped -- the moderator's dummies are
    usually among the confounders. HC3: cov = A (sum_i x_i x_i' (e_i / (1 - h_ii))^2) A with A = (X'X)^-1.

    Parameters
    ----------
    y : ndarray of shape (n,)
    head : ndarray of shape (n, k)
        Columns whose coefficients are wanted (intercept first).
    controls : ndarray of shape (n, p)
    tol : float
        A column is dropped when its residual variance given the kept columns is below ``tol`` of its variance.
    chunk : int
        Rows per block for the leverages and the HC3 "meat".

    Returns
    -------
    params : ndarray of shape (k,)
        The intercept (column 0) is at the controls' means, since they are centred.
    cov : ndarray of shape (k, k)
    kept : ndarray of bool, shape (k,)
        Head columns that are identified; params and cov entries of the others are NaN.
    """
    live = [j for j in range(controls.shape[1]) if controls[:, j].std() > 0]
    design = np.empty((len(y), head.shape[1] + len(live)))
    design[:, : head.shape[1]] = head
    for i, j in enumerate(live, start=head.shape[1]):  # one column at a time: no second (n, p) copy
        col = controls[:, j]
        design[:, i] = (col - col.mean()) / col.std()
    gram = design.T @ design
    scale = np.where(np.diag(gram) > 0, np.diag(gram), 1.0)
    keep: list[int] = []
    for j in range(design.shape[1]):
        if gram[j, j] == 0:
            continue
        if keep:
            g = gram[np.ix_(keep, keep)]
            resid = gram[j, j] - gram[j, keep] @ np.linalg.solve(g, gram[keep, j])
        else:
            resid = gram[j, j]
        if resid > tol * scale[j]:
            keep.append(j)
    a = np.linalg.inv(gram[np.ix_(keep, keep)])
    beta = a @ (design.T @ y)[keep]
    meat = np.zeros_like(a)
    for start in range(0, len(y), chunk):
        block = design[start : start + chunk][:, keep]
        resid = y[start : start + chunk] - block @ beta
        lev = np.einsum("ij,ij->i", block @ a, block)
        w = (resid / (1.0 - lev)) ** 2
        meat += (block * w[:, None]).T @ block
    cov_all = a @ meat @ a
    k = head.shape[1]
    kept = np.array([j in keep for j in range(k)])
    pos = {j: i for i, j in enumerate(keep)}
    params = np.full(k, np.nan)
    cov = np.full((k, k), np.nan)
    idx = [pos[j] for j in range(k) if kept[j]]
    params[kept] = beta[idx]
    cov[np.ix_(kept, kept)] = cov_all[np.ix_(idx, idx)]
    return params, cov, kept


def oob_cate(est: Any, X: np.ndarray, *, max_distinct: float = 0.1) -> np.ndarray:
    """Out-of-bag CATE of a fitted ``CausalForestDML`` for each of its training rows.

    Equals EconML's ``model_cate.oob_predict(X)``. When X has few distinct rows (modifiers such as genre x country
    cells), it is computed from the forest's statistics on the distinct rows minus each tree's contribution on
    its own in-bag rows -- about ``n_trees * rows_per_tree`` tree evaluations instead of ``n_trees * n``, which at
    1M rows turns minutes into seconds. Otherwise it calls ``oob_predict``.

    Parameters
    ----------
    est : fitted CausalForestDML (single outcome, single treatment)
    X : ndarray of shape (n, q)
        The modifiers it was fitted on, same rows and order.
    max_distinct : float
        Use the fast path when distinct rows <= ``max_distinct * n``.

    Returns
    -------
    ndarray of shape (n,)
        NaN for a row that was in the bag of every tree.
    """
    multi = est.model_cate
    forest = multi.estimators_[0] if hasattr(multi, "estimators_") and len(multi.estimators_) == 1 else None
    # Hash-based grouping of identical rows (np.unique(axis=0) sorts rows lexicographically: seconds at 1M).
    inverse = pd.DataFrame(X).groupby(list(range(X.shape[1])), sort=False).ngroup().to_numpy()
    first = np.unique(inverse, return_index=True)[1]
    distinct = X[first]
    if forest is None or not hasattr(forest, "get_subsample_inds") or len(distinct) > max_distinct * len(X):
        return np.asarray(multi.oob_predict(X), dtype=np.float64).reshape(len(X), -1)[:, 0]
    k = forest.n_outputs_
    n = len(X)
    alpha = np.zeros((n, k))
    jac = np.zeros((n, k * k))
    counts = np.full(n, len(forest.estimators_), dtype=np.int64)
    total_alpha = np.zeros((len(distinct), k))
    total_jac = np.zeros((len(distinct), k * k))
    # The same accumulation as econml's _accumulate_oob_preds, reorganised: all trees on the distinct rows,
    # minus each tree on the rows it was grown (or honestly estimated) on.
    for tree, inbag in zip(forest.estimators_, forest.get_subsample_inds()):
        a_u, j_u = tree.predict_alpha_and_jac(distinct.astype(np.float64))
        total_alpha += a_u
        total_jac += j_u
        rows = inbag  # drawn without replacement, so each row once
        alpha[rows] -= a_u[inverse[rows]]
        jac[rows] -= j_u[inverse[rows]]
        counts[rows] -= 1
    alpha += total_alpha[inverse]
    jac += total_jac[inverse]
    ok = counts > 0
    alpha[ok] /= counts[ok, None]
    jac[ok] /= counts[ok, None]
    jac = jac.reshape(n, k, k)[ok]
    try:  # a batched solve is several times faster than the pseudo-inverse EconML uses, and equal when regular
        theta = np.linalg.solve(jac, alpha[ok][..., None])[..., 0]
    except np.linalg.LinAlgError:
        theta = np.einsum("ijk,ik->ij", np.linalg.pinv(jac), alpha[ok])
    tau = np.full(n, np.nan)
    tau[ok] = theta[:, 0]
    return tau


@dataclass
class EffectEstimate:
    """A fitted estimator and what it says about the effect.

    Attributes
    ----------
    name : str
        ``linear_dml`` or ``causal_forest``.
    estimator : econml estimator
        Fitted on the cached nuisances (``cv=1``); its ``sensitivity_interval`` / ``robustness_value`` work as usual.
    tau : ndarray of shape (n,)
        CATE per unit used in the scores (out-of-bag for the forest).
    scores : ndarray of shape (n,)
        Doubly robust scores; ``scores.mean()`` is the ATE.
    results : dict
        ``ate``, ``ate_partially_linear``, ``cate_by_group``, ``heterogeneity`` and ``estimator`` fragments.
    seconds : dict
        Wall time of ``fit`` and ``inference``.
    """

    name: str
    estimator: Any
    tau: np.ndarray
    scores: np.ndarray
    results: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def make_estimator(
    cfg: Mapping[str, Any],
    *,
    y: np.ndarray,
    t: np.ndarray,
    propensity: np.ndarray,
    outcome: np.ndarray,
    n_rows: int,
    seed: int,
) -> Any:
    """An unfitted EconML estimator that reads the cached nuisances (``cv=1``, ``discrete_treatment=True``).

    Parameters
    ----------
    cfg : mapping
        The ``estimator`` config node: ``name`` and, for ``causal_forest``, forest parameters (``n_estimators``,
        ``min_samples_leaf``, ``max_depth``, ``max_samples`` (fraction), ``max_samples_rows`` (cap on rows per
        tree, keeps memory flat at scale), ``subforest_size``, ``honest``, ``n_jobs``, ...); both take
        ``use_ray`` / ``ray_remote_func_options`` (EconML's Ray options).
    y, t, propensity, outcome : ndarray of shape (n,)
        The rows the estimator will be fitted on and their cached nuisance predictions.
    n_rows : int
        Number of rows (for ``max_samples_rows``).
    seed : int
        ``random_state`` of the estimator.
    """
    from econml.dml import CausalForestDML, LinearDML

    cfg = dict(cfg)
    name = cfg.get("name")
    common = {
        "model_y": CachedRegressor(outcome, y),
        "model_t": CachedClassifier(propensity, t.astype(np.int64)),
        "discrete_treatment": True,
        "cv": 1,
        "random_state": seed,
    }
    ray_opts = {k: cfg[k] for k in _RAY_KEYS if cfg.get(k) is not None}
    common.update(ray_opts)
    if name == "linear_dml":
        unknown = sorted(set(cfg) - {"name", "fit_cate_intercept", *_RAY_KEYS})
        if unknown:
            raise ValueError(f"config group estimator (linear_dml): unknown key(s) {unknown}")
        return LinearDML(**common, fit_cate_intercept=bool(cfg.get("fit_cate_intercept", True)))
    if name == "causal_forest":
        unknown = sorted(set(cfg) - {"name", *_FOREST_KEYS, *_RAY_KEYS})
        if unknown:
            raise ValueError(f"config group estimator (causal_forest): unknown key(s) {unknown}")
        params = {k: cfg[k] for k in _FOREST_KEYS if k in cfg and cfg[k] is not None}
        cap = params.pop("max_samples_rows", None)
        frac = float(params.pop("max_samples", 0.45))
        if cap is not None:
            # Rows per tree, not a fraction, is what drives the forest's time and memory (EconML #627, #883).
            frac = min(frac, int(cap) / max(n_rows, 1))
        if params.get("subforest_size", 4) > 1 and frac > 0.5:
            raise ValueError("config key estimator.max_samples must be <= 0.5 with inference (subforest_size > 1)")
        return CausalForestDML(**common, max_samples=frac, drate=False, inference=True, **params)
    raise ValueError(f"config key estimator.name: {name!r} is not one of {ESTIMATORS}")


def estimate(
    cfg: Mapping[str, Any],
    *,
    y: np.ndarray,
    t: np.ndarray,
    X: pd.DataFrame,
    propensity: np.ndarray,
    outcome: np.ndarray,
    groups: pd.DataFrame | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    arms: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    clip: float = 0.01,
) -> EffectEstimate:
    """Fit the configured EconML estimator on cached nuisances and derive the ATE, group CATEs and tests.

    With ``arms`` (the per-arm outcome models), the ATE, the group effects and the BLP test use the AIPW scores
    of :mod:`causal.estimands`, whatever the final CATE model; without them, the R-learner scores of
    :func:`dr_scores` (the CATE-augmented pooled outcome model).

    Parameters
    ----------
    cfg : mapping
        ``estimator`` config node (see :func:`make_estimator`).
    y, t : ndarray of shape (n,)
        Outcome and 0/1 treatment of the rows used (after trimming).
    X : DataFrame of shape (n, q)
        Effect modifiers (may have 0 columns: then the linear CATE is a constant and the forest is unavailable).
    propensity, outcome : ndarray of shape (n,)
        Cross-fitted e(x), m(x) for these rows.
    groups : DataFrame of shape (n, g), optional
        Columns to report CATE by.
    alpha : float
        1 - confidence level.
    seed : int
        Estimator seed.
    arms : tuple of (propensity, outcome_treated, outcome_control), each of shape (n,) or (repeats, n), optional
        Cross-fitted e, mu1, mu0 (every repeat) for the AIPW scores.
    clip : float
        Propensity clipping bound of the AIPW scores.

    Returns
    -------
    EffectEstimate
    """
    name = dict(cfg).get("name")
    if name == "causal_forest" and X.shape[1] == 0:
        raise ValueError(
            "estimator=causal_forest needs effect modifiers: roles.modifiers is empty; set it or use "
            "estimator=linear_dml"
        )
    y = np.asarray(y, dtype=np.float64)
    t = np.asarray(t).astype(np.int64)
    est = make_estimator(cfg, y=y, t=t, propensity=propensity, outcome=outcome, n_rows=len(y), seed=seed)
    x_arr = X.to_numpy(dtype=np.float64) if X.shape[1] else None
    # EconML's nuisance step only reads the cached predictions, so W is not handed over: it would be copied and
    # stacked with X several times (about 4 (n, p) float64 copies at peak) for nothing. Without X, EconML needs
    # some W to know the row count; one zero column does.
    w_arr = None if x_arr is not None else np.zeros((len(y), 1))
    start = time.perf_counter()
    est.fit(y, t, X=x_arr, W=w_arr)
    fitted = time.perf_counter()

    econml_ate: dict[str, Any] | None = None
    if name == "causal_forest":
        # Out-of-bag CATE, so each unit's score uses trees that never saw it. With these scores the mean below is
        # exactly CausalForestDML.ate_ (drate=True; checked in the tests), so EconML's own pass is switched off:
        # at 1M rows each out-of-bag pass over the forest costs as much as fitting it.
        tau = oob_cate(est, x_arr)
        missing = np.isnan(tau)
        if missing.any():
            log.warning("%d units have no out-of-bag forest prediction; using the full-forest CATE", missing.sum())
            tau[missing] = np.asarray(est.effect(x_arr[missing]), dtype=np.float64).ravel()
    else:
        # Without X the CATE is one coefficient; EconML returns it once, every unit gets it.
        tau = np.broadcast_to(np.asarray(est.effect(x_arr), dtype=np.float64).ravel(), (len(y),)).copy()
        inf = est.ate_inference(X=x_arr) if x_arr is not None else est.const_marginal_effect_inference()
        lo, hi = (
            np.ravel(v)[0] for v in (inf.conf_int_mean(alpha=alpha) if x_arr is not None else inf.conf_int(alpha=alpha))
        )
        point = np.ravel(inf.mean_point if x_arr is not None else inf.point_estimate)[0]
        se = np.ravel(inf.stderr_mean if x_arr is not None else inf.stderr)[0]
        econml_ate = {
            "estimate": float(point),
            "stderr": float(se),
            "ci_low": float(lo),
            "ci_high": float(hi),
            "method": "LinearDML.ate_inference (CATE at the sample's mean X)",
        }

    if arms is not None:
        from causal.estimands import aipw

        ate, scores = aipw("ate", y, t, *arms, clip=clip, alpha=alpha)
    else:
        scores = dr_scores(y, t, propensity, outcome, tau)
        ate = mean_effect(scores, alpha)
        ate["method"] = f"{name}: mean of doubly robust scores (ATE)"
    cate_by_group = group_effects(scores, groups, alpha, tau=tau) if groups is not None and groups.shape[1] else {}
    heterogeneity = {
        "blp": blp_test(scores, tau, alpha),
        "groups": group_heterogeneity(cate_by_group),
    }
    done = time.perf_counter()
    results = {
        "ate": ate,
        "ate_partially_linear": partially_linear(y, t, propensity, outcome, alpha),
        **({"ate_econml": econml_ate} if econml_ate is not None else {}),
        "cate_by_group": cate_by_group,
        "heterogeneity": heterogeneity,
        "cate_distribution": _describe(tau),
    }
    log.info(
        "%s: ATE %.5g [%.5g, %.5g]; partially linear %.5g; fit %.1fs, inference %.1fs",
        name,
        ate["estimate"],
        ate["ci_low"],
        ate["ci_high"],
        results["ate_partially_linear"]["estimate"],
        fitted - start,
        done - fitted,
    )
    return EffectEstimate(
        name=name,
        estimator=est,
        tau=tau,
        scores=scores,
        results=results,
        seconds={"fit": fitted - start, "inference": done - fitted},
    )


def _describe(v: np.ndarray) -> dict[str, float]:
    q = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {
        "mean": float(v.mean()),
        "sd": float(v.std()),
        "p05": float(q[0]),
        "p25": float(q[1]),
        "median": float(q[2]),
        "p75": float(q[3]),
        "p95": float(q[4]),
    }
