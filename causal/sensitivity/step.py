"""Pipeline step ``sensitivity`` (after ``dml``): the results contract's ``sensitivity`` block.

Runs the configured analyses on the run's dataset and fitted models: the E-value of the ATE, the OVB analysis of
the linear outcome model (with its contour plot), the DML bounds, the refutations, and the misclassification
correction (written to the top-level ``misclassification`` key).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from causal.sensitivity.dml_bounds import dml_sensitivity, dml_sensitivity_from_residuals
from causal.sensitivity.evalue import e_value_for_effect
from causal.sensitivity.ovb import ovb_robustness
from causal.sensitivity.plots import ovb_contour_plot
from causal.sensitivity.refute import REFUTATIONS, FitFn, refute

log = logging.getLogger(__name__)

# The keys each config node accepts; causal.validate keeps the same sets (a test compares them).
_STEP_KEYS = {"analyses", "alpha", "ovb", "dml", "refutations", "misclassification", "cluster", "rosenbaum"}
_OVB_KEYS = {"benchmark_covariates", "kd", "ky", "q", "plot"}
_DML_KEYS = {"c_y", "c_t", "rho", "null_hypothesis"}
_REFUTE_KEYS = {"kinds", "n_sims", "subset_fraction", "tolerance_se", "seed"}
_ROSENBAUM_KEYS = {"caliper", "gammas"}
ANALYSES = ("e_value", "ovb", "dml", "refutations", "misclassification", "rosenbaum")


def _encoded_groups(columns: Sequence[str], raw: Sequence[str]) -> dict[str, list[str]]:
    """Encoded W columns of each raw confounder: ``c``, ``c=level``, ``c_pcK`` and ``c__missing`` (causal.data)."""
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


def _refit_learners(ctx: Any, binary: bool) -> tuple[Any, Any]:
    """Unfitted (propensity or treatment model, outcome model) for the refutation refits: the learners the run's
    nuisance step chose (``nuisance=auto``: the candidate or stack with the lowest out-of-fold loss), or XGBoost
    with the run's (possibly tuned) parameters when no choice was made (a continuous treatment)."""
    from causal.nuisance import make_classifier, make_regressor

    nuisance_cfg = ctx.step_config("nuisance")
    fitted = ctx.nuisance
    n_jobs = int(nuisance_cfg.get("n_jobs", 1))
    reg_params = getattr(fitted, "regressor_params_", None) or nuisance_cfg.get("regressor")
    chosen = getattr(fitted, "chosen_", None)
    outcome = fitted.learner("outcome") if chosen else make_regressor(reg_params, n_jobs=n_jobs)
    if not binary:
        return make_regressor(reg_params, n_jobs=n_jobs), outcome
    if chosen:
        return fitted.learner("propensity"), outcome
    clf_params = getattr(fitted, "classifier_params_", None) or nuisance_cfg.get("classifier")
    return make_classifier(clf_params, n_jobs=n_jobs), outcome


def _refit_partially_linear(ctx: Any, treatment: str, outcome: str, w_columns: list[str], seed: int) -> FitFn:
    """fit_fn for :func:`refute`: re-cross-fit the run's chosen nuisance learners and re-estimate the partially
    linear effect on the altered table (the pipeline refitted end to end, without re-choosing or re-tuning)."""
    from causal import dml
    from causal.crossfit import reseed
    from causal.mediation import cross_fit_predict
    from causal.nuisance import derive_seed

    n_folds = int(ctx.step_config("nuisance").get("folds", 5))
    binary_run = set(np.unique(ctx.dataset.t).tolist()) <= {0.0, 1.0}
    t_learner, y_learner = _refit_learners(ctx, binary_run)
    counter = iter(range(10**9))

    def fit(frame: pd.DataFrame, extra: Sequence[str] = ()) -> dict[str, float]:
        k = next(counter)
        w = frame[[*w_columns, *extra]].to_numpy(dtype=float)
        t, y = frame[treatment].to_numpy(dtype=float), frame[outcome].to_numpy(dtype=float)
        s = derive_seed(seed, f"refute_{k}")  # a fresh seed per refit: the refits are independent draws
        e = cross_fit_predict(reseed(clone(t_learner), s), w, t, n_folds=n_folds, seed=s)
        m = cross_fit_predict(reseed(clone(y_learner), s), w, y, n_folds=n_folds, seed=s)
        return dml.partially_linear(y, t, e, m, alpha=ctx.alpha)

    return fit


def _analysis_frame(ctx: Any) -> tuple[pd.DataFrame, list[str]]:
    """The kept units' encoded confounders with the treatment and outcome columns, and the confounder names."""
    ds, keep = ctx.dataset, np.asarray(ctx.keep, dtype=bool)
    frame = ds.W.loc[keep].reset_index(drop=True)
    frame = frame.assign(**{ds.roles.treatment: ds.t[keep], ds.roles.outcome: ds.y[keep]})
    return frame, list(ds.W.columns)


def _e_value_analysis(ctx: Any, alpha: float) -> dict[str, Any]:
    ate = ctx.results.get("ate")
    if ate is None:
        raise ValueError("config key sensitivity.analyses: e_value needs the dml step's ATE; put dml before it")
    ds, keep = ctx.dataset, np.asarray(ctx.keep, dtype=bool)
    detail = e_value_for_effect(ate["estimate"], ate.get("stderr"), float(np.std(ds.y[keep], ddof=1)), alpha=alpha)
    return {"e_value": detail["e_value"], "e_value_ci": detail["e_value_ci"], "e_value_detail": detail}


