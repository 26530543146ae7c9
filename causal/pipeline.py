"""Run the configured causal steps in order from one config object and write the results.

``run(cfg, out_dir)`` builds the dataset (``data=table``: the user's table, optionally joined with annotations;
``data=simulated`` / ``data=sample``: the simulator with its truth), then runs ``cfg.steps`` in order. Each step is a
function ``step(ctx: RunContext) -> dict | None`` in :data:`STEPS`; its return value is stored under the step's name
in the results (``dml`` stores several top-level keys instead). Steps share state through the context, most
importantly the nuisance models, which are cross-fitted once, on first use, and then serve the overlap step, every
estimator, and the mediation and sensitivity steps (``ctx.nuisance``: ``propensity_``, ``outcome_``, ``folds_``).

Steps written in other modules register lazily by dotted path (``"causal.mediation:run_step"``): the module is
imported only when the step runs, so a run without that step never needs it. :func:`register_step` adds or replaces
a step at run time.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from causal import dml, estimands, overlap, report
from causal.data import CausalDataset, DataError, Roles, load_from_config
from causal.estimands import DEFAULT_CLIP
from causal.nuisance import CrossFitNuisance
from causal.nuisance import from_config as nuisance_from_config
from causal.reporting.planning import baseline_block
from causal.validate import ConfigError, allowed_keys, check_columns, validate_config

log = logging.getLogger(__name__)

StepFn = Callable[["RunContext"], "dict[str, Any] | None"]


@dataclass
class RunContext:
    """Everything a step may read or add to.

    Attributes
    ----------
    cfg : mapping
        The whole composed config (an OmegaConf ``DictConfig`` or a plain dict).
    out_dir : Path
        Where results and plots go (Hydra's run directory).
    dataset : CausalDataset
        The validated data (all rows, before trimming).
    truth : dict or None
        The simulator's truth; ``None`` for a user table.
    seed, alpha : int, float
        The run's seed and 1 - confidence level.
    keep : ndarray of bool, shape (n,)
        Units used by the estimators: all, unless ``estimand=ate_overlap`` and the overlap step trims.
    overlap_keep : ndarray of bool, shape (n,) or None
        The units the overlap rule keeps (the ``ate_overlap`` population), set by the overlap step.
    effect : dml.EffectEstimate or None
        The primary estimator's fit, set by the ``dml`` step (its ``estimator`` is the fitted EconML object).
    results : dict
        The results being built (written as ``results.json``).
    timings : dict
        Seconds per stage (written as ``timings.json``, not into the results, so reruns compare equal).
    """

    cfg: Any
    out_dir: Path
    dataset: CausalDataset
    truth: dict | None
    seed: int
    alpha: float
    keep: np.ndarray
    effect: dml.EffectEstimate | None = None
    overlap_keep: np.ndarray | None = None
    results: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _nuisance: CrossFitNuisance | None = None

    @cached_property
    def features(self) -> pd.DataFrame:
        """Nuisance features: confounders W plus any modifier column not already in W, shape (n, p)."""
        ds = self.dataset
        extra = [c for c in ds.X.columns if c not in ds.W.columns]
        return pd.concat([ds.W, ds.X[extra]], axis=1) if extra else ds.W

    @property
    def nuisance(self) -> CrossFitNuisance:
        """The cross-fitted nuisance models, fitted on first access (on all rows) and cached."""
        if self._nuisance is None:
            start = time.perf_counter()
            node = to_plain(_node(self.cfg, "nuisance")) or {}
            model = nuisance_from_config(node, seed=self.seed)
            cluster = node.get("cluster")
            groups = self.dataset.frame[cluster].to_numpy() if cluster else None
            self._nuisance = model.fit(self.features, self.dataset.t, self.dataset.y, groups=groups)
            self.timings["nuisance"] = time.perf_counter() - start
            self.timings.update({f"nuisance_{k}": v for k, v in model.seconds_.items()})
            self.results["nuisance"] = model.summary()
        return self._nuisance

    def step_config(self, name: str) -> dict[str, Any]:
        """The step's own config node (``cfg.<name>``) as a plain dict; empty when absent."""
        return to_plain(_node(self.cfg, name)) or {}


# ----------------------------------------------------------------------------------------------------------- steps
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
        png = report.plot_cate_by_group(
            ctx.results["cate_by_group"], ctx.out_dir / "cate_by_group.png", ate=ctx.results["ate"], truth=truth
        )
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
        out[kind], _ = estimands.aipw(kind, ds.y[mask], ds.t[mask], *arms, clip=clip, alpha=ctx.alpha)
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


def _external(target: str) -> StepFn:
    """A step implemented in another module (``"package.module:function"``), imported when it runs."""

    def step(ctx: RunContext) -> dict[str, Any] | None:
        module_name, _, func_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"config key steps: step needs {module_name}, which cannot be imported ({exc})") from exc
        func = getattr(module, func_name, None)
        if func is None:
            raise ValueError(f"config key steps: {module_name} has no {func_name}(ctx) step function")
        return func(ctx)

    step.__name__ = f"external_{target}"
    return step


