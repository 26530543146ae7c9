"""The ``nuisance`` config node -> a :class:`causal.nuisance.CrossFitNuisance` (keys checked, defaults filled)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from causal.context import to_plain
from causal.nuisance import CrossFitNuisance

# Keys of the learner choice and repeated cross-fitting (also in causal.validate.KNOWN_KEYS).
NEW_KEYS = (
    "candidates",
    "model_t",
    "model_y",
    "select_max_rows",
    "repeats",
    "repeats_max_rows",
    "cluster",
    "outcome_mode",
    "outcome_loss",
    "stack",
)


def from_config(cfg: Mapping[str, Any], *, seed: int) -> CrossFitNuisance:
    """Build a :class:`CrossFitNuisance` from the ``nuisance`` config group.

    Parameters
    ----------
    cfg : mapping
        ``nuisance`` node: ``folds``, ``n_jobs``, ``classifier``, ``regressor``, for tuning ``tune`` (bool),
        ``tune_folds``, ``tune_max_rows`` and ``grid.classifier`` / ``grid.regressor``, the learner choice
        ``candidates``, ``model_t``, ``model_y``, ``select_max_rows``, ``repeats``, ``cluster`` (read by the
        pipeline), and ``use_ray``, ``ray_remote_func_options``.
    seed : int
        The run's seed.
    """
    cfg = dict(cfg)
    allowed = {
        "name",
        "folds",
        "n_jobs",
        "classifier",
        "regressor",
        "tune",
        "tune_folds",
        "tune_max_rows",
        "grid",
        "use_ray",
        "ray_remote_func_options",
        *NEW_KEYS,
    }
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(f"config group nuisance: unknown key(s) {unknown}; allowed {sorted(allowed)}")
    grid = dict(cfg.get("grid") or {})
    unknown = sorted(set(grid) - {"classifier", "regressor"})
    if unknown:
        raise ValueError(f"config key nuisance.grid: unknown key(s) {unknown}; use classifier / regressor")
    return CrossFitNuisance(
        candidates=to_plain(cfg.get("candidates")),
        model_t=to_plain(cfg.get("model_t")),
        model_y=to_plain(cfg.get("model_y")),
        repeats=int(cfg.get("repeats") or 1),
        outcome_mode=str(cfg.get("outcome_mode") or "pooled"),
        outcome_loss=str(cfg.get("outcome_loss") or "own_arm"),
        stack=tuple(to_plain(cfg.get("stack")) or ()),
        repeats_max_rows=None if cfg.get("repeats_max_rows") is None else int(cfg["repeats_max_rows"]),
        select_max_rows=int(cfg.get("select_max_rows") or 10_000),
        classifier_params=to_plain(cfg.get("classifier")),
        regressor_params=to_plain(cfg.get("regressor")),
        classifier_grid=to_plain(grid.get("classifier")),
        regressor_grid=to_plain(grid.get("regressor")),
        tune=bool(cfg.get("tune", False)),
        n_folds=int(cfg.get("folds") or 5),
        tune_folds=int(cfg.get("tune_folds") or 3),
        tune_max_rows=None if cfg.get("tune_max_rows") is None else int(cfg["tune_max_rows"]),
        n_jobs=int(cfg.get("n_jobs") or 1),
        random_state=int(seed),
        use_ray=bool(cfg.get("use_ray", False)),
        ray_remote_func_options=to_plain(cfg.get("ray_remote_func_options")),
    )
