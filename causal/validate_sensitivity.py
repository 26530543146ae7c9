"""The config checks of the sensitivity step (E-value, OVB, DML bounds, refutations, Rosenbaum bounds and the
misclassification correction), part of :func:`causal.validate.validate_config`."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from causal.config_keys import ANALYSES, DEFAULT_ANALYSES, REFUTATIONS, allowed_keys
from causal.config_problems import _Problems
from causal.roles import is_pattern


def _check_sensitivity(plain: Mapping, steps: list[str], problems: _Problems) -> None:
    sens = plain.get("sensitivity")
    problems.unknown_keys(sens, allowed_keys("sensitivity"), "sensitivity")
    if not isinstance(sens, Mapping):
        return
    for part in ("ovb", "dml", "refutations", "misclassification", "rosenbaum"):
        problems.unknown_keys(sens.get(part), allowed_keys(f"sensitivity.{part}"), f"sensitivity.{part}")
    if "sensitivity" not in steps:
        return
    analyses = problems.choices(sens.get("analyses") or DEFAULT_ANALYSES, ANALYSES, "sensitivity.analyses", "analysis")
    problems.number(sens, "alpha", "sensitivity", low=0, high=1, open_low=True, open_high=True)
    if "ovb" in analyses and isinstance(sens.get("ovb"), Mapping):
        _check_ovb(sens["ovb"], plain.get("roles"), problems)
    if "dml" in analyses and isinstance(sens.get("dml"), Mapping):
        for key in ("c_y", "c_t"):
            problems.number(sens["dml"], key, "sensitivity.dml", low=0, high=1, open_high=True)
        problems.number(sens["dml"], "rho", "sensitivity.dml", low=-1, high=1)
    if "refutations" in analyses and isinstance(sens.get("refutations"), Mapping):
        _check_refutations(sens["refutations"], problems)
    if "rosenbaum" in analyses and isinstance(sens.get("rosenbaum"), Mapping):
        _check_rosenbaum(sens["rosenbaum"], problems)
    if "misclassification" in analyses:
        _check_misclassification(plain, steps, problems)


def _check_ovb(ovb: Mapping, roles: Any, problems: _Problems) -> None:
    """Benchmark covariates must be confounders (checked here, not after DML); bounds must be positive."""
    roles = roles if isinstance(roles, Mapping) else {}
    confounders = roles.get("confounders") or []
    confounders = [confounders] if isinstance(confounders, str) else list(confounders)
    absent = [
        b
        for b in ovb.get("benchmark_covariates") or []
        if b not in confounders and not any(is_pattern(c) and fnmatch.fnmatchcase(b, c) for c in confounders)
    ]
    if absent:
        problems.add(
            "sensitivity.ovb.benchmark_covariates",
            f"{absent} are not confounders (roles.confounders: {confounders})",
        )
    problems.number(ovb, "q", "sensitivity.ovb", low=0, open_low=True)
    for key in ("kd", "ky"):
        for i, value in enumerate(ovb.get(key) or []):
            problems.number({f"{key}[{i}]": value}, f"{key}[{i}]", "sensitivity.ovb", low=0, open_low=True)


def _check_rosenbaum(node: Mapping, problems: _Problems) -> None:
    problems.number(node, "caliper", "sensitivity.rosenbaum", low=0, open_low=True)
    for i, value in enumerate(node.get("gammas") or []):
        problems.number({f"gammas[{i}]": value}, f"gammas[{i}]", "sensitivity.rosenbaum", low=1)


def _check_refutations(ref: Mapping, problems: _Problems) -> None:
    problems.choices(ref.get("kinds") or REFUTATIONS, REFUTATIONS, "sensitivity.refutations.kinds", "kind(s)")
    problems.number(ref, "n_sims", "sensitivity.refutations", low=1, integer=True)
    problems.number(ref, "subset_fraction", "sensitivity.refutations", low=0, high=1, open_low=True, open_high=True)
    problems.number(ref, "tolerance_se", "sensitivity.refutations", low=0, open_low=True)


def _check_misclassification(plain: Mapping, steps: list[str], problems: _Problems) -> None:
    """The corrected ATE needs the detector's error rates: a metrics file, plain rates, or the evaluate step's."""
    sens = plain.get("sensitivity") or {}
    node = plain.get("misclassification") or sens.get("misclassification") or {}
    where = "misclassification" if plain.get("misclassification") else "sensitivity.misclassification"
    evaluate = plain.get("evaluate") if isinstance(plain.get("evaluate"), Mapping) else {}
    # scripts/run_experiment.py writes the evaluate step's metrics.json into metrics_file before the causal steps.
    fed = bool(evaluate.get("feed_misclassification")) and "evaluate" in steps and bool(plain.get("labels"))
    metrics_file = node.get("metrics_file")
    if metrics_file and not Path(str(metrics_file)).is_file():
        problems.add(f"{where}.metrics_file", f"{metrics_file} is not a file")
    elif not metrics_file and not fed and (node.get("sensitivity") is None or node.get("specificity") is None):
        problems.add(
            where,
            "sensitivity.analyses has misclassification but no detector error rates: set "
            f"{where}.metrics_file (vision evaluate's metrics.json) or {where}.sensitivity and .specificity, or "
            "run the evaluate step with labels= and evaluate.feed_misclassification=true",
        )
    for key in ("sensitivity", "specificity"):
        problems.number(node, key, where, low=0, high=1, open_low=True)
    problems.number(node, "n_draws", where, low=1, integer=True)
    problems.number(node, "clip", where, low=0, high=0.5, open_low=True, open_high=True)
