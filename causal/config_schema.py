"""Structured configs: the types and defaults of the causal nodes of ``conf/``, in one place.

Each dataclass mirrors one config node (``overlap``, ``dml``, ``mediation``, ``sensitivity.ovb``, ...): its fields
are the keys the code reads, their types, and their defaults. They serve three purposes:

- :func:`register_configs` stores them in Hydra's ConfigStore (group ``schema``), so a tool can compose or
  instantiate them (``schema/overlap``) and ``--cfg job`` users see the same names;
- :mod:`causal.config_keys` takes the keys a node may hold from the fields, and :mod:`causal.validate` checks every
  value's type against them before any data is read, naming the dotted key;
- the library's own defaults (e.g. :func:`causal.overlap.from_config`) are read from here.

The YAML files in ``conf/`` repeat these defaults with comments for the person reading them;
tests/test_validate.py fails if a YAML default and a field default ever differ, so there is one truth.
Interpolations (``${alpha}``) are kept as such.
"""

# OmegaConf reads these annotations at run time and knows typing.Optional, not the `X | None` union type.
# ruff: noqa: UP045

from __future__ import annotations

import functools
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Optional

from omegaconf import II


@dataclass
class RolesConfig:
    treatment: str = "face_present"
    outcome: str = "take_rate"
    confounders: list[str] = field(default_factory=lambda: ["genre", "country", "title_popularity", "release_year"])
    modifiers: Any = II("roles.groups")
    mediator: Optional[str] = "face_area_mean"
    groups: list[str] = field(default_factory=lambda: ["genre", "country"])


@dataclass
class ScreeningConfig:
    features: Optional[list[str]] = None
    alpha: float = II("alpha")
    exclude: list[str] = field(default_factory=list)
    max_levels: int = 100


@dataclass
class OverlapConfig:
    rule: str = "fixed"
    threshold: float = 0.01
    weighting: str = "overlap"
    bins: int = 40


@dataclass
class DmlConfig:
    clip: float = 0.05
    compare: list[Any] = field(default_factory=list)
    moderation: bool = True
    plots: bool = True


@dataclass
class MediationMLConfig:
    n_folds: Optional[int] = None
    interaction: bool = False
    control_value: Optional[float] = None
    treat_value: Optional[float] = None
    reuse_nuisance: bool = True
    repeats: int = 3


@dataclass
class MediationConfig:
    methods: list[str] = field(default_factory=lambda: ["baron_kenny", "linear", "ml"])
    primary: str = "ml"
    alpha: float = II("alpha")
    n_boot: int = 1000
    cluster: Optional[str] = None
    cov_type: Optional[str] = None
    ml: MediationMLConfig = field(default_factory=MediationMLConfig)


@dataclass
class OvbConfig:
    benchmark_covariates: list[str] = field(default_factory=lambda: ["title_popularity"])
    kd: list[float] = field(default_factory=lambda: [1, 2, 3])
    ky: Optional[list[float]] = None
    q: float = 1.0
    plot: bool = True


@dataclass
class DmlBoundsConfig:
    c_y: float = 0.05
    c_t: float = 0.05
    rho: float = 1.0
    null_hypothesis: float = 0.0


@dataclass
class RefutationsConfig:
    kinds: list[str] = field(
        default_factory=lambda: ["placebo_treatment", "random_common_cause", "data_subset", "dummy_outcome"]
    )
    n_sims: int = 5
    subset_fraction: float = 0.8
    tolerance_se: float = 1.0
    seed: Optional[int] = None


@dataclass
class MisclassificationConfig:
    metrics_file: Optional[str] = None
    level: str = "image_level"
    sensitivity: Optional[float] = None
    specificity: Optional[float] = None
    n_positive: Optional[int] = None
    n_negative: Optional[int] = None
    n_draws: int = 2000
    clip: float = 0.01
    cluster: Optional[str] = None
    enabled: Optional[bool] = None  # accepted from older configs and ignored: sensitivity.analyses decides


