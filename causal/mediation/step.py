"""The pipeline step ``mediation``: the configured methods on the dataset, the primary one in the contract keys, and
the comparison with Baron & Kenny."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from causal.mediation.baron_kenny import baron_kenny
from causal.mediation.linear import linear_mediation
from causal.mediation.ml import ml_mediation

MEDIATION_METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "baron_kenny": baron_kenny,
    "linear": linear_mediation,
    "ml": ml_mediation,
}


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
    from causal.nuisance import derive_seed

    opts = ctx.step_config("mediation")
    methods, primary = _methods(opts)
    ds, keep = ctx.dataset, np.asarray(ctx.keep, dtype=bool)
    roles = ds.roles
    if roles.mediator is None or ds.m is None:
        raise ValueError("config key roles.mediator: the mediation step needs a mediator column")
    frame = ds.W.loc[keep].reset_index(drop=True)
    frame = frame.assign(**{roles.treatment: ds.t[keep], roles.mediator: ds.m[keep], roles.outcome: ds.y[keep]})
    cluster = opts.get("cluster")
    groups = None
    if cluster:
        if cluster not in ds.frame.columns:
            raise ValueError(f"config key mediation.cluster: column {cluster!r} not in {ds.source}")
        groups = ds.frame.loc[keep, cluster].to_numpy()
    alpha = float(opts.get("alpha") or ctx.alpha)
    n_boot = int(opts.get("n_boot", 1000))
    seed = derive_seed(ctx.seed, "mediation")
    args = (frame, roles.treatment, roles.mediator, roles.outcome, list(ds.W.columns))

    results: dict[str, dict[str, Any]] = {}
    if "baron_kenny" in methods:
        cov_type = opts.get("cov_type") or ("cluster" if groups is not None else "nonrobust")
        results["baron_kenny"] = baron_kenny(*args, alpha=alpha, cov_type=cov_type, groups=groups)
    if "linear" in methods:
        results["linear"] = linear_mediation(*args, n_boot=n_boot, seed=seed, alpha=alpha, groups=groups)
    if "ml" in methods:
        common = {"n_boot": n_boot, "seed": seed, "alpha": alpha, "groups": groups}
        results["ml"] = ml_mediation(*args, **_ml_options(ctx, dict(opts.get("ml") or {}), keep, seed), **common)
    chosen = results[primary]
    out = {key: chosen[key] for key in CONTRACT_KEYS}
    out.update(method=chosen["method"], outcome=roles.outcome, n=int(keep.sum()), alpha=alpha, methods=results)
    if primary != "baron_kenny" and "baron_kenny" in results:
        out["comparison"] = compare_methods(chosen, results["baron_kenny"], names=(primary, "baron_kenny"))
        out["disagreement"] = out["comparison"]["disagree"]
    return out


def _methods(opts: Mapping[str, Any]) -> tuple[list[str], str]:
    """The configured methods and the primary one, with errors naming the key (the step may run unvalidated)."""
    unknown = sorted(set(opts) - _STEP_KEYS)
    if unknown:
        raise ValueError(f"config group mediation: unknown key(s) {unknown}; allowed {sorted(_STEP_KEYS)}")
    unknown = sorted(set(opts.get("ml") or {}) - _ML_KEYS)
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
    return methods, primary


def _ml_options(ctx: Any, ml_opts: dict[str, Any], keep: np.ndarray, seed: int) -> dict[str, Any]:
    """Keyword arguments of :func:`ml_mediation` from ``mediation.ml`` and the run's ``nuisance`` node."""
    from causal.nuisance import make_regressor

    nuisance_cfg = ctx.step_config("nuisance")
    n_jobs = int(nuisance_cfg.get("n_jobs", 1))
    # The same learner choice as the pipeline's nuisances (nuisance.candidates); XGBoost-only without it.
    candidates = nuisance_cfg.get("candidates")
    learner = None if candidates else make_regressor(nuisance_cfg.get("regressor"), seed=seed, n_jobs=n_jobs)
    cached: dict[str, np.ndarray] = {}
    binary = set(np.unique(ctx.dataset.t).tolist()) <= {0.0, 1.0}
    if binary and ml_opts.get("reuse_nuisance", True):
        cached = {"treatment_pred": ctx.nuisance.propensity_[keep], "outcome_pred": ctx.nuisance.outcome_[keep]}
    return {
        "model_y": learner,
        "model_t": learner,
        "model_m": learner,
        **cached,
        "interaction": bool(ml_opts.get("interaction", False)),
        "control_value": ml_opts.get("control_value"),
        "treat_value": ml_opts.get("treat_value"),
        "n_folds": int(ml_opts.get("n_folds") or nuisance_cfg.get("folds", 5)),
        "candidates": candidates,
        "candidate_options": {"n_jobs": n_jobs, "xgb_params": nuisance_cfg.get("regressor")},
        "repeats": int(ml_opts.get("repeats") or 1),
    }


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