def _ovb_analysis(ctx: Any, opts: Mapping[str, Any], frame: pd.DataFrame, w_columns: list[str], alpha: float) -> dict:
    """``linear``: OVB of the linear outcome model on the encoded confounders; the contour plot unless disabled."""
    ds = ctx.dataset
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
        ds.roles.treatment,
        ds.roles.outcome,
        w_columns,
        benchmark_covariates=benchmarks,
        kd=ovb_opts.get("kd", (1, 2, 3)),
        ky=ovb_opts.get("ky"),
        q=float(ovb_opts.get("q", 1.0)),
        alpha=alpha,
        covariate_groups={b: groups[b] for b in benchmarks},
    )
    if ovb_opts.get("plot", True):
        from causal.reporting.labels import DisplayNames

        names = DisplayNames(ctx.step_config("display_names"))  # the run's own words for its columns
        png = ovb_contour_plot(linear, ctx.out_dir / "ovb_contour.png", names=names)
        ctx.results.setdefault("plots", {})["ovb_contour"] = png.name
    return linear


def _dml_analysis(ctx: Any, opts: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    dml_opts = _check_keys(opts.get("dml"), _DML_KEYS, "sensitivity.dml")
    params = {k: float(dml_opts[k]) for k in ("c_y", "c_t", "rho", "null_hypothesis") if k in dml_opts}
    estimator = getattr(ctx.effect, "estimator", None)
    try:
        return dml_sensitivity(estimator, alpha=alpha, **params) | {"source": "econml estimator"}
    except (TypeError, AttributeError, ValueError) as err:
        # EconML refuses some fits (e.g. effect modifiers in a forest): fall back to the cached residuals of
        # the partially linear model, which is what LinearDML without X stores.
        log.info("EconML sensitivity unavailable (%s); using the cached nuisance residuals", err)
    ds, keep, nuis = ctx.dataset, np.asarray(ctx.keep, dtype=bool), ctx.nuisance
    return dml_sensitivity_from_residuals(
        ds.y[keep] - nuis.outcome_[keep], ds.t[keep] - nuis.propensity_[keep], alpha=alpha, **params
    ) | {"source": "partially linear residuals"}


def _refutation_analysis(
    ctx: Any, opts: Mapping[str, Any], frame: pd.DataFrame, w_columns: list[str], alpha: float
) -> list[dict[str, Any]]:
    ref_opts = _check_keys(opts.get("refutations"), _REFUTE_KEYS, "sensitivity.refutations")
    treatment, outcome = ctx.dataset.roles.treatment, ctx.dataset.roles.outcome
    seed = int(ref_opts["seed"]) if ref_opts.get("seed") is not None else ctx.seed
    fit_fn = _refit_partially_linear(ctx, treatment, outcome, w_columns, seed)
    return refute(
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


def _rosenbaum_analysis(ctx: Any, opts: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    """``rosenbaum``: Gamma bounds of the signed-rank test over the ATT's matched pairs (1 nearest control on the
    logit of the run's cross-fitted propensity, within the caliper; raw outcome differences)."""
    from causal.matching import DEFAULT_CALIPER, match_effect
    from causal.sensitivity.rosenbaum import DEFAULT_GAMMAS, rosenbaum_bounds

    node = _check_keys(opts.get("rosenbaum"), _ROSENBAUM_KEYS, "sensitivity.rosenbaum")
    ds, keep = ctx.dataset, np.asarray(ctx.keep, dtype=bool)
    caliper = node.get("caliper", DEFAULT_CALIPER)
    pairs = match_effect("att", ds.y[keep], ds.t[keep], ctx.nuisance.propensity_[keep], caliper=caliper)
    gammas = [float(g) for g in node.get("gammas") or DEFAULT_GAMMAS]
    out = rosenbaum_bounds(pairs.pair_differences, alpha=alpha, gammas=gammas)
    out["pairs"] = f"each treated unit with its nearest control on the logit propensity (caliper {caliper} SD)"
    return out


def run_step(ctx: Any) -> dict[str, Any]:
    """Pipeline step ``sensitivity`` (after ``dml``): the results contract's ``sensitivity`` block.

    Reads the ``sensitivity`` config node (conf/sensitivity/default.yaml): ``analyses`` (any of ``e_value``,
    ``ovb``, ``dml``, ``refutations``, ``misclassification``, ``rosenbaum``), ``alpha``, and one node per analysis.
    Rosenbaum's bounds match the ATT's pairs on the cross-fitted propensity. The E-value and the DML bounds use
    the ``dml`` step's ATE and fitted estimator; OVB fits the linear outcome model on the kept
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
    frame, w_columns = _analysis_frame(ctx)
    out: dict[str, Any] = {}
    if "e_value" in analyses:
        out.update(_e_value_analysis(ctx, alpha))
    if "ovb" in analyses:
        out["linear"] = _ovb_analysis(ctx, opts, frame, w_columns, alpha)
    if "dml" in analyses:
        out["dml"] = _dml_analysis(ctx, opts, alpha)
    if "refutations" in analyses:
        out["refutations"] = _refutation_analysis(ctx, opts, frame, w_columns, alpha)
    if "rosenbaum" in analyses and set(np.unique(ctx.dataset.t).tolist()) <= {0.0, 1.0}:
        out["rosenbaum"] = _rosenbaum_analysis(ctx, opts, alpha)
    elif "rosenbaum" in analyses:  # in the default analyses: a run with a count treatment keeps the others
        log.info("sensitivity.rosenbaum skipped: matched pairs need a 0/1 treatment")
    if "misclassification" in analyses:
        from causal.misclassification import run_step as misclassification_step

        ctx.results["misclassification"] = misclassification_step(ctx)
    return out