@dataclass
class RosenbaumConfig:
    caliper: float = 0.2
    gammas: list[float] = field(default_factory=lambda: [1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0])


@dataclass
class SensitivityConfig:
    analyses: list[str] = field(default_factory=lambda: ["e_value", "ovb", "dml", "refutations", "rosenbaum"])
    alpha: float = II("alpha")
    cluster: Optional[str] = None  # column for cluster-robust standard errors of the analyses that support them
    ovb: OvbConfig = field(default_factory=OvbConfig)
    dml: DmlBoundsConfig = field(default_factory=DmlBoundsConfig)
    refutations: RefutationsConfig = field(default_factory=RefutationsConfig)
    misclassification: MisclassificationConfig = field(default_factory=MisclassificationConfig)
    rosenbaum: RosenbaumConfig = field(default_factory=RosenbaumConfig)


@dataclass
class MethodsConfig:
    include: Optional[list[str]] = None
    caliper: Optional[float] = 0.2
    n_neighbors: int = 1
    variance_neighbors: int = 2
    bias_correction: bool = True
    reference: Optional[str] = None


@dataclass
class EvaluateConfig:
    iou_threshold: float = 0.5
    score_threshold: Optional[float] = None
    group_by: list[str] = field(default_factory=lambda: ["style", "domain"])
    feed_misclassification: bool = False


@dataclass
class PathsConfig:
    outputs: str = "outputs"
    annotations: Optional[str] = None
    cache: Optional[str] = II("paths.outputs") + "/cache"


# Dotted node path -> its schema. Nested nodes (mediation.ml, sensitivity.ovb, ...) come from the fields.
SCHEMAS: dict[str, type] = {
    "roles": RolesConfig,
    "screening": ScreeningConfig,
    "overlap": OverlapConfig,
    "dml": DmlConfig,
    "methods": MethodsConfig,
    "mediation": MediationConfig,
    "sensitivity": SensitivityConfig,
    "evaluate": EvaluateConfig,
    "paths": PathsConfig,
}


@functools.lru_cache(maxsize=1)
def schema_nodes() -> dict[str, type]:
    """Every node with a schema, nested ones included: ``{"mediation.ml": MediationMLConfig, ...}``."""
    out: dict[str, type] = {}

    def walk(path: str, cls: type) -> None:
        out[path] = cls
        for f in fields(cls):
            nested = f.default_factory if f.default_factory is not MISSING else None
            if nested is not None and is_dataclass(nested):
                walk(f"{path}.{f.name}", nested)

    for path, cls in SCHEMAS.items():
        walk(path, cls)
    return out


def field_names(cls: type) -> frozenset[str]:
    """The keys a node of schema ``cls`` may hold."""
    return frozenset(f.name for f in fields(cls))


def defaults(cls: type) -> dict[str, Any]:
    """The schema's defaults as plain containers (interpolations kept as ``${...}`` strings)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cls), resolve=False)


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore under ``schema/<node>`` (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for path, cls in SCHEMAS.items():
        store.store(group="schema", name=path, node=cls)


def type_problems(plain: dict[str, Any]) -> list[tuple[str, str]]:
    """``(dotted key, message)`` for each value in ``plain`` (a resolved config) whose type its schema refuses."""
    from typing import get_type_hints

    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    problems = []
    for path, cls in schema_nodes().items():
        node: Any = plain
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        hints = get_type_hints(cls)
        base = OmegaConf.structured(cls)
        for key, value in node.items():
            if key not in hints or is_dataclass(hints[key]):
                continue  # unknown keys are reported by the key check; nested nodes are checked on their own
            try:
                OmegaConf.merge(base, {key: value})
            except OmegaConfBaseException:
                hint = hints[key]
                generic = getattr(hint, "__args__", None)
                wanted = str(hint).replace("typing.", "") if generic else getattr(hint, "__name__", str(hint))
                problems.append((f"{path}.{key}", f"must be {wanted}, got {value!r}"))
    return problems
