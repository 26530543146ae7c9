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
import functools
import math
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from causal.data import _PREPARE_KEYS
from causal.dml import _FOREST_KEYS, _RAY_KEYS, ESTIMATORS

MISSING = "???"
# Names the step modules accept (causal.sensitivity / causal.mediation import statsmodels: half a second; the lists
# are repeated here so a config check costs nothing, and tests/test_validate.py pins them to the modules).
ANALYSES = ("e_value", "ovb", "dml", "refutations", "misclassification")
DEFAULT_ANALYSES = ANALYSES[:4]
REFUTATIONS = ("placebo_treatment", "random_common_cause", "data_subset", "dummy_outcome")
MEDIATION_METHODS = ("baron_kenny", "linear", "ml")
OVERLAP_RULES = ("none", "fixed", "crump")
OVERLAP_WEIGHTINGS = ("ipw", "overlap")
MISSING_POLICIES = ("indicator", "drop", "error")

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
# The keys each node's code reads, including optional keys the YAML defaults do not set. The keys the shipped YAML
# files in conf/ set are added to these at run time (:func:`allowed_keys`), so a key documented in conf/ with its
# code is never refused for want of an edit here.
KNOWN_KEYS: dict[str, frozenset[str]] = {
    "": frozenset(
        {"seed", "alpha", "n_jobs", "steps", "roles", "data", "estimator", "nuisance", "screening", "overlap", "dml"}
        | {"mediation", "sensitivity", "misclassification", "input", "labels", "paths", "evaluate", "report"}
        | {"vision", "ray", "runner", "hydra", "estimand"}
    ),
    "roles": frozenset({"treatment", "outcome", "confounders", "modifiers", "mediator", "groups"}),
    "screening": frozenset({"features", "alpha", "exclude", "max_levels"}),
    "overlap": frozenset({"rule", "threshold", "weighting", "bins"}),
    "dml": frozenset({"compare", "moderation", "plots", "clip"}),
    "estimator.linear_dml": frozenset({"name", "fit_cate_intercept", *_RAY_KEYS}),
    "estimator.causal_forest": frozenset({"name", *_FOREST_KEYS, *_RAY_KEYS}),
    "nuisance": frozenset(
        {"name", "folds", "n_jobs", "classifier", "regressor", "tune", "tune_folds", "tune_max_rows", "grid"}
        | {"use_ray", "ray_remote_func_options"}
        | {"candidates", "model_t", "model_y", "select_max_rows", "repeats", "repeats_max_rows", "cluster"}
        | {"outcome_mode", "stack"}
    ),
    "nuisance.grid": frozenset({"classifier", "regressor"}),
    "mediation": frozenset({"methods", "primary", "alpha", "n_boot", "cluster", "cov_type", "ml"}),
    "mediation.ml": frozenset({"n_folds", "interaction", "control_value", "treat_value", "reuse_nuisance", "repeats"}),
    "sensitivity": frozenset({"analyses", "alpha", "ovb", "dml", "refutations", "misclassification", "cluster"}),
    "sensitivity.ovb": frozenset({"benchmark_covariates", "kd", "ky", "q", "plot"}),
    "sensitivity.dml": frozenset({"c_y", "c_t", "rho", "null_hypothesis"}),
    "sensitivity.refutations": frozenset({"kinds", "n_sims", "subset_fraction", "tolerance_se", "seed"}),
    "sensitivity.misclassification": frozenset(
        {"metrics_file", "level", "sensitivity", "specificity", "n_positive", "n_negative", "n_draws", "clip"}
        | {"cluster", "enabled"}
    ),
    "data.table": frozenset(
        {"name", "path", "images", "id_column", "max_lost_fraction", "outcome_derived", "query", "prepare"}
    ),
    # data.simulated / data.sample: these plus simulate_catalog's keyword arguments (see _simulator_keys).
    "data.simulated": frozenset({"name", "prepare", "features_path", "seed", "outcome_derived", "query"}),
    "data.prepare": frozenset(_PREPARE_KEYS),
    "evaluate": frozenset({"iou_threshold", "score_threshold", "group_by", "feed_misclassification"}),
    "paths": frozenset({"outputs", "annotations", "cache"}),
}
# Run by scripts/run_experiment.py before the causal steps (also registered in causal.pipeline.STEPS as no-ops).
VISION_STEPS = ("annotate", "evaluate")


