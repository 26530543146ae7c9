"""The one cross-fitting layer: fold splits and out-of-fold predictions of injectable scikit-learn learners.

Every causal step that needs a nuisance prediction -- the propensity and outcome models of
:class:`causal.nuisance.CrossFitNuisance`, the mediation regressions, the misclassification correction's per-arm
outcome models, the refutations' refits -- goes through these two functions:

* :func:`make_folds` -- (train, test) index pairs: group-aware (``GroupKFold``: every cluster in one fold) when
  cluster labels are given, else stratified by a 0/1 target, else shuffled k-fold; seeded.
* :func:`cross_predict` -- for each fold, a clone of any scikit-learn learner (EconML's ``model_y`` / ``model_t``
  style: a classifier gives P(target = 1 | x), a regressor E[target | x]) is fitted on the training rows (optionally
  only those of one treatment arm) and predicts the held-out rows, so no unit is predicted by a model that saw it.

Learners are plain scikit-learn estimators; :func:`reseed` gives each fold's clone its own seed. Folds can run as
Ray tasks; the numbers are the same, because every fit is seeded the same way wherever it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

Folds = list[tuple[np.ndarray, np.ndarray]]


def subsample_rows(n: int, max_rows: int, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded random subsample of ``max_rows`` of ``n`` rows, or None when ``n <= max_rows``
    (use every row): the row cap of the learners and checks that cost more than they gain on large tables."""
    if n <= max_rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))


def make_folds(
    n: int,
    *,
    n_folds: int = 5,
    seed: int = 0,
    stratify: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    shuffle_groups: bool = False,
) -> Folds:
    """Cross-fitting folds.

    Parameters
    ----------
    n : int
        Number of rows.
    n_folds : int
        Number of folds.
    seed : int
        Seed of the shuffle (unused with ``groups``: ``GroupKFold`` balances fold sizes deterministically).
    stratify : ndarray of shape (n,), optional
        Labels to stratify on (e.g. a 0/1 treatment), so every fold holds both arms in proportion.
    groups : ndarray of shape (n,), optional
        Cluster labels (e.g. ``title_id``): all rows of a cluster fall in the same fold. Takes precedence over
        ``stratify``.
    shuffle_groups : bool
        Assign clusters to folds at random (seeded) instead of ``GroupKFold``'s deterministic size balancing, so
        repeated cross-fits with clusters get different splits.

    Returns
    -------
    list of (ndarray, ndarray)
        (train, test) row indices per fold; the test parts partition ``range(n)``.
    """
    dummy = np.zeros((n, 1))
    if groups is not None:
        splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed) if shuffle_groups else None
        return list((splitter or GroupKFold(n_splits=n_folds)).split(dummy, groups=np.asarray(groups)))
    if stratify is not None:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return list(splitter.split(dummy, np.asarray(stratify)))
    return list(KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(dummy))


def reseed(model: Any, seed: int) -> Any:
    """Set every ``random_state`` parameter of ``model`` (nested ones of a pipeline too) to ``seed``; returns it."""
    params = model.get_params(deep=True) if hasattr(model, "get_params") else {}
    keys = {k: seed for k in params if k == "random_state" or k.endswith("__random_state")}
    if keys:
        model.set_params(**keys)
    return model


def predict_target(model: Any, features: np.ndarray) -> np.ndarray:
    """P(target = 1 | x) for a classifier (second column of ``predict_proba``), E[target | x] for a regressor."""
    if _is_classifier(model):
        return np.asarray(model.predict_proba(features))[:, 1]
    return np.asarray(model.predict(features), dtype=np.float64).ravel()


def _is_classifier(model: Any) -> bool:
    try:
        return bool(is_classifier(model))
    except (AttributeError, TypeError):  # an object outside scikit-learn's tag system
        return False


def fit_predict_fold(
    learner: Any,
    features: np.ndarray,
    target: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    seed: int | None = None,
) -> np.ndarray:
    """Fit a clone of ``learner`` on ``train`` rows and predict ``test`` rows, shape (len(test),).

    With no feature columns the prediction is the training mean of the target (an intercept-only model).
    """
    if features.shape[1] == 0:
        return np.full(len(test), float(np.mean(target[train])))
    model = clone(learner)
    if seed is not None:
        reseed(model, seed)
    model.fit(features[train], target[train])
    return predict_target(model, features[test])


