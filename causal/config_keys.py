"""Which keys each config node may hold, decided in one place: :func:`allowed_keys` = the keys the code reads
(:data:`KNOWN_KEYS`, with the optional keys no YAML file sets) plus the keys the shipped YAML files in conf/ set.

The name lists (analyses, refutation kinds, mediation methods, overlap rules) are repeated here so that a config
check imports nothing heavy (causal.sensitivity and causal.mediation import statsmodels: half a second);
tests/test_validate.py pins them to the modules.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from causal.config_schema import field_names, schema_nodes
from causal.data import _PREPARE_KEYS
from causal.dml import _FOREST_KEYS, _RAY_KEYS

MISSING = "???"
# Names the step modules accept (causal.sensitivity / causal.mediation import statsmodels: half a second; the lists
# are repeated here so a config check costs nothing, and tests/test_validate.py pins them to the modules).
ANALYSES = ("e_value", "ovb", "dml", "refutations", "misclassification", "rosenbaum")
DEFAULT_ANALYSES = ANALYSES[:4]
REFUTATIONS = ("placebo_treatment", "random_common_cause", "data_subset", "dummy_outcome")
MEDIATION_METHODS = ("baron_kenny", "linear", "ml")
OVERLAP_RULES = ("none", "fixed", "crump")
OVERLAP_WEIGHTINGS = ("ipw", "overlap")
MISSING_POLICIES = ("indicator", "drop", "error")
# causal.methods.METHODS, repeated so a config check imports no estimator (tests/test_methods.py pins them).
METHODS = (
    "aipw_ate",
    "aipw_att",
    "ipw_ate",
    "ipw_att",
    "matching_ate",
    "matching_att",
    "t_learner_ate",
    "linear_dml_ate",
    "causal_forest_ate",
)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"  # in a checkout; see conf_dir()
# The keys each node's code reads, including optional keys the YAML defaults do not set. For the nodes without a
# structured config, the keys the shipped YAML files in conf/ set are added at run time (:func:`allowed_keys`).
KNOWN_KEYS: dict[str, frozenset[str]] = {
    # The nodes with a structured config (causal/config_schema.py): their fields.
    **{path: field_names(cls) for path, cls in schema_nodes().items()},
    "": frozenset(
        {"seed", "alpha", "n_jobs", "steps", "roles", "data", "estimator", "nuisance", "screening", "overlap", "dml"}
        | {"mediation", "sensitivity", "misclassification", "input", "labels", "paths", "evaluate", "report"}
        | {"vision", "ray", "runner", "hydra", "estimand", "engagement", "display_names", "methods"}
        | {"discover"}
    ),
    "estimator.linear_dml": frozenset({"name", "fit_cate_intercept", *_RAY_KEYS}),
    "estimator.causal_forest": frozenset({"name", *_FOREST_KEYS, *_RAY_KEYS}),
    "nuisance": frozenset(
        {"name", "folds", "n_jobs", "classifier", "regressor", "tune", "tune_folds", "tune_max_rows", "grid"}
        | {"use_ray", "ray_remote_func_options"}
        | {"candidates", "model_t", "model_y", "select_max_rows", "repeats", "repeats_max_rows", "cluster"}
        | {"outcome_mode", "outcome_loss", "stack"}
    ),
    "nuisance.grid": frozenset({"classifier", "regressor"}),
    "data.table": frozenset(
        {"name", "path", "images", "id_column", "max_lost_fraction", "outcome_derived", "query", "prepare"}
        | {"randomised_column", "cluster"}
    ),
    # data.simulated / data.sample: these plus simulate_catalog's keyword arguments (see _simulator_keys).
    "data.simulated": frozenset(
        {"name", "prepare", "features_path", "seed", "outcome_derived", "query", "randomised_column", "components"}
        | {"cluster"}
    ),
    "discover": frozenset(
        {"features", "exclude", "top_k", "alpha", "learner", "folds", "min_arm", "bins", "bands", "use_ray"}
    ),
    "data.prepare": frozenset(_PREPARE_KEYS),
}
# Run by scripts/run_experiment.py before the causal steps (also registered in causal.pipeline.STEPS as no-ops).
VISION_STEPS = ("annotate", "evaluate")


def allowed_keys(node: str) -> frozenset[str]:
    """Keys node ``node`` (``"sensitivity.ovb"``, ``"estimator.causal_forest"``, ``""`` for the top level) may hold.

    A node with a structured config (:mod:`causal.config_schema`) holds exactly its fields. The others hold
    :data:`KNOWN_KEYS` plus the keys the shipped YAML files set there.
    """
    schemas = schema_nodes()
    if node in schemas:
        return field_names(schemas[node])
    return KNOWN_KEYS.get(node, frozenset()) | _yaml_keys().get(node, frozenset())


@functools.lru_cache(maxsize=1)
def _yaml_keys() -> dict[str, frozenset[str]]:
    """Keys set by conf/config.yaml and the causal groups' option files, per node; empty without a conf/ folder."""
    import yaml  # PyYAML: a dependency of omegaconf

    found: dict[str, set[str]] = {}

    def collect(node: Any, where: str) -> None:
        _collect(node, where, found)

    conf = conf_dir()
    main = conf / "config.yaml"
    if not main.is_file():
        return {}
    top = yaml.safe_load(main.read_text()) or {}
    collect(top, "")
    for entry in top.get("defaults") or []:
        if isinstance(entry, Mapping):  # group choices (data: simulated, ...) are top-level nodes
            found[""].update(str(k) for k in entry if not str(k).startswith("override"))
    for group in ("data", "estimator", "nuisance", "mediation", "sensitivity"):
        for path in sorted((conf / group).glob("*.yaml")):
            node = yaml.safe_load(path.read_text()) or {}
            if group in ("data", "estimator"):
                _collect_option(group, path.stem, node, found, collect)
            else:
                collect(node, group)
    return {k: frozenset(v) for k, v in found.items()}


def _collect(node: Any, where: str, found: dict[str, set[str]]) -> None:
    """Add the keys of ``node`` (and of its sub-mappings, under their dotted paths) to ``found``."""
    if isinstance(node, Mapping):
        found.setdefault(where, set()).update(str(k) for k in node if k != "defaults")
        for key, value in node.items():
            if key != "defaults" and isinstance(value, Mapping):
                _collect(value, _join(where, key), found)


def _collect_option(group: str, stem: str, node: Mapping, found: dict[str, set[str]], collect: Any) -> None:
    """Keys of a data or estimator option: they depend on the option (data.table vs the simulator's, each
    estimator's own parameters)."""
    kind = str(node.get("name", stem))
    kind = "simulated" if (group, kind) == ("data", "sample") else kind
    found.setdefault(f"{group}.{kind}", set()).update(str(k) for k in node if k != "defaults")
    for key, value in node.items():
        if isinstance(value, Mapping):
            collect(value, f"{group}.{key}")


def conf_dir() -> Path:
    """The shipped config folder: the repository's ``conf/`` in a checkout, the ``creative_insights_conf`` package
    (the same files) in an installed wheel."""
    if CONF_DIR.is_dir():
        return CONF_DIR
    from importlib.util import find_spec

    spec = find_spec("creative_insights_conf")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else CONF_DIR


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)
