"""The data layer's entry: a ``data=`` config node -> a validated :class:`CausalDataset`, and the layer's public API.

A table becomes a :class:`CausalDataset` in three steps: :func:`read_table` (CSV or Parquet, a file or a folder of
parts), optionally :func:`join_annotations` (annotation images table x engagement table on ``image_id``), and
:func:`prepare`, which checks the columns named by :class:`Roles` and turns them into numeric arrays. This module
composes them from config (:func:`load_from_config`, with the simulator for ``data=simulated|sample`` and the row
filter ``data.query``) and re-exports the names of the modules that do the work, one idea each:

* :mod:`causal.tables` -- reading files (``data.na_values``), :class:`DataError`
* :mod:`causal.join` -- joining annotations on ``image_id``, rows lost counted by reason
* :mod:`causal.roles` -- :class:`Roles`, which column plays which part
* :mod:`causal.query` -- the safe ``data.query`` parser and evaluator (:func:`select_rows`)
* :mod:`causal.columns` -- what a column holds (vectors, booleans, numbers) and the finite-number checks
* :mod:`causal.levels` -- the "missing" and "other" levels, rare-level pooling (:func:`pool_rare_levels`)
* :mod:`causal.encode` -- role columns -> float covariates (dummies, PCA of embeddings, missing indicators)
* :mod:`causal.dataset` -- :func:`prepare` and :class:`CausalDataset`, the missing-value policy

Every problem raises :class:`DataError` whose message names the file (``source``) and the column or config key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from causal.columns import as_boolean, is_vector
from causal.dataset import MISSING_POLICIES, CausalDataset, prepare
from causal.join import join_annotations
from causal.levels import MIN_LEVEL_COUNT, MISSING_LEVEL, OTHER_LEVEL, pool_rare_levels
from causal.query import select_rows
from causal.roles import Roles
from causal.simulate import simulate_from_config
from causal.tables import DataError, na_values_option, read_table

log = logging.getLogger(__name__)

__all__ = [
    "MIN_LEVEL_COUNT",
    "MISSING_LEVEL",
    "MISSING_POLICIES",
    "OTHER_LEVEL",
    "CausalDataset",
    "DataError",
    "Roles",
    "as_boolean",
    "is_vector",
    "join_annotations",
    "load_from_config",
    "load_table_from_config",
    "na_values_option",
    "pool_rare_levels",
    "prepare",
    "prepare_options",
    "read_table",
    "select_rows",
]

# The keyword arguments of prepare that config `data.prepare` may set (causal.validate checks the same list).
_PREPARE_KEYS = (
    "binary_treatment",
    "outcome_range",
    "n_components",
    "missing",
    "id_column",
    "max_levels",
    "min_level_count",
)


def prepare_options(cfg: Mapping | None, *, key: str = "data.prepare") -> dict[str, Any]:
    """Keyword arguments for :func:`prepare` from a config node; unknown keys raise naming ``<key>.<name>``."""
    if cfg is None:
        return {}
    options: dict[str, Any] = {}
    for name in cfg:
        if name not in _PREPARE_KEYS:
            raise DataError(f"config `{key}.{name}`: unknown key; known keys are {', '.join(_PREPARE_KEYS)}")
        value = cfg[name]
        if name == "outcome_range" and value is not None:
            value = tuple(float(v) for v in value)
            if len(value) != 2 or value[0] > value[1]:
                raise DataError(f"config `{key}.outcome_range` must be [low, high], got {list(value)}")
        options[name] = value
    return options


def load_table_from_config(cfg: Mapping) -> tuple[pd.DataFrame, str]:
    """The analysis table named by a ``data=table`` config node, joined with annotations when ``images`` is set.

    Returns
    -------
    (DataFrame, str)
        The table and its source name for messages.
    """
    try:
        path = cfg["path"]
    except Exception as exc:
        raise DataError("config `data.path` is required for data=table (a CSV or Parquet file or folder)") from exc
    if path in (None, "", "???"):
        raise DataError("config `data.path` is required for data=table (a CSV or Parquet file or folder)")
    na_values = na_values_option(cfg.get("na_values") if isinstance(cfg, Mapping) else None)
    table = read_table(path, na_values=na_values)
    source = str(path)
    images_path = cfg.get("images") if isinstance(cfg, Mapping) else None
    if images_path:
        images = read_table(images_path, na_values=na_values)
        table = join_annotations(
            images,
            table,
            images_source=str(images_path),
            engagement_source=source,
            id_column=cfg.get("id_column", "image_id") or "image_id",
            max_lost_fraction=cfg.get("max_lost_fraction"),
        )
        source = f"{path} x {images_path}"
    return table, source


def _check_not_derived(roles: Roles, derived: set[str]) -> None:
    for col in [*roles.confounders, *roles.modifiers, roles.treatment, roles.mediator]:
        if col in derived:
            raise DataError(
                f"config `{roles.key_of(col)}` uses {col!r}, which `data.outcome_derived` marks as computed from "
                "the outcome"
            )


def _expand_patterns(roles: Roles, table: pd.DataFrame, skip: set, source: str) -> Roles:
    """Roles with their patterns matched to ``table``'s columns; constant columns are left out (with a warning),
    since a pattern cannot know them and a constant carries no information."""
    named = set(roles.columns())
    constant = [c for c in table.columns if c not in named and table[c].nunique(dropna=True) <= 1]
    expanded = roles.expand(table.columns, exclude=(skip | set(constant)) - {None}, source=source)
    if constant:
        log.warning("%s: constant columns left out of the role patterns: %s", source, ", ".join(map(str, constant)))
    log.info("roles after matching patterns: %s", expanded.to_dict())
    return expanded


def load_from_config(data_cfg: Mapping, roles: Roles, *, seed: int = 0) -> tuple[CausalDataset, dict | None]:
    """Build the analysis dataset for any ``data=`` config (table, simulated, sample).

    Parameters
    ----------
    data_cfg : Mapping
        The ``data`` config node (``name`` is ``table``, ``simulated`` or ``sample``; optional ``query``, a row
        filter applied before validation, and ``prepare``, keyword arguments of :func:`prepare`).
    roles : Roles
        From the top-level ``roles`` node.
    seed : int
        The run's seed (PCA; the simulator unless ``data.seed`` is set).

    Returns
    -------
    (CausalDataset, dict or None)
        The dataset and the simulator's truth (``None`` for a user table).

    Raises
    ------
    DataError
        Bad config keys, unreadable files, failed validation, or a role column listed in
        ``data.outcome_derived`` (columns computed from the outcome must not be adjusted for).
    """
    name = data_cfg.get("name")
    options = prepare_options(data_cfg.get("prepare"))
    options.setdefault("id_column", data_cfg.get("id_column", "image_id"))
    derived = set(data_cfg.get("outcome_derived") or [])
    _check_not_derived(roles, derived)
    if name == "table":
        table, source = load_table_from_config(data_cfg)
        truth = None
    elif name in ("simulated", "sample"):
        catalog = simulate_from_config(data_cfg, seed=seed)
        if data_cfg.get("components") is not None:  # visual components with planted effects (the funnel's truth)
            from causal.simulate_components import add_components

            cat_seed = data_cfg.get("seed")
            catalog = add_components(catalog, data_cfg["components"], seed=int(seed if cat_seed is None else cat_seed))
        table, source, truth = catalog.data, f"simulator (data={name})", catalog.truth
    else:
        raise DataError(f"config `data.name` must be table, simulated or sample, got {name!r}")
    query = data_cfg.get("query")
    if query:
        table = select_rows(table, str(query), source=source)
    if roles.has_patterns():
        skip = {options["id_column"], data_cfg.get("randomised_column"), *derived}
        roles = _expand_patterns(roles, table, skip, source)
    return prepare(table, roles, source=source, seed=seed, **options), truth