def cross_predict(
    learner: Any,
    features: np.ndarray,
    target: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    seeds: Sequence[int] | None = None,
    train_mask: np.ndarray | None = None,
    use_ray: bool = False,
    ray_remote_func_options: Mapping[str, Any] | None = None,
    n_threads: int | None = None,
) -> np.ndarray:
    """Out-of-fold predictions of ``target`` from ``features`` by clones of ``learner``.

    Parameters
    ----------
    learner : scikit-learn estimator
        Cloned for every fold; a classifier predicts P(target = 1 | x).
    features : ndarray of shape (n, p)
    target : ndarray of shape (n,)
    folds : sequence of (train, test) index arrays
        From :func:`make_folds`; the test parts must cover the rows to predict.
    seeds : sequence of int, optional
        One seed per fold, set on the clone's ``random_state`` parameters (:func:`reseed`); ``None`` keeps the
        learner's own.
    train_mask : ndarray of bool, shape (n,), optional
        Fit only on the training rows where this is true (e.g. one treatment arm: ``t == 1``), and still predict
        every test row (an arm-specific outcome model).
    use_ray : bool
        Run each fold as a Ray task (the arrays go to the object store once).
    ray_remote_func_options : mapping, optional
        Options of the Ray tasks, e.g. ``{"num_cpus": 1}``.
    n_threads : int, optional
        Cap on BLAS / OpenMP threads during the fits (``threadpoolctl``): on a shared machine, unbounded OpenMP
        threads of small fits cost several times their CPU time in waiting. ``None``: no cap.

    Returns
    -------
    ndarray of shape (n,)
        NaN for rows in no test fold.

    Raises
    ------
    ValueError
        When a fold has no training row inside ``train_mask``.
    """
    n = len(target)
    jobs = []
    for k, (train, test) in enumerate(folds):
        if train_mask is not None:
            train = train[np.asarray(train_mask, dtype=bool)[train]]
            if len(train) == 0:
                raise ValueError("a cross-fitting fold has no training rows in the selected arm")
        jobs.append((train, test, None if seeds is None else int(seeds[k])))
    if use_ray:
        import ray

        remote = ray.remote(fit_predict_fold).options(**dict(ray_remote_func_options or {}))
        refs = [ray.put(a) for a in (features, target)]
        outputs = ray.get([remote.remote(learner, *refs, *job) for job in jobs])
    elif n_threads is not None:
        with threadpool_limits(limits=int(n_threads)):
            outputs = [fit_predict_fold(learner, features, target, *job) for job in jobs]
    else:
        outputs = [fit_predict_fold(learner, features, target, *job) for job in jobs]
    pred = np.full(n, np.nan)
    for (_, test, _), out in zip(jobs, outputs):
        pred[test] = out
    return pred


def cross_predict_arms(
    learner: Any,
    features: np.ndarray,
    t: np.ndarray,
    target: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    seeds: Sequence[int] | None = None,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold E[target | T=1, x] and E[target | T=0, x] from one model of (x, T) per fold (EconML's
    DRLearner style: both arms share the learner's structure), each of shape (n,).

    Parameters are those of :func:`cross_predict`; ``t`` is the 0/1 treatment, appended as the last feature.
    """
    n = len(target)
    design = np.column_stack([features, np.asarray(t, dtype=features.dtype)])
    mu1, mu0 = np.full(n, np.nan), np.full(n, np.nan)
    with threadpool_limits(limits=int(n_threads)) if n_threads is not None else _no_limit():
        for k, (train, test) in enumerate(folds):
            model = clone(learner)
            if seeds is not None:
                reseed(model, int(seeds[k]))
            model.fit(design[train], target[train])
            for arm, out in ((1, mu1), (0, mu0)):
                at = design[test].copy()
                at[:, -1] = arm
                out[test] = predict_target(model, at)
    return mu1, mu0


class _no_limit:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
