"""The built-in steps of a causal run: screening, overlap, and the effect itself (``dml``: the doubly robust ATE and
its estimands, the CATE model, group effects, moderation, the naive difference and the planning baseline)."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from causal import dml, estimands, overlap, report
from causal.context import RunContext, _node, to_plain
from causal.data import DataError
from causal.estimands import DEFAULT_CLIP
from causal.nuisance import CrossFitNuisance
from causal.reporting.planning import baseline_block
from causal.validate import ConfigError, allowed_keys

log = logging.getLogger(__name__)


def step_screening(ctx: RunContext) -> list[dict[str, Any]]:
    """Feature-by-feature association with the outcome (``causal.screening``), ranked; the hypotheses."""
    from causal.screening import screen_features

    opts = ctx.step_config("screening")
    # Second line of defence behind causal.validate (run() checks the whole config first), with the same key set.
    unknown = sorted(set(opts) - allowed_keys("screening"))
    if unknown:
        raise ConfigError([(f"screening.{unknown[0]}", f"unknown key(s) {unknown}")])
    data_cfg = to_plain(_node(ctx.cfg, "data")) or {}
    exclude = list(dict.fromkeys([*(opts.get("exclude") or []), *(data_cfg.get("outcome_derived") or [])]))
    table = screen_features(
        ctx.dataset.frame,
        ctx.dataset.roles.outcome,
        opts.get("features"),
        alpha=float(opts.get("alpha", ctx.alpha)),
        exclude=exclude,
        **({"max_levels": int(opts["max_levels"])} if opts.get("max_levels") is not None else {}),
        source=ctx.dataset.source,
    )
    return report.to_jsonable(table)


def step_overlap(ctx: RunContext) -> dict[str, Any]:
    """Propensity diagnostics, balance, trimming; sets ``ctx.keep`` and writes ``propensity_overlap.png``."""
    kwargs = overlap.from_config(ctx.step_config("overlap"))
    # A covariate that splits treated from control stops the run here, before any nuisance model is fitted.
    overlap.check_separation(ctx.dataset.t, ctx.features, source=ctx.dataset.source)
    e = ctx.nuisance.propensity_
    result, keep = overlap.diagnose(
        e,
        ctx.dataset.t,
        ctx.features,
        ctx.dataset.groups if ctx.dataset.groups.shape[1] else None,
        **kwargs,
        source=ctx.dataset.source,
    )
    ctx.overlap_keep = keep
    # Trimming changes the population: it is applied only when the estimand is that population's ATE; the ATE and
    # ATT keep every unit and clip extreme propensities instead (causal.estimands).
    result["applied"] = estimand_of(ctx.cfg) == "ate_overlap"
    if result["applied"]:
        if keep.sum() < 10 or len(np.unique(ctx.dataset.t[keep])) < 2:
            raise DataError(
                f"{ctx.dataset.source}: overlap.rule={kwargs['rule']} leaves {int(keep.sum())} unit(s) "
                "with both arms not represented; relax overlap.threshold or use overlap.rule=none"
            )
        ctx.keep = keep
    png = report.plot_propensity(
        result["histogram"], ctx.out_dir / "propensity_overlap.png", threshold=result["threshold"] or None
    )
    ctx.results.setdefault("plots", {})["propensity"] = png.name
    return result


def step_dml(ctx: RunContext) -> None:
    """Naive difference, the configured estimator (ATE, group CATEs, heterogeneity tests), moderation.

    Writes the top-level ``naive`` (all units), ``naive_trimmed`` (the kept units, when trimming applied),
    ``baseline`` (control mean overall and per group level), ``ate``, ``ate_partially_linear``, ``ate_econml``
    (LinearDML), ``cate_by_group``, ``heterogeneity``, ``moderation``, ``estimator`` and (with ``dml.compare``)
    ``estimates`` keys, and ``cate_by_group.png``.
    """
    opts = ctx.step_config("dml")
    unknown = sorted(set(opts) - allowed_keys("dml"))  # second line of defence behind causal.validate
    if unknown:
        raise ConfigError([(f"dml.{unknown[0]}", f"unknown key(s) {unknown}")])
    if "overlap" not in ctx.results:  # the overlap step checks separation; without it, check here (no model yet)
        overlap.check_separation(ctx.dataset.t, ctx.features, source=ctx.dataset.source)
    ds, keep, nuis = ctx.dataset, ctx.keep, ctx.nuisance
    y, t = ds.y[keep], ds.t[keep]
    groups = ds.groups.loc[keep].reset_index(drop=True) if ds.groups.shape[1] else None
    arms = tuple(a[:, keep] for a in _arms(nuis))
    clip = float(opts.get("clip", DEFAULT_CLIP))
    fit_args = {
        "y": y,
        "t": t,
        "X": ds.X.loc[keep].reset_index(drop=True),
        "propensity": nuis.propensity_[keep],
        "outcome": nuis.outcome_[keep],
        "groups": groups,
        "alpha": ctx.alpha,
        "seed": ctx.seed,
        "arms": arms,
        "clip": clip,
        "members": nuis.outcome_members(keep),
    }
    ctx.results["naive"] = dml.naive_difference(ds.y, ds.t, ctx.alpha)  # naive means all units, before trimming
    if not keep.all():
        ctx.results["naive_trimmed"] = dml.naive_difference(y, t, ctx.alpha)
    ctx.results["baseline"] = baseline_block(y, t, groups)
    primary = to_plain(_node(ctx.cfg, "estimator")) or {}
    start = time.perf_counter()
    ctx.effect = dml.estimate(primary, **fit_args)
    ctx.timings[f"estimator_{ctx.effect.name}"] = time.perf_counter() - start
    ctx.results.update(ctx.effect.results)
    _estimands(ctx, clip)
    ctx.results["estimator"] = primary
    compare = opts.get("compare") or []
    if compare:
        estimates = {ctx.effect.name: _estimate_summary(ctx.effect)}
        for other in compare:
            other = dict(other)
            start = time.perf_counter()
            fitted = dml.estimate(other, **fit_args)
            ctx.timings[f"estimator_{fitted.name}"] = time.perf_counter() - start
            estimates[fitted.name] = _estimate_summary(fitted)
        ctx.results["estimates"] = estimates
    if opts.get("moderation", True) and ds.roles.modifiers:
        start = time.perf_counter()
        frame = ds.frame.loc[keep].reset_index(drop=True)
        w_used = ds.W.loc[keep].reset_index(drop=True)
        ctx.results["moderation"] = {
            mod: dml.moderation(y, t, frame[mod], w_used, alpha=ctx.alpha, **ds.info.get("pooling", {}))
            for mod in ds.roles.modifiers
        }
        ctx.timings["moderation"] = time.perf_counter() - start
    if opts.get("plots", True) and ctx.results.get("cate_by_group"):
        truth = (ctx.truth or {}).get("cate_by_group") if ctx.keep.all() else None
        from causal.reporting.labels import DisplayNames

        names = DisplayNames(ctx.step_config("display_names"))  # the run's own words for its columns
        png = report.plot_cate_by_group(
            ctx.results["cate_by_group"], ctx.out_dir / "cate_by_group.png", ate=ctx.results["ate"], truth=truth,
            names=names,
        )  # fmt: skip
        ctx.results.setdefault("plots", {})["cate_by_group"] = png.name
    return None


def _check_estimand(cfg: Any) -> None:
    """``estimand`` and ``dml.clip`` values, before any data or model."""
    problems = []
    chosen = estimand_of(cfg)
    steps = list(_node(cfg, "steps") or [])
    if chosen not in estimands.ESTIMANDS:
        problems.append(("estimand", f"{chosen!r} is not one of {list(estimands.ESTIMANDS)}"))
    elif chosen == "ate_overlap" and "dml" in steps and "overlap" not in steps:
        problems.append(("estimand", "ate_overlap is the ATE of the units the overlap step keeps: add it to steps"))
    clip = (to_plain(_node(cfg, "dml")) or {}).get("clip")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, int | float) or not 0 <= clip < 0.5):
        problems.append(("dml.clip", f"{clip!r} is not a number in [0, 0.5)"))
    if problems:
        raise ConfigError(problems)


def estimand_of(cfg: Any) -> str:
    """The configured estimand (``estimand``: ate | att | ate_overlap; default ate)."""
    return str(_node(cfg, "estimand") or "ate")


def _arms(nuis: CrossFitNuisance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(e, mu1, mu0), each of shape (repeats, n)."""
    return nuis.propensity_repeats_, nuis.outcome_treated_repeats_, nuis.outcome_control_repeats_


