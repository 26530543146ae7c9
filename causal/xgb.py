"""XGBoost nuisance factories and their grid search, and the seeds every model, split and subsample derives.

Reproducibility: one integer seed goes in; every model, split and subsample gets its own child seed from
:func:`derive_seed`, so a rerun gives the same numbers bit for bit (EconML issues #245, #252, #931: results change
run to run unless every nuisance model and the splitter are seeded).
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, train_test_split
from xgboost import XGBClassifier, XGBRegressor

log = logging.getLogger(__name__)

_XGB_KEYS = frozenset(XGBClassifier().get_params())
# Set by this module, not by config: the histogram method is the scalable one, and seeds / threads are threaded
# through explicitly so a config file cannot silently unseed a model.
_RESERVED = frozenset({"tree_method", "random_state", "n_jobs", "seed", "nthread"})


def derive_seed(seed: int, name: str) -> int:
    """Child seed for one named component (a model, a splitter, a subsample).

    Parameters
    ----------
    seed : int
        The run's single seed (config key ``seed``).
    name : str
        Component name, e.g. ``"crossfit_folds"``. Different names give independent streams.

    Returns
    -------
    int
        A seed in ``[0, 2**31 - 1)``, identical on every platform and Python run (``hash()`` is salted; crc32 is
        not).
    """
    state = np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))]).generate_state(1)[0]
    return int(state % (2**31 - 1))


def _check_params(params: Mapping[str, Any] | None, key: str) -> dict[str, Any]:
    params = dict(params or {})
    unknown = sorted(set(params) - _XGB_KEYS)
    if unknown:
        raise ValueError(f"config key {key}: unknown XGBoost parameter(s) {unknown}")
    reserved = sorted(set(params) & _RESERVED)
    if reserved:
        raise ValueError(f"config key {key}: {reserved} are set from `seed` / `nuisance.n_jobs`, not per model")
    return params


def make_classifier(params: Mapping[str, Any] | None = None, *, seed: int = 0, n_jobs: int = 1) -> XGBClassifier:
    """XGBoost propensity model with ``tree_method="hist"``.

    Parameters
    ----------
    params : mapping, optional
        XGBoost keyword arguments (``max_depth``, ``n_estimators``, ...), e.g. ``nuisance.classifier``.
    seed : int
        ``random_state`` of the model.
    n_jobs : int
        XGBoost threads.
    """
    params = _check_params(params, "nuisance.classifier")
    return XGBClassifier(**params, tree_method="hist", random_state=seed, n_jobs=n_jobs, eval_metric="logloss")


def make_regressor(params: Mapping[str, Any] | None = None, *, seed: int = 0, n_jobs: int = 1) -> XGBRegressor:
    """XGBoost outcome model with ``tree_method="hist"``; parameters as in :func:`make_classifier`."""
    params = _check_params(params, "nuisance.regressor")
    return XGBRegressor(**params, tree_method="hist", random_state=seed, n_jobs=n_jobs)


def tune(
    model: XGBClassifier | XGBRegressor,
    grid: Mapping[str, Sequence[Any]],
    features: np.ndarray,
    target: np.ndarray,
    *,
    n_folds: int = 3,
    max_rows: int | None = 50_000,
    seed: int = 0,
    key: str = "nuisance.grid",
    use_ray: bool = False,
) -> dict[str, Any]:
    """Grid search with k-fold CV on at most ``max_rows`` rows.

    At scale the search runs on a seeded (stratified, for a classifier) subsample: the grid ranks settings the same
    way on 50k rows as on 1M at a small fraction of the cost; the chosen setting is then cross-fitted on all rows.

    Parameters
    ----------
    model : XGBClassifier or XGBRegressor
        Base model; its parameters outside ``grid`` are kept.
    grid : mapping of str to sequence
        Parameter grid, e.g. ``{"max_depth": [3, 6], "n_estimators": [100, 300]}``.
    features : ndarray of shape (n, p)
    target : ndarray of shape (n,)
        Binary treatment (classifier) or outcome (regressor).
    n_folds : int
        CV folds of the search.
    max_rows : int or None
        Subsample size for the search; ``None`` tunes on all rows.
    seed : int
        Seeds the subsample and the CV splitter.
    key : str
        Config key named in error messages.
    use_ray : bool
        Run the (candidate, fold) fits as Ray tasks through Ray's joblib backend; same scores.

    Returns
    -------
    dict
        ``best_params`` (dict), ``best_score`` (mean CV score: negative log loss or negative MSE), ``n_rows``
        (rows searched), ``n_candidates``, ``seconds``, and ``candidates``: one record per grid point with its
        mean and sd CV score.
    """
    grid = {name: list(values) for name, values in dict(grid).items()}
    _check_params(dict.fromkeys(grid), key)
    if any(len(v) == 0 for v in grid.values()):
        raise ValueError(f"config key {key}: every grid entry needs at least one value")
    is_classifier = isinstance(model, ClassifierMixin)
    n = len(target)
    rows = np.arange(n)
    if max_rows is not None and n > max_rows:
        rows, _ = train_test_split(
            rows,
            train_size=int(max_rows),
            random_state=derive_seed(seed, "tune_subsample"),
            stratify=target if is_classifier else None,
        )
        rows = np.sort(rows)
    splitter_cls = StratifiedKFold if is_classifier else KFold
    splitter = splitter_cls(n_splits=n_folds, shuffle=True, random_state=derive_seed(seed, "tune_folds"))
    scoring = "neg_log_loss" if is_classifier else "neg_mean_squared_error"
    start = time.perf_counter()
    if use_ray:
        import joblib
        from ray.util.joblib import register_ray

        register_ray()
        search = GridSearchCV(model, grid, scoring=scoring, cv=splitter, n_jobs=-1, refit=False, error_score="raise")
        with joblib.parallel_backend("ray"):
            search.fit(features[rows], target[rows])
    else:
        # Sequential search: each XGBoost fit already uses n_jobs threads, and joblib workers on top would
        # oversubscribe the cores without changing the result.
        search = GridSearchCV(model, grid, scoring=scoring, cv=splitter, n_jobs=1, refit=False, error_score="raise")
        search.fit(features[rows], target[rows])
    seconds = time.perf_counter() - start
    res = search.cv_results_
    candidates = [
        {"params": dict(p), "mean_score": float(m), "std_score": float(s)}
        for p, m, s in zip(res["params"], res["mean_test_score"], res["std_test_score"])
    ]
    log.info(
        "tuned %s on %d of %d rows, %d candidates x %d folds in %.1fs: %s (score %.5g)",
        type(model).__name__,
        len(rows),
        n,
        len(candidates),
        n_folds,
        seconds,
        search.best_params_,
        search.best_score_,
    )
    return {
        "best_params": dict(search.best_params_),
        "best_score": float(search.best_score_),
        "scoring": scoring,
        "n_rows": int(len(rows)),
        "n_candidates": len(candidates),
        "seconds": seconds,
        "candidates": candidates,
    }
