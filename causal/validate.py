"""A dry run of the whole resolved config, before any data is loaded or any model is fitted.

:func:`validate_config` reads the config the way the steps will (``cfg.steps``, ``roles``, ``data``, ``estimator``,
``nuisance``, ``overlap``, ``screening``, ``dml``, ``mediation``, ``sensitivity``, ``evaluate``) and refuses, with
a :class:`ConfigError` naming the full dotted key, what would otherwise fail only after the nuisance models were
fitted: unknown keys (with the nearest known key suggested), unknown step names, analyses, refutation kinds and
mediation methods, values out of range, a benchmark covariate that is not a confounder, a causal forest without
effect modifiers, a misclassification analysis without detector error rates, and mandatory values left at ``???``.
:func:`check_columns` adds the checks that need the table's column names (columns named by ``screening.features``,
``mediation.cluster``, ``sensitivity.misclassification.cluster`` and the roles).

The keys each node may hold are decided in one place, :func:`allowed_keys`: the keys the code reads
(:data:`KNOWN_KEYS`, with the optional keys no YAML file sets) plus the keys the shipped YAML files in conf/ set.
Each module keeps its own unknown-key check as a second line of defence (tests pin the two together). Key checks
apply to every node that is present; value checks apply to the nodes of the steps that run, so a node of a step
that is not in ``steps`` (the default ``sensitivity`` node on a table without ``title_popularity``) never blocks a run.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

from causal.config_keys import (  # noqa: F401  (re-exported: the key lists' public home was this module)
    ANALYSES,
    CONF_DIR,
    DEFAULT_ANALYSES,
    KNOWN_KEYS,
    MEDIATION_METHODS,
    METHODS,
    MISSING,
    MISSING_POLICIES,
    OVERLAP_RULES,
    OVERLAP_WEIGHTINGS,
    REFUTATIONS,
    VISION_STEPS,
    allowed_keys,
)
from causal.config_problems import ConfigError, _join, _Problems
from causal.config_schema import type_problems
from causal.dml import ESTIMATORS
from causal.roles import is_pattern
from causal.validate_sensitivity import _check_sensitivity

# Steps that cross-fit the nuisance models (causal.context.RunContext.nuisance).
NUISANCE_STEPS = frozenset({"overlap", "dml", "methods", "calibration", "sensitivity"})

# ------------------------------------------------------------------------------------------------------- entry points


def validate_config(
    cfg: Any, columns: Iterable[str] | None = None, *, known_steps: Iterable[str] | None = None
) -> None:
    """Check the whole resolved config before any model is fitted; raise :class:`ConfigError` on any problem.

    Parameters
    ----------
    cfg : DictConfig or mapping
        The composed config (``conf/config.yaml``), as scripts/run_experiment.py or :func:`causal.pipeline.run`
        receive it. ``hydra`` is ignored.
    columns : iterable of str, optional
        The table's column names. ``None`` runs only the checks that need no data (callable before the annotate
        stage, when an annotation table's columns are not known yet); with columns, :func:`check_columns` runs too.
    known_steps : iterable of str, optional
        Step names ``steps`` may hold; default the steps registered in :data:`causal.pipeline.STEPS`.

    Raises
    ------
    ConfigError
        Naming the full dotted key of each problem, with the nearest known key for an unknown one.
    """
    plain = resolved(cfg)
    problems = _Problems()
    _check_missing(plain, problems)
    if not problems:  # a `???` value would only repeat below as a wrong type
        _check_config(plain, problems, known_steps)
        reported = {key for key, _ in problems}
        problems.extend(p for p in type_problems(plain) if p[0] not in reported)
    if columns is not None and not problems:
        _check_columns(plain, list(columns), problems)
    if problems:
        raise ConfigError(problems)


def check_columns(cfg: Any, columns: Iterable[str]) -> None:
    """The checks of :func:`validate_config` that need the table's column names (cheap: names only).

    Raises
    ------
    ConfigError
        When ``screening.features``, ``mediation.cluster``, ``sensitivity.misclassification.cluster`` or a role
        names a column the table lacks.
    """
    problems = _Problems()
    _check_columns(resolved(cfg), list(columns), problems)
    if problems:
        raise ConfigError(problems)


def resolved(cfg: Any) -> dict[str, Any]:
    """The config as plain containers with interpolations resolved, ``???`` kept as the string, ``hydra`` dropped.

    Raises
    ------
    ConfigError
        When an interpolation cannot be resolved (naming its key).
    """
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(cfg, DictConfig):
        keys = [k for k in cfg if k != "hydra"]
        try:
            return OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True, throw_on_missing=False)
        except OmegaConfBaseException as err:
            # An interpolation of a `???` value (modifiers: ${roles.groups}): name the key that is not set.
            problems = _Problems()
            _check_missing(OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=False), problems)
            raise ConfigError(
                problems or [(str(getattr(err, "full_key", "") or "?"), _omegaconf_message(err))]
            ) from err
    return {k: v for k, v in dict(cfg or {}).items() if k != "hydra"}


def _omegaconf_message(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if type(err).__name__ == "MissingMandatoryValue" or "missing" in text.lower():
        return f"required value is not set (`{MISSING}`): {text}"
    return f"cannot be resolved: {text}"


# ------------------------------------------------------------------------------------------------------------ checks
def _steps(plain: Mapping) -> list[str]:
    return [str(s) for s in plain.get("steps") or []]


def _check_missing(plain: Mapping, problems: _Problems) -> None:
    """``???`` values (Hydra's mandatory marker) in the nodes the run reads: ``data.path`` for data=table, and
    ``input`` / ``labels`` when annotate / evaluate run. Vision, Ray and runner nodes are checked by their stages."""
    steps = _steps(plain) if isinstance(plain.get("steps"), list) else []
    skip = {"vision", "ray", "runner"}
    if "annotate" not in steps:
        skip.add("input")
    if "evaluate" not in steps:
        skip.add("labels")

    def walk(node: Any, where: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if not where and key in skip:
                    continue
                walk(value, _join(where, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")
        elif node == MISSING:
            example = {"input": "input=path/to/images", "labels": "labels=labels.csv", "data.path": "data.path=my.csv"}
            hint = f", e.g. {example[where]}" if where in example else ""
            problems.add(where, f"required value is not set (`{MISSING}`){hint}")

    walk(plain, "")


def _check_config(plain: Mapping, problems: _Problems, known_steps: Iterable[str] | None) -> None:
    problems.unknown_keys(plain, allowed_keys(""), "")
    steps = _check_steps(plain.get("steps"), problems, known_steps)
    problems.number(plain, "alpha", "", low=0, high=1, open_low=True, open_high=True)
    problems.number(plain, "seed", "", low=0, integer=True)
    problems.number(plain, "n_jobs", "", integer=True)
    _check_roles(plain.get("roles"), problems)
    _check_data(plain.get("data"), problems)
    _check_estimators(plain, steps, problems)
    _check_nuisance(plain.get("nuisance"), problems)
    _check_screening_overlap(plain, problems)
    _check_mediation(plain.get("mediation"), "mediation" in steps, problems)
    _check_sensitivity(plain, steps, problems)
    _check_methods(plain.get("methods"), "methods" in steps, problems)
    data = plain.get("data") if isinstance(plain.get("data"), Mapping) else {}
    if "calibration" in steps and not data.get("randomised_column"):
        problems.add("data.randomised_column", "the calibration step needs the column that flags randomised rows")
    evaluate = plain.get("evaluate")
    problems.unknown_keys(evaluate, allowed_keys("evaluate"), "evaluate")
    problems.number(evaluate, "iou_threshold", "evaluate", low=0, high=1, open_low=True)
    problems.number(evaluate, "score_threshold", "evaluate", low=0, high=1)
    problems.unknown_keys(plain.get("paths"), allowed_keys("paths"), "paths")
    from causal.engagement import check_engagement  # engagement imports this module

    for key, message in check_engagement(plain):
        problems.add(key, message)


def _check_steps(steps: Any, problems: _Problems, known_steps: Iterable[str] | None) -> list[str]:
    if known_steps is None:
        from causal.pipeline import STEPS  # pipeline imports this module

        known_steps = STEPS
    known = list(dict.fromkeys([*VISION_STEPS, *known_steps]))
    if steps is None:
        return []
    if not isinstance(steps, list):
        problems.add("steps", f"must be a list of step names, got {steps!r}")
        return []
    names = problems.choices([str(s) for s in steps], known, "steps", "step(s)")
    twice = sorted({s for s in names if names.count(s) > 1})
    if twice:
        problems.add("steps", f"lists {twice} more than once: {names}")
    return names


def _check_roles(roles: Any, problems: _Problems) -> None:
    problems.unknown_keys(roles, allowed_keys("roles"), "roles")
    if not isinstance(roles, Mapping):
        return
    for key in ("treatment", "outcome"):
        if not isinstance(roles.get(key), str) or not roles.get(key):
            problems.add(f"roles.{key}", f"must be one column name, got {roles.get(key)!r}")
    for key in ("confounders", "modifiers", "groups"):
        value = roles.get(key)
        if value is not None and not isinstance(value, (str, list)):
            problems.add(f"roles.{key}", f"must be a list of column names, got {value!r}")


def _simulator_keys() -> frozenset[str]:
    import inspect

    from causal.simulate import simulate_catalog

    params = set(inspect.signature(simulate_catalog).parameters) - {"features"}
    return allowed_keys("data.simulated") | params


def _check_data(data: Any, problems: _Problems) -> None:
    if not isinstance(data, Mapping):
        if data is not None:
            problems.add("data", f"must be a mapping, got {data!r}")
        return
    name = data.get("name")
    if name == "table":
        problems.unknown_keys(data, allowed_keys("data.table"), "data")
        problems.number(data, "max_lost_fraction", "data", low=0, high=1)
    elif name in ("simulated", "sample"):
        problems.unknown_keys(data, _simulator_keys(), "data")
    else:
        problems.add("data.name", f"must be table, simulated or sample, got {name!r}")
    prepare = data.get("prepare")
    problems.unknown_keys(prepare, allowed_keys("data.prepare"), "data.prepare")
    if isinstance(prepare, Mapping):
        if prepare.get("missing") is not None:
            problems.choices(prepare["missing"], MISSING_POLICIES, "data.prepare.missing", "policy")
        problems.number(prepare, "n_components", "data.prepare", low=1, integer=True)
        problems.number(prepare, "max_levels", "data.prepare", low=2, integer=True)


def _check_estimators(plain: Mapping, steps: list[str], problems: _Problems) -> None:
    """``estimator`` and each ``dml.compare`` entry; a causal forest needs modifiers when the dml step runs."""
    dml_opts = plain.get("dml")
    compare = dml_opts.get("compare") if isinstance(dml_opts, Mapping) else None
    if compare is not None and not isinstance(compare, list):
        problems.add("dml.compare", f"must be a list of estimator configs, got {compare!r}")
        compare = []
    nodes = [("estimator", plain.get("estimator"))]
    nodes += [(f"dml.compare[{i}]", node) for i, node in enumerate(compare or [])]
    roles = plain.get("roles") if isinstance(plain.get("roles"), Mapping) else {}
    for where, node in nodes:
        if node is None and where == "estimator":
            continue
        if not isinstance(node, Mapping):
            problems.add(where, f"must be a mapping with a `name`, got {node!r}")
            continue
        name = node.get("name")
        if name not in ESTIMATORS:
            problems.add(f"{where}.name", f"{name!r} is not one of {list(ESTIMATORS)}")
            continue
        problems.unknown_keys(node, allowed_keys(f"estimator.{name}"), where)
        if name == "causal_forest":
            _check_forest(node, where, problems)
            if "dml" in steps and not roles.get("modifiers"):
                problems.add(
                    "roles.modifiers",
                    f"{where}.name=causal_forest needs effect modifiers (the CATE is a function of them) and "
                    "roles.modifiers is empty; set it (e.g. 'roles.modifiers=[genre]') or use estimator=linear_dml",
                )


def _check_forest(node: Mapping, where: str, problems: _Problems) -> None:
    for name in ("n_estimators", "min_samples_leaf", "min_samples_split", "max_samples_rows"):
        problems.number(node, name, where, low=1, integer=True)
    problems.number(node, "max_depth", where, low=1, integer=True)
    # The forest always reports intervals (inference=True): EconML then needs little bags of >= 2 trees that
    # divide the forest, and at most half the rows per tree.
    problems.number(node, "subforest_size", where, low=2, integer=True)
    problems.number(node, "max_samples", where, low=0, high=0.5, open_low=True)
    trees, bag = node.get("n_estimators"), node.get("subforest_size", 4)
    if isinstance(trees, int) and isinstance(bag, int) and bag >= 2 and trees % bag:
        problems.add(f"{where}.n_estimators", f"{trees} is not a multiple of {where}.subforest_size={bag}")


def _check_nuisance(nuisance: Any, problems: _Problems) -> None:
    from causal.nuisance import _RESERVED, _XGB_KEYS, OUTCOME_METRICS, OUTCOME_MODES, STACKABLE

    problems.unknown_keys(nuisance, allowed_keys("nuisance"), "nuisance")
    if not isinstance(nuisance, Mapping):
        return
    problems.number(nuisance, "folds", "nuisance", low=2, integer=True)
    problems.number(nuisance, "tune_folds", "nuisance", low=2, integer=True)
    problems.number(nuisance, "tune_max_rows", "nuisance", low=1, integer=True)
    for key, allowed_values in (
        ("outcome_mode", OUTCOME_MODES),
        ("outcome_loss", tuple(OUTCOME_METRICS)),
        ("stack", STACKABLE),
    ):
        if nuisance.get(key) is not None:
            problems.choices(nuisance[key], allowed_values, f"nuisance.{key}", key)
    grid = nuisance.get("grid")
    problems.unknown_keys(grid, allowed_keys("nuisance.grid"), "nuisance.grid")
    models = [(f"nuisance.{m}", nuisance.get(m)) for m in ("classifier", "regressor")]
    if isinstance(grid, Mapping):
        models += [(f"nuisance.grid.{m}", grid.get(m)) for m in ("classifier", "regressor")]
    allowed = sorted(_XGB_KEYS - _RESERVED)
    for where, params in models:
        problems.unknown_keys(params, allowed, where)
        for key in sorted(set(params or {}) & _RESERVED):
            problems.add(f"{where}.{key}", "is set from `seed` / `nuisance.n_jobs`, not per model")


def _check_screening_overlap(plain: Mapping, problems: _Problems) -> None:
    screening, overlap, dml_opts = plain.get("screening"), plain.get("overlap"), plain.get("dml")
    problems.unknown_keys(screening, allowed_keys("screening"), "screening")
    problems.number(screening, "alpha", "screening", low=0, high=1, open_low=True, open_high=True)
    problems.number(screening, "max_levels", "screening", low=2, integer=True)
    problems.unknown_keys(overlap, allowed_keys("overlap"), "overlap")
    if isinstance(overlap, Mapping):
        if overlap.get("rule") is not None:
            problems.choices(overlap["rule"], OVERLAP_RULES, "overlap.rule", "rule")
        if overlap.get("weighting") is not None:
            problems.choices(overlap["weighting"], OVERLAP_WEIGHTINGS, "overlap.weighting", "weighting")
    problems.number(overlap, "threshold", "overlap", low=0, high=0.5, open_high=True)
    problems.number(overlap, "bins", "overlap", low=1, integer=True)
    problems.unknown_keys(dml_opts, allowed_keys("dml"), "dml")
    discover = plain.get("discover")
    problems.unknown_keys(discover, allowed_keys("discover"), "discover")
    problems.number(discover, "alpha", "discover", low=0, high=1, open_low=True, open_high=True)
    for key, low in (("top_k", 1), ("folds", 2), ("min_arm", 1), ("bins", 2)):
        problems.number(discover, key, "discover", low=low, integer=True)


def _check_methods(node: Any, runs: bool, problems: _Problems) -> None:
    """``methods``: the estimators side by side (causal/methods.py)."""
    problems.unknown_keys(node, allowed_keys("methods"), "methods")
    if not isinstance(node, Mapping) or not runs:
        return
    include = problems.choices(node.get("include") or list(METHODS), METHODS, "methods.include", "method(s)")
    reference = node.get("reference")
    if reference is not None and reference not in include:
        problems.add("methods.reference", f"{reference!r} is not among methods.include {include}")
    problems.number(node, "caliper", "methods", low=0, open_low=True)
    problems.number(node, "n_neighbors", "methods", low=1, integer=True)
    problems.number(node, "variance_neighbors", "methods", low=1, integer=True)


def _check_mediation(mediation: Any, runs: bool, problems: _Problems) -> None:
    problems.unknown_keys(mediation, allowed_keys("mediation"), "mediation")
    if not isinstance(mediation, Mapping):
        return
    problems.unknown_keys(mediation.get("ml"), allowed_keys("mediation.ml"), "mediation.ml")
    if not runs:
        return
    methods = problems.choices(
        mediation.get("methods") or MEDIATION_METHODS, MEDIATION_METHODS, "mediation.methods", "method(s)"
    )
    primary = mediation.get("primary")
    if primary is not None and primary not in methods:
        problems.add("mediation.primary", f"{primary!r} is not among mediation.methods {methods}")
    problems.number(mediation, "alpha", "mediation", low=0, high=1, open_low=True, open_high=True)
    problems.number(mediation, "n_boot", "mediation", low=2, integer=True)
    problems.number(mediation.get("ml"), "n_folds", "mediation.ml", low=2, integer=True)


def _check_columns(plain: Mapping, columns: list[str], problems: _Problems) -> None:
    """Columns each running step will read, against the table's names."""
    present = set(columns)
    steps = _steps(plain)
    roles = plain.get("roles") if isinstance(plain.get("roles"), Mapping) else {}
    wanted: list[tuple[str, Any]] = [
        ("roles.treatment", roles.get("treatment")),
        ("roles.outcome", roles.get("outcome")),
    ]
    for key in ("confounders", "modifiers", "groups"):
        value = roles.get(key) or []
        wanted += [(f"roles.{key}", col) for col in ([value] if isinstance(value, str) else value)]
    if "mediation" in steps:
        wanted += [
            ("roles.mediator", roles.get("mediator")),
            ("mediation.cluster", (plain.get("mediation") or {}).get("cluster")),
        ]
    if set(steps) & NUISANCE_STEPS:
        wanted.append(("nuisance.cluster", (plain.get("nuisance") or {}).get("cluster")))
        wanted.append(("data.cluster", (plain.get("data") or {}).get("cluster")))
    if "screening" in steps:
        features = (plain.get("screening") or {}).get("features")
        wanted += [("screening.features", col) for col in ([features] if isinstance(features, str) else features or [])]
    if "calibration" in steps:
        wanted.append(("data.randomised_column", (plain.get("data") or {}).get("randomised_column")))
    sens = plain.get("sensitivity") or {}
    if "sensitivity" in steps and "misclassification" in (sens.get("analyses") or []):
        wanted.append(("sensitivity.misclassification.cluster", (sens.get("misclassification") or {}).get("cluster")))
    for key, col in wanted:
        if col is not None:
            _check_column(key, str(col), present, problems)


def _check_column(key: str, col: str, present: set[str], problems: _Problems) -> None:
    """One column named by ``key`` (a role entry may be a shell-style pattern) against the table's names."""
    if key.startswith("roles.") and is_pattern(col):
        if not any(fnmatch.fnmatchcase(c, col) for c in present):
            problems.add(key, f"the pattern {col!r} matches no column of the table")
    elif col not in present:
        near = difflib.get_close_matches(col, sorted(present), n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        problems.add(key, f"column {col!r} is not in the table{hint}")