def _orchestrated(name: str) -> StepFn:
    """A step that runs outside ``run``: annotate and evaluate need the vision package, which causal never imports
    (scripts/run_experiment.py runs them before the data step); report runs after the results are final."""

    def step(ctx: RunContext) -> None:
        log.debug("step %s is run by scripts/run_experiment.py or after the results, not here", name)

    step.__name__ = f"orchestrated_{name}"
    return step


STEPS: dict[str, StepFn] = {
    "screening": step_screening,
    "overlap": step_overlap,
    "dml": step_dml,
    # Each module provides run_step(ctx: RunContext) -> dict, stored under results[<step>].
    "mediation": _external("causal.mediation:run_step"),
    "sensitivity": _external("causal.sensitivity:run_step"),
    # Other estimators side by side and their agreement test: writes estimates_by_method and agreement.
    "methods": _external("causal.methods:run_step"),
    # Experimental vs observational effect on the rows data.randomised_column flags: the calibration block.
    "calibration": _external("causal.calibration:run_step"),
    # The hypothesis funnel: screening, then the causal chain per top hypothesis (writes results["hypotheses"]).
    "discover": _external("causal.discover:run_step"),
    # Vision steps (run by causal.experiment before the data, through injected stages) and report.html (after).
    "annotate": _orchestrated("annotate"),
    "evaluate": _orchestrated("evaluate"),
    "report": _orchestrated("report"),
}
# Steps whose function fills several top-level keys itself and returns None.
_MULTI_KEY_STEPS = {"dml"}
# Earlier steps whose output a step reads from the context (the rows the overlap step kept, the dml step's fitted
# effect). When one of them fails, the step is skipped: run on all rows or without the effect, it would write
# numbers that look valid but are not. A step missing here depends on every step before it.
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "annotate": (),
    "evaluate": (),
    "screening": (),
    "overlap": (),
    "dml": ("overlap",),
    "mediation": ("overlap",),
    "sensitivity": ("overlap", "dml"),
    "methods": ("overlap", "dml"),
    "calibration": (),
    "discover": (),
    "report": (),
}


def register_step(name: str, func: StepFn, *, depends_on: tuple[str, ...] | None = None) -> None:
    """Add or replace a step: ``func(ctx) -> dict | None``, stored under ``results[name]`` when it returns one.

    ``depends_on`` names the earlier steps whose output it reads (skipped when one of them fails); ``None``: every
    step before it in ``steps``.
    """
    STEPS[name] = func
    if depends_on is None:
        DEPENDS_ON.pop(name, None)
    else:
        DEPENDS_ON[name] = tuple(depends_on)


