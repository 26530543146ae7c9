"""What the steps of a causal run share: :class:`RunContext` (the config, the data, the units in use, the one
cross-fit of the nuisance models, the results being built) and the config-node helpers the steps read with."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from causal import dml
from causal.data import CausalDataset
from causal.nuisance import CrossFitNuisance
from causal.nuisance import from_config as nuisance_from_config

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

    @cached_property
    def clusters(self) -> np.ndarray | None:
        """Cluster labels of every row for cluster-robust AIPW standard errors: the ``data.cluster`` column, else
        the ``nuisance.cluster`` one; ``None`` when neither is set (independent rows)."""
        labels = self._column("data", "cluster")
        return self._column("nuisance", "cluster") if labels is None else labels

    @cached_property
    def fold_groups(self) -> np.ndarray | None:
        """Labels whose rows the cross-fit keeps in one fold (``nuisance.cluster``), or ``None``."""
        return self._column("nuisance", "cluster")

    def _column(self, node: str, key: str) -> Any:
        name = (to_plain(_node(self.cfg, node)) or {}).get(key)
        if not name:
            return None
        if name not in self.dataset.frame.columns:
            raise ValueError(f"config key {node}.{key}: no column {name!r} in {self.dataset.source}")
        codes, _ = pd.factorize(self.dataset.frame[name], use_na_sentinel=False)  # integer labels: cheap to sort
        return codes

    @property
    def nuisance(self) -> CrossFitNuisance:
        """The cross-fitted nuisance models, fitted on first access (on all rows) and cached."""
        if self._nuisance is None:
            start = time.perf_counter()
            node = to_plain(_node(self.cfg, "nuisance")) or {}
            model = nuisance_from_config(node, seed=self.seed)
            self._nuisance = model.fit(self.features, self.dataset.t, self.dataset.y, groups=self.fold_groups)
            self.timings["nuisance"] = time.perf_counter() - start
            self.timings.update({f"nuisance_{k}": v for k, v in model.seconds_.items()})
            self.results["nuisance"] = model.summary()
        return self._nuisance

    def step_config(self, name: str) -> dict[str, Any]:
        """The step's own config node (``cfg.<name>``) as a plain dict; empty when absent."""
        return to_plain(_node(self.cfg, name)) or {}


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
