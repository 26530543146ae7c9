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

from causal.effects import VAR_T_CLIP, _z, dr_scores, effect, mean_effect, naive_difference  # noqa: F401  (re-exported)
from causal.heterogeneity import blp_test, group_effects, group_heterogeneity  # noqa: F401  (re-exported)
from causal.moderation import moderation, ols_hc3  # noqa: F401  (re-exported: dml.moderation)
from causal.nuisance import CachedClassifier, CachedRegressor

log = logging.getLogger(__name__)

ESTIMATORS = ("linear_dml", "causal_forest")

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
    members: Mapping[str, tuple[float, np.ndarray, np.ndarray]] | None = None,
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
    members : mapping, optional
        A stacked outcome's members for these rows, ``{name: (weight, mu1, mu0)}``
        (``CrossFitNuisance.outcome_members``), with ``arms``: the ATE's and the group effects' standard errors are
        then model-averaged (:func:`causal.estimands.aipw`).

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

    by_member = None
    if arms is not None:
        from causal.estimands import aipw, member_scores

        ate, scores = aipw("ate", y, t, *arms, clip=clip, alpha=alpha, members=members)
        by_member = member_scores("ate", y, t, arms[0], members, clip=clip) if members else None
    else:
        scores = dr_scores(y, t, propensity, outcome, tau)
        ate = mean_effect(scores, alpha)
        ate["method"] = f"{name}: mean of doubly robust scores (ATE)"
    cate_by_group = (
        group_effects(scores, groups, alpha, tau=tau, member_scores=by_member)
        if groups is not None and groups.shape[1]
        else {}
    )
    heterogeneity = {
        "blp": blp_test(scores, tau, alpha, member_scores=by_member),
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
