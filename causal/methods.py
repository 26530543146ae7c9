"""Estimators side by side on the run's cross-fitted nuisances: the ``methods`` pipeline step.

Every estimator reads the same out-of-fold propensity e(x) and per-arm outcome predictions mu1(x), mu0(x)
(:class:`causal.nuisance.CrossFitNuisance`); nothing is refitted except EconML's LinearDML final stage when the
primary estimator is the causal forest (on the same cached nuisances, :func:`causal.dml.estimate`).

=================  ====================================================================================
``aipw_ate``       AIPW / doubly robust ATE (:func:`causal.estimands.aipw`)
``aipw_att``       AIPW ATT
``ipw_ate``        normalised (Hajek) inverse propensity weighting; influence-function standard error
``ipw_att``        normalised IPW ATT (controls weighted by e / (1 - e))
``matching_ate``   propensity nearest-neighbour matching with caliper, Abadie--Imbens variance
``matching_att``   the same for the treated (:mod:`causal.matching`)
``t_learner_ate``  outcome regression (T-learner): mean of mu1 - mu0 from one outcome model per arm
``linear_dml_ate`` EconML LinearDML's ``ate_inference``
``causal_forest``  EconML CausalForestDML's doubly robust ATE (``ate_``: mean of the R-learner scores with the
                   out-of-bag CATE)
=================  ====================================================================================

Standard errors. IPW: the sample variance of its influence function (e treated as known; with an estimated e this
is conservative for the ATE). T-learner: a plug-in mean has no valid analytic variance when mu is machine
learned; the one given is the AIPW influence-function variance, the smallest any regular estimator can have, so
its interval is as narrow as it could honestly be and is valid only when the outcome models' bias is negligible
(``scripts/bench_methods.py`` measures its coverage). Its outcome models are always one per arm: when the run's
chosen outcome model is one model of (x, T) (``nuisance.outcome_mode`` pooled, or auto choosing it), the step
cross-fits the same learner per arm on the same folds (:meth:`causal.nuisance.CrossFitNuisance.per_arm_outcomes`),
because a pooled model shrinks mu1 - mu0 toward zero like an S-learner: on the simulator, while the default outcome
model was pooled, that plug-in was biased by about half a standard error and its interval covered in 88% of 50
seeds (README). Matching: :mod:`causal.matching`.

Each estimator also returns per-unit contributions whose mean is its estimate (its linearisation);
:mod:`causal.agreement` tests whether the estimates differ more than their joint sampling noise allows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from causal import dml, estimands
from causal.config_keys import METHODS  # one list for the step and the config check
from causal.matching import DEFAULT_CALIPER, DEFAULT_NEIGHBORS, DEFAULT_VARIANCE_NEIGHBORS, match_effect

log = logging.getLogger(__name__)

# The config node ``methods`` (conf/config.yaml); causal.validate reads the same set.
KEYS = frozenset({"include", "caliper", "n_neighbors", "variance_neighbors", "bias_correction", "reference"})


def _record(rec: Mapping[str, Any], estimand: str, **extra: Any) -> dict[str, Any]:
    keep = ("estimate", "stderr", "ci_low", "ci_high")
    return {**{k: float(rec[k]) for k in keep}, "estimand": estimand, **extra}


def ipw(
    kind: str, y: np.ndarray, t: np.ndarray, e: np.ndarray, alpha: float = 0.05, groups: np.ndarray | None = None
) -> tuple[dict, np.ndarray]:
    """Normalised (Hajek) IPW estimate of the ``ate`` or ``att``; ``e`` already clipped; cluster-robust standard
    error with ``groups`` (cluster labels, shape (n,)).

    Returns
    -------
    record : dict
        The effect record with an influence-function standard error.
    contributions : ndarray of shape (n,)
        theta + influence function per unit (their mean is theta).
    """
    y, t = np.asarray(y, dtype=np.float64), np.asarray(t, dtype=np.float64)
    w1 = t / e if kind == "ate" else t
    w0 = (1 - t) / (1 - e) if kind == "ate" else (1 - t) * e / (1 - e)
    m1, m0 = np.sum(w1 * y) / np.sum(w1), np.sum(w0 * y) / np.sum(w0)
    theta = float(m1 - m0)
    # Each arm's weighted mean is a ratio estimator: its influence is w (y - m) / mean(w) (e treated as known).
    influence = w1 * (y - m1) / np.mean(w1) - w0 * (y - m0) / np.mean(w0)
    se = estimands.mean_stderr(influence, groups)
    return dml.effect(theta, se, alpha), theta + influence


def t_learner(
    y: np.ndarray,
    t: np.ndarray,
    e: np.ndarray,
    mu1: np.ndarray,
    mu0: np.ndarray,
    alpha: float = 0.05,
    groups: np.ndarray | None = None,
) -> tuple[dict, np.ndarray]:
    """Outcome-regression estimate mean(mu1 - mu0) with the AIPW influence-function standard error (cluster-robust
    with ``groups``).

    Returns the record and the contributions mu1 - mu0.
    """
    plug_in = np.asarray(mu1 - mu0, dtype=np.float64)
    scores = estimands.ate_scores(y, t, e, mu1, mu0)
    se = estimands.mean_stderr(scores - scores.mean(), groups)
    return dml.effect(float(plug_in.mean()), se, alpha), plug_in


def forest_dr(
    fit: dml.EffectEstimate, y, t, e, m, alpha: float = 0.05, groups: np.ndarray | None = None
) -> tuple[dict, np.ndarray]:
    """CausalForestDML's doubly robust ATE (its ``ate_``): the mean of the R-learner scores with the forest's
    out-of-bag CATE (:func:`causal.dml.dr_scores`), and those scores; cluster-robust standard error with
    ``groups``."""
    scores = dml.dr_scores(y, t, e, m, fit.tau)
    if groups is None:
        return dml.mean_effect(scores, alpha), scores
    se = estimands.mean_stderr(scores - scores.mean(), groups)
    return dml.effect(float(scores.mean()), se, alpha, n=len(scores)), scores


def estimate_all(
    y: np.ndarray,
    t: np.ndarray,
    arms: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    include: tuple[str, ...] = METHODS,
    clip: float = estimands.DEFAULT_CLIP,
    alpha: float = 0.05,
    caliper: float | None = DEFAULT_CALIPER,
    n_neighbors: int = DEFAULT_NEIGHBORS,
    variance_neighbors: int = DEFAULT_VARIANCE_NEIGHBORS,
    bias_correction: bool = True,
    t_learner_arms: tuple[np.ndarray, np.ndarray] | None = None,
    groups: np.ndarray | None = None,
    members: dict[str, tuple] | None = None,
) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """The estimators that need only the nuisances (every method but the two EconML ones).

    Parameters
    ----------
    y, t : ndarray of shape (n,)
    arms : (e, mu1, mu0), each of shape (repeats, n) or (n,)
        Cross-fitted nuisances; the AIPW entries aggregate the repeats (median), the others use their mean.
    include : tuple of str
        Method names (:data:`METHODS`); the EconML ones are skipped here.
    t_learner_arms : (mu1, mu0), each of shape (repeats, n) or (n,), optional
        Per-arm outcome predictions for the T-learner when ``arms`` holds a pooled model's; default ``arms``'.
    groups : ndarray of shape (n,), optional
        Cluster labels: the AIPW entries' standard errors are cluster-robust (as the headline's).
    members : dict, optional
        A stacked outcome's members (:func:`causal.estimands.aipw`): the AIPW entries' standard errors are
        model-averaged (as the headline's).

    Returns
    -------
    estimates : dict
        ``{name: {"estimate", "stderr", "ci_low", "ci_high", "estimand", ...}}``
    contributions : dict
        ``{name: ndarray (n,)}`` whose mean is each estimate (for :mod:`causal.agreement`).
    """
    e_all, mu1_all, mu0_all = (np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in arms)
    e, mu1, mu0 = e_all.mean(axis=0), mu1_all.mean(axis=0), mu0_all.mean(axis=0)
    y, t = np.asarray(y, dtype=np.float64), np.asarray(t).astype(int)
    out: dict[str, dict] = {}
    parts: dict[str, np.ndarray] = {}
    for kind in ("ate", "att"):
        name = f"aipw_{kind}"
        if name in include:
            rec, scores = estimands.aipw(
                kind, y, t, e_all, mu1_all, mu0_all, clip=clip, alpha=alpha, groups=groups, members=members
            )
            out[name] = _record(rec, kind, method="AIPW (doubly robust)", n_clipped=rec["n_clipped"])
            parts[name] = scores
        name = f"ipw_{kind}"
        if name in include:
            e_c, _ = estimands.clip_propensity(e, clip, upper_only=kind == "att")
            rec, parts[name] = ipw(kind, y, t, e_c, alpha, groups)
            out[name] = _record(rec, kind, method="normalised inverse propensity weighting (Hajek)")
        name = f"matching_{kind}"
        if name in include:
            res = match_effect(
                kind, y, t, e, caliper=caliper, n_neighbors=n_neighbors,
                variance_neighbors=variance_neighbors, outcome_models=(mu1, mu0) if bias_correction else None,
                alpha=alpha,
            )  # fmt: skip
            extra = {k: res.record[k] for k in ("n_matched", "n_unmatched", "caliper", "bias_corrected", "method")}
            out[name], parts[name] = _record(res.record, kind, **extra), res.contributions
    if "t_learner_ate" in include:
        e_c, _ = estimands.clip_propensity(e, clip)
        t1, t0 = (mu1, mu0) if t_learner_arms is None else (np.atleast_2d(a).mean(axis=0) for a in t_learner_arms)
        rec, parts["t_learner_ate"] = t_learner(y, t, e_c, t1, t0, alpha, groups)
        out["t_learner_ate"] = _record(
            rec, "ate", method="T-learner: mean of mu1(x) - mu0(x), one outcome model per arm"
        )
    return out, parts


def econml_entries(ctx: Any, include: tuple[str, ...], alpha: float) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """``linear_dml_ate`` and ``causal_forest_ate`` from the dml step's fit (or ``dml.compare``); LinearDML is
    fitted on the cached nuisances when the run has none."""
    out: dict[str, dict] = {}
    parts: dict[str, np.ndarray] = {}
    keep, nuis, ds = ctx.keep, ctx.nuisance, ctx.dataset
    y, t = ds.y[keep], ds.t[keep]
    e, m = nuis.propensity_[keep], nuis.outcome_[keep]
    fit = ctx.effect
    if "causal_forest_ate" in include and fit is not None and fit.name == "causal_forest":
        groups = None if ctx.clusters is None else ctx.clusters[keep]
        rec, parts["causal_forest_ate"] = forest_dr(fit, y, t, e, m, alpha, groups)
        out["causal_forest_ate"] = _record(rec, "ate", method="CausalForestDML doubly robust ATE (ate_)")
    if "linear_dml_ate" in include:
        econml_ate = ctx.results.get("ate_econml") or (ctx.results.get("estimates") or {}).get("linear_dml", {}).get(
            "ate_econml"
        )
        if econml_ate is None:
            X = ds.X.loc[keep].reset_index(drop=True)
            lin = dml.estimate({"name": "linear_dml"}, y=y, t=t, X=X, propensity=e, outcome=m, alpha=alpha,
                               seed=ctx.seed)  # fmt: skip
            econml_ate = lin.results.get("ate_econml")
        if econml_ate is not None:
            out["linear_dml_ate"] = _record(econml_ate, "ate", method="LinearDML ate_inference")
    return out, parts


def run_step(ctx: Any) -> None:
    """Pipeline step ``methods`` (after ``dml``): writes ``estimates_by_method`` and ``agreement``."""
    from causal.agreement import agreement_test

    opts = dict(ctx.step_config("methods"))
    unknown = sorted(set(opts) - KEYS)  # second line of defence behind causal.validate
    if unknown:
        raise ValueError(f"config key methods: unknown key(s) {unknown}; allowed {sorted(KEYS)}")
    include = tuple(opts.get("include") or METHODS)
    if not set(np.unique(ctx.dataset.t).tolist()) <= {0.0, 1.0}:
        raise ValueError("step methods: weighting, matching and the per-arm outcome models need a 0/1 treatment")
    clip = float(ctx.step_config("dml").get("clip", estimands.DEFAULT_CLIP))
    keep = ctx.keep
    arms = (
        ctx.nuisance.propensity_repeats_[:, keep],
        ctx.nuisance.outcome_treated_repeats_[:, keep],
        ctx.nuisance.outcome_control_repeats_[:, keep],
    )
    per_arm = None
    if "t_learner_ate" in include and not ctx.nuisance.outcome_per_arm_:
        mu1, mu0 = ctx.nuisance.per_arm_outcomes(ctx.features, ctx.dataset.t, ctx.dataset.y)
        per_arm = (mu1[:, keep], mu0[:, keep])
    estimates, parts = estimate_all(
        ctx.dataset.y[keep], ctx.dataset.t[keep], arms, include=include, clip=clip, alpha=ctx.alpha,
        t_learner_arms=per_arm,
        caliper=opts.get("caliper", DEFAULT_CALIPER),
        n_neighbors=int(opts.get("n_neighbors", DEFAULT_NEIGHBORS)),
        variance_neighbors=int(opts.get("variance_neighbors", DEFAULT_VARIANCE_NEIGHBORS)),
        bias_correction=bool(opts.get("bias_correction", True)),
        groups=None if ctx.clusters is None else ctx.clusters[keep],
        members=ctx.nuisance.outcome_members(keep),
    )  # fmt: skip
    more, more_parts = econml_entries(ctx, include, ctx.alpha)
    estimates.update(more)
    parts.update(more_parts)
    ctx.results["estimates_by_method"] = {name: estimates[name] for name in METHODS if name in estimates}
    ctx.results["agreement"] = agreement_test(
        estimates, parts, reference=opts.get("reference") or None, alpha=ctx.alpha,
        groups=None if ctx.clusters is None else ctx.clusters[keep],
    )  # fmt: skip
    return None