def allowed_keys(node: str) -> frozenset[str]:
    """Keys node ``node`` (``"sensitivity.ovb"``, ``"estimator.causal_forest"``, ``""`` for the top level) may hold:
    :data:`KNOWN_KEYS` plus the keys the shipped YAML files set there."""
    return KNOWN_KEYS.get(node, frozenset()) | _yaml_keys().get(node, frozenset())


@functools.lru_cache(maxsize=1)
def _yaml_keys() -> dict[str, frozenset[str]]:
    """Keys set by conf/config.yaml and the causal groups' option files, per node; empty without a conf/ folder."""
    import yaml  # PyYAML: a dependency of omegaconf

    found: dict[str, set[str]] = {}

    def collect(node: Any, where: str) -> None:
        if isinstance(node, Mapping):
            found.setdefault(where, set()).update(str(k) for k in node if k != "defaults")
            for key, value in node.items():
                if key != "defaults" and isinstance(value, Mapping):
                    collect(value, _join(where, key))

    main = CONF_DIR / "config.yaml"
    if not main.is_file():
        return {}
    top = yaml.safe_load(main.read_text()) or {}
    collect(top, "")
    for entry in top.get("defaults") or []:
        if isinstance(entry, Mapping):  # group choices (data: simulated, ...) are top-level nodes
            found[""].update(str(k) for k in entry if not str(k).startswith("override"))
    for group in ("data", "estimator", "nuisance", "mediation", "sensitivity"):
        for path in sorted((CONF_DIR / group).glob("*.yaml")):
            node = yaml.safe_load(path.read_text()) or {}
            if group in ("data", "estimator"):
                # Keys depend on the option: data.table vs the simulator's, each estimator's own parameters.
                kind = str(node.get("name", path.stem))
                kind = "simulated" if (group, kind) == ("data", "sample") else kind
                found.setdefault(f"{group}.{kind}", set()).update(str(k) for k in node if k != "defaults")
                for key, value in node.items():
                    if isinstance(value, Mapping):
                        collect(value, f"{group}.{key}")
            else:
                collect(node, group)
    return {k: frozenset(v) for k, v in found.items()}


class ConfigError(ValueError):
    """A config value that cannot work, found before any model is fitted.

    Attributes
    ----------
    key : str
        Full dotted key of the first problem (e.g. ``sensitivity.ovb.benchmark_covariates``).
    problems : list of (str, str)
        Every (key, message) found, in config order.
    """

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = list(problems)
        self.key = self.problems[0][0]
        super().__init__("; ".join(f"config key {key}: {message}" for key, message in self.problems))


