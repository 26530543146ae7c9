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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from causal import report
from causal.config_problems import ConfigError
from causal.context import RunContext, StepFn, _node, to_plain  # noqa: F401  (re-exported)
from causal.core_steps import (  # noqa: F401  (re-exported: the built-in steps)
    _check_estimand,
    estimand_of,
    step_dml,
    step_overlap,
    step_screening,
)
from causal.data import CausalDataset, Roles, load_from_config
from causal.validate import NUISANCE_STEPS, check_columns, validate_config

log = logging.getLogger(__name__)


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
    _check_arm_sizes(cfg, steps, dataset)
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


def _check_arm_sizes(cfg: Any, steps: list[str], dataset: CausalDataset) -> None:
    """Refuse, before any step, a binary treatment with fewer units in an arm than cross-fitting folds: the first
    nuisance fit would fail on it after the cheaper steps had run."""
    if not set(steps) & NUISANCE_STEPS:
        return
    t = np.asarray(dataset.t, dtype=np.float64)
    folds = int((to_plain(_node(cfg, "nuisance")) or {}).get("folds", 5))
    if not np.isin(t, (0.0, 1.0)).all():
        return  # a continuous treatment: no arms
    counts = [int((t == 0).sum()), int((t == 1).sum())]
    if min(counts) < folds:
        raise ConfigError(
            [
                (
                    "nuisance.folds",
                    f"{folds} cross-fitting folds need at least {folds} units per treatment arm; "
                    f"{dataset.source} has {counts[1]} treated and {counts[0]} control after the data checks: "
                    "lower nuisance.folds or use more rows",
                )
            ]
        )


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