def _estimands(ctx: RunContext, clip: float) -> None:
    """``estimands`` (ATE on all units, ATT, ATE on the overlap population, each with its n), ``ate`` = the
    configured one, and the per-unit effects in ``unit_effects.parquet``."""
    ds, nuis = ctx.dataset, ctx.nuisance
    everyone = np.ones(len(ds.y), dtype=bool)
    masks = {"ate": everyone, "att": everyone, "ate_overlap": ctx.overlap_keep}
    out: dict[str, Any] = {}
    for kind, mask in masks.items():
        if mask is None:
            continue
        arms = tuple(a[:, mask] for a in _arms(nuis))
        groups = None if ctx.clusters is None else ctx.clusters[mask]
        out[kind], _ = estimands.aipw(
            kind,
            ds.y[mask],
            ds.t[mask],
            *arms,
            clip=clip,
            alpha=ctx.alpha,
            groups=groups,
            members=nuis.outcome_members(mask),
        )
    chosen = estimand_of(ctx.cfg)
    if chosen not in out:
        raise ValueError(f"config key estimand={chosen}: needs the overlap step in `steps`")
    ctx.results["estimands"] = out
    ctx.results["ate"] = {**out[chosen], "estimator": ctx.effect.name}
    frame = pd.DataFrame({"row": np.arange(len(ds.y)), "used": ctx.keep})
    if "image_id" in ds.frame.columns:
        frame.insert(0, "image_id", ds.frame["image_id"].to_numpy())
    for name, values in (("cate", ctx.effect.tau), ("aipw_score", ctx.effect.scores)):
        column = np.full(len(ds.y), np.nan)
        column[ctx.keep] = values
        frame[name] = column
    frame["propensity"] = nuis.propensity_
    frame["outcome_treated"] = nuis.outcome_treated_
    frame["outcome_control"] = nuis.outcome_control_
    frame.to_parquet(ctx.out_dir / "unit_effects.parquet", index=False)
    ctx.results.setdefault("files", {})["unit_effects"] = "unit_effects.parquet"


def _estimate_summary(fit: dml.EffectEstimate) -> dict[str, Any]:
    keys = ("ate", "ate_partially_linear", "ate_econml", "cate_by_group", "heterogeneity")
    return {k: fit.results[k] for k in keys if k in fit.results}