class _Problems(list):
    """Collects (key, message) pairs; one ConfigError at the end lists them all."""

    def add(self, key: str, message: str) -> None:
        self.append((key, message))

    def unknown_keys(self, node: Any, allowed: Collection[str], where: str) -> None:
        if not isinstance(node, Mapping):
            if node is not None:
                self.add(where, f"must be a mapping, got {node!r}")
            return
        for key in node:
            if key not in allowed:
                near = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
                hint = f"did you mean {_join(where, near[0])}? " if near else ""
                self.add(_join(where, key), f"unknown key; {hint}known: {', '.join(sorted(allowed))}")

    def number(
        self,
        node: Mapping | None,
        name: str,
        where: str,
        *,
        low: float | None = None,
        high: float | None = None,
        open_low: bool = False,
        open_high: bool = False,
        integer: bool = False,
    ) -> None:
        """``node[name]``, when set (not null), is a number in the given interval (an integer if ``integer``)."""
        value = (node or {}).get(name) if isinstance(node, Mapping) else None
        if value is None:
            return
        key = _join(where, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (integer and not float(value).is_integer())
        ):
            self.add(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
            return
        bad_low = low is not None and (value <= low if open_low else value < low)
        bad_high = high is not None and (value >= high if open_high else value > high)
        if bad_low or bad_high or (isinstance(value, float) and math.isnan(value)):
            self.add(key, f"{value!r} is not in {_interval(low, high, open_low, open_high)}")

    def choices(self, values: Any, allowed: Iterable[str], key: str, what: str) -> list[str]:
        """``values`` (one name or a list) are all in ``allowed``; returns the list."""
        values = [values] if isinstance(values, str) else list(values or [])
        allowed = list(allowed)
        bad = [v for v in values if v not in allowed]
        if bad:
            near = [m for v in bad for m in difflib.get_close_matches(str(v), allowed, n=1, cutoff=0.6)]
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            self.add(key, f"unknown {what} {bad}{hint}; choose from {allowed}")
        return values


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _interval(low: float | None, high: float | None, open_low: bool, open_high: bool) -> str:
    left = "(" if open_low or low is None else "["
    right = ")" if open_high or high is None else "]"
    return f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"


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
    evaluate = plain.get("evaluate")
    problems.unknown_keys(evaluate, allowed_keys("evaluate"), "evaluate")
    problems.number(evaluate, "iou_threshold", "evaluate", low=0, high=1, open_low=True)
    problems.number(evaluate, "score_threshold", "evaluate", low=0, high=1)
    problems.unknown_keys(plain.get("paths"), allowed_keys("paths"), "paths")


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
    from causal.nuisance import _RESERVED, _XGB_KEYS

    problems.unknown_keys(nuisance, allowed_keys("nuisance"), "nuisance")
    if not isinstance(nuisance, Mapping):
        return
    problems.number(nuisance, "folds", "nuisance", low=2, integer=True)
    problems.number(nuisance, "tune_folds", "nuisance", low=2, integer=True)
    problems.number(nuisance, "tune_max_rows", "nuisance", low=1, integer=True)
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


def _check_sensitivity(plain: Mapping, steps: list[str], problems: _Problems) -> None:
    sens = plain.get("sensitivity")
    problems.unknown_keys(sens, allowed_keys("sensitivity"), "sensitivity")
    if not isinstance(sens, Mapping):
        return
    for part in ("ovb", "dml", "refutations", "misclassification"):
        problems.unknown_keys(sens.get(part), allowed_keys(f"sensitivity.{part}"), f"sensitivity.{part}")
    if "sensitivity" not in steps:
        return
    analyses = problems.choices(sens.get("analyses") or DEFAULT_ANALYSES, ANALYSES, "sensitivity.analyses", "analysis")
    problems.number(sens, "alpha", "sensitivity", low=0, high=1, open_low=True, open_high=True)
    if "ovb" in analyses and isinstance(sens.get("ovb"), Mapping):
        ovb = sens["ovb"]
        roles = plain.get("roles") if isinstance(plain.get("roles"), Mapping) else {}
        confounders = roles.get("confounders") or []
        confounders = [confounders] if isinstance(confounders, str) else list(confounders)
        absent = [b for b in ovb.get("benchmark_covariates") or [] if b not in confounders]
        if absent:
            problems.add(
                "sensitivity.ovb.benchmark_covariates",
                f"{absent} are not confounders (roles.confounders: {confounders})",
            )
        problems.number(ovb, "q", "sensitivity.ovb", low=0, open_low=True)
        for key in ("kd", "ky"):
            for i, value in enumerate(ovb.get(key) or []):
                problems.number({f"{key}[{i}]": value}, f"{key}[{i}]", "sensitivity.ovb", low=0, open_low=True)
    if "dml" in analyses and isinstance(sens.get("dml"), Mapping):
        for key in ("c_y", "c_t"):
            problems.number(sens["dml"], key, "sensitivity.dml", low=0, high=1, open_high=True)
        problems.number(sens["dml"], "rho", "sensitivity.dml", low=-1, high=1)
    if "refutations" in analyses and isinstance(sens.get("refutations"), Mapping):
        ref = sens["refutations"]
        problems.choices(ref.get("kinds") or REFUTATIONS, REFUTATIONS, "sensitivity.refutations.kinds", "kind(s)")
        problems.number(ref, "n_sims", "sensitivity.refutations", low=1, integer=True)
        problems.number(ref, "subset_fraction", "sensitivity.refutations", low=0, high=1, open_low=True, open_high=True)
        problems.number(ref, "tolerance_se", "sensitivity.refutations", low=0, open_low=True)
    if "misclassification" in analyses:
        _check_misclassification(plain, steps, problems)


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
    if "screening" in steps:
        features = (plain.get("screening") or {}).get("features")
        wanted += [("screening.features", col) for col in ([features] if isinstance(features, str) else features or [])]
    sens = plain.get("sensitivity") or {}
    if "sensitivity" in steps and "misclassification" in (sens.get("analyses") or []):
        wanted.append(("sensitivity.misclassification.cluster", (sens.get("misclassification") or {}).get("cluster")))
    for key, col in wanted:
        if col is not None and col not in present:
            near = difflib.get_close_matches(str(col), sorted(present), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            problems.add(key, f"column {col!r} is not in the table{hint}")