# ------------------------------------------------------------------------------------------------------------- run
def build_dataset(cfg: Any) -> tuple[CausalDataset, dict | None]:
    """The dataset and (for simulated data) the truth, from ``cfg.data``, ``cfg.roles`` and ``cfg.seed``.

    ``roles.mediator`` is only required (and only validated against the table) when the ``mediation`` step runs, so
    a table without the default mediator column works for the other steps.
    """
    roles_cfg = dict(to_plain(_node(cfg, "roles")) or {})
    if "mediation" not in list(_node(cfg, "steps") or []) and roles_cfg.get("mediator") is not None:
        log.info("roles.mediator=%r ignored: the mediation step is not in `steps`", roles_cfg["mediator"])
        roles_cfg["mediator"] = None
    roles = Roles.from_config(roles_cfg)
    seed = int(_node(cfg, "seed") or 0)
    return load_from_config(_node(cfg, "data"), roles, seed=seed)


def run(cfg: Any, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Run ``cfg.steps`` in order and write ``results.json``, ``truth.json`` (simulated data), ``timings.json``.

    The whole config is checked first (:func:`causal.validate.validate_config`; the column checks right after the
    data are loaded), so a bad key fails before any model is fitted. A step that fails later does not lose the
    others: it is logged with its traceback, recorded under ``results["errors"]`` (``step``, ``type``,
    ``message``, ``skipped``: the later steps that needed it and did not run), and the results of every other step
    are written as usual.

    Parameters
    ----------
    cfg : DictConfig or mapping
        The composed config (``conf/config.yaml``): ``seed``, ``alpha``, ``roles``, ``steps``, ``data``,
        ``nuisance``, ``estimator`` and per-step nodes (``screening``, ``overlap``, ``dml``, ...).
    out_dir : path, optional
        Output folder; default Hydra's run directory when running under Hydra, else the working directory.

    Returns
    -------
    dict
        The results as written to ``results.json`` (JSON types, contract key order).

    Raises
    ------
    ConfigError
        A config value that cannot work (named by its full key), before the data are loaded or after, before
        any step.
    """
    validate_config(cfg)
    _check_estimand(cfg)
    steps = list(_node(cfg, "steps") or [])
    out = Path(out_dir) if out_dir is not None else _hydra_output_dir()
    out.mkdir(parents=True, exist_ok=True)
    seed = int(_node(cfg, "seed") or 0)
    alpha = float(_node(cfg, "alpha") or 0.05)

    start = time.perf_counter()
    dataset, truth = build_dataset(cfg)
    check_columns(cfg, dataset.frame.columns)
    ctx = RunContext(
        cfg=cfg,
        out_dir=out,
        dataset=dataset,
        truth=truth,
        seed=seed,
        alpha=alpha,
        keep=np.ones(len(dataset.y), dtype=bool),
    )
    ctx.timings["data"] = time.perf_counter() - start
    ctx.results.update(
        {
            "n_units": int(len(dataset.y)),
            "n_used": int(len(dataset.y)),
            "treatment": dataset.roles.treatment,
            "outcome": dataset.roles.outcome,
            "roles": dataset.roles.to_dict(),
            "source": dataset.source,
            "seed": seed,
            "steps": steps,
        }
    )
    errors = _run_steps(ctx, steps)
    if errors:
        ctx.results["errors"] = errors
    ctx.results["n_used"] = int(ctx.keep.sum())
    if truth is not None:
        ctx.results["truth"] = _truth_for_run(cfg, ctx, truth)
        report.write_json(ctx.results["truth"], out / "truth.json")
    ctx.timings["total"] = time.perf_counter() - start
    path = _write_outputs(ctx, "report" in steps)
    log.info("results in %s (%.1fs)", path, ctx.timings["total"])
    return report.to_jsonable(report.order_results(ctx.results))


def _depends_on(name: str, steps: list[str]) -> tuple[str, ...]:
    if name in DEPENDS_ON:
        return DEPENDS_ON[name]
    return tuple(steps[: steps.index(name)])


def _run_steps(ctx: RunContext, steps: list[str]) -> list[dict[str, Any]]:
    """Run each step; a failing one is logged and recorded, and the steps that need it are skipped.

    Returns
    -------
    list of dict
        One entry per failed step: ``step``, ``type`` (exception class), ``message`` and ``skipped``.
    """
    errors: list[dict[str, Any]] = []
    cause: dict[str, dict[str, Any]] = {}  # failed or skipped step -> the error entry it traces back to
    for name in steps:
        needed = [d for d in _depends_on(name, steps) if d in cause]
        if needed:
            log.warning("step %s skipped: it needs step %s, which did not complete", name, needed[0])
            cause[name] = cause[needed[0]]
            cause[name]["skipped"].append(name)
            continue
        log.info("step %s", name)
        begin = time.perf_counter()
        # Roll back what a failing step half wrote: results.json holds complete steps only.
        before, keep = set(ctx.results), ctx.keep.copy()
        try:
            fragment = STEPS[name](ctx)
        except Exception as err:  # any failure of one step is recorded, the others' results kept
            log.exception("step %s failed", name)
            for key in set(ctx.results) - before - {"nuisance"}:  # the nuisance fit itself completed
                del ctx.results[key]
            ctx.keep = keep
            cause[name] = {"step": name, "type": type(err).__name__, "message": str(err), "skipped": []}
            errors.append(cause[name])
            continue
        if fragment is not None and name not in _MULTI_KEY_STEPS:
            ctx.results[name] = fragment
        ctx.timings[f"step_{name}"] = time.perf_counter() - begin
    return errors


def _write_outputs(ctx: RunContext, with_report: bool) -> Path:
    """``results.json``, ``timings.json`` and (with the report step) ``report.html``; a failing report is recorded
    under ``errors`` and results.json written again, so the results never depend on the report."""
    path = report.write_results(ctx.results, ctx.out_dir)
    report.write_json(ctx.timings, ctx.out_dir / "timings.json")
    if with_report:
        from causal.report_html import report_for_run

        try:
            report_for_run(report.to_jsonable(report.order_results(ctx.results)), ctx.out_dir, ctx.cfg)
        except Exception as err:  # the results are written; the report is the last thing
            log.exception("step report failed")
            entry = {"step": "report", "type": type(err).__name__, "message": str(err), "skipped": []}
            ctx.results.setdefault("errors", []).append(entry)
            path = report.write_results(ctx.results, ctx.out_dir)
    return path


def _truth_for_run(cfg: Any, ctx: RunContext, truth: dict) -> dict:
    """The simulator's truth, plus the ATE over the units actually used when trimming removed some."""
    truth = dict(truth)
    if ctx.keep.all():
        return truth
    from causal.simulate import simulate_from_config

    # The catalog is seeded, so simulating it again reproduces it; its unit table holds each unit's true effect.
    units = simulate_from_config(_node(cfg, "data"), seed=ctx.seed).units
    frame = ctx.dataset.frame
    if "image_id" not in frame.columns or "image_id" not in units.columns:
        return truth
    tau = units.set_index("image_id")["tau"].reindex(frame["image_id"]).to_numpy()
    used = tau[ctx.keep]
    truth["ate_used"] = float(np.nanmean(used))
    if ctx.dataset.groups.shape[1]:
        groups = ctx.dataset.groups.loc[ctx.keep]
        truth["cate_by_group_used"] = {
            col: {str(k): float(v) for k, v in pd.Series(used, index=groups.index).groupby(groups[col]).mean().items()}
            for col in groups.columns
        }
    return truth


def _hydra_output_dir() -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ImportError, ValueError):
        return Path.cwd()


def _node(cfg: Any, key: str) -> Any:
    if cfg is None:
        return None
    if isinstance(cfg, Mapping):
        return cfg.get(key)
    return getattr(cfg, key, None)


def to_plain(node: Any) -> Any:
    """OmegaConf node -> plain Python containers (resolving interpolations); plain objects pass through."""
    if node is None:
        return None
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(node, (DictConfig, ListConfig)):
            return OmegaConf.to_container(node, resolve=True)
    except ImportError:  # pragma: no cover - hydra-core is a dependency
        pass
    if isinstance(node, Mapping):
        return {k: to_plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [to_plain(v) for v in node]
    return node
