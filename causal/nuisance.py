"""Nuisance models: XGBoost factories, grid-search tuning, and the one cross-fit every causal step shares.

The propensity e(x) = P(T=1 | x) and the outcome regression m(x) = E[Y | x] are fitted once, out of fold, by
:class:`CrossFitNuisance`. The overlap diagnostics, both EconML estimators (through :class:`CachedRegressor` and
:class:`CachedClassifier`), and later the sensitivity and refutation steps read these predictions instead of
refitting their own models.

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
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, train_test_split
from xgboost import XGBClassifier, XGBRegressor

from causal.crossfit import cross_predict, make_folds

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


class CrossFitNuisance(BaseEstimator):
    """Cross-fitted propensity and outcome predictions, fitted once and shared by every causal step.

    For each of ``n_folds`` stratified folds, an XGBoost classifier of T and an XGBoost regressor of Y are fitted on
    the other folds and predict the held-out fold, so each unit's e(x) and m(x) come from models that never saw it
    (the cross-fitting of Chernozhukov et al., 2018). With ``tune=True`` the parameters are first chosen by
    :func:`tune` on a subsample.

    Parameters
    ----------
    classifier_params, regressor_params : mapping, optional
        Fixed XGBoost parameters (``nuisance.classifier``, ``nuisance.regressor``); the tuned values override them.
    classifier_grid, regressor_grid : mapping, optional
        Grids searched when ``tune`` is true (``nuisance.grid.classifier``, ``nuisance.grid.regressor``).
    tune : bool
        Whether to run the grid search before cross-fitting.
    n_folds : int
        Cross-fitting folds (``nuisance.folds``).
    tune_folds : int
        CV folds of the grid search.
    tune_max_rows : int or None
        Rows the grid search may use (a seeded subsample above that).
    n_jobs : int
        XGBoost threads per model.
    random_state : int
        The run's seed; children are derived per model, fold split and subsample.
    use_ray : bool
        Run each cross-fitting fold as a Ray task and the grid search's fits through Ray's joblib backend (needs
        ``pip install creative-insights[ray]``; joins the running Ray instance or starts a local one). The numbers
        are the same as without Ray: every fit is seeded the same way wherever it runs.
    ray_remote_func_options : mapping, optional
        Options of the fold tasks, e.g. ``{"num_cpus": 1}``.

    Attributes
    ----------
    folds_ : list of (ndarray, ndarray)
        (train, test) row indices of each cross-fitting fold; the test parts partition ``range(n)``.
    propensity_ : ndarray of shape (n,)
        Out-of-fold P(T=1 | x), raw (not clipped).
    outcome_ : ndarray of shape (n,)
        Out-of-fold E[Y | x], in the outcome's units.
    classifier_params_, regressor_params_ : dict
        Parameters used for the cross-fit (fixed merged with tuned).
    tuning_ : dict
        ``{"classifier": ..., "regressor": ...}`` results of :func:`tune`, or empty when not tuned.
    scores_ : dict
        Out-of-fold quality: ``propensity_log_loss``, ``propensity_auc``, ``outcome_r2``, ``outcome_rmse``.
    seconds_ : dict
        Wall time of ``tune`` and ``crossfit``.
    """

    def __init__(
        self,
        *,
        classifier_params: Mapping[str, Any] | None = None,
        regressor_params: Mapping[str, Any] | None = None,
        classifier_grid: Mapping[str, Sequence[Any]] | None = None,
        regressor_grid: Mapping[str, Sequence[Any]] | None = None,
        tune: bool = False,
        n_folds: int = 5,
        tune_folds: int = 3,
        tune_max_rows: int | None = 50_000,
        n_jobs: int = 1,
        random_state: int = 0,
        use_ray: bool = False,
        ray_remote_func_options: Mapping[str, Any] | None = None,
    ):
        self.classifier_params = classifier_params
        self.regressor_params = regressor_params
        self.classifier_grid = classifier_grid
        self.regressor_grid = regressor_grid
        self.tune = tune
        self.n_folds = n_folds
        self.tune_folds = tune_folds
        self.tune_max_rows = tune_max_rows
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.use_ray = use_ray
        self.ray_remote_func_options = ray_remote_func_options

    def fit(self, features: np.ndarray | pd.DataFrame, t: np.ndarray, y: np.ndarray) -> CrossFitNuisance:
        """Tune (optionally) and cross-fit both nuisance models.

        Parameters
        ----------
        features : array-like of shape (n, p)
            Everything the nuisances condition on: confounders W and effect modifiers X.
        t : ndarray of shape (n,)
            Binary treatment, 0/1.
        y : ndarray of shape (n,)
            Outcome.

        Returns
        -------
        self
        """
        features = np.asarray(features, dtype=np.float32)
        t = np.asarray(t).astype(np.int8).ravel()
        y = np.asarray(y, dtype=np.float64).ravel()
        n = len(t)
        if features.ndim != 2 or features.shape[0] != n or len(y) != n:
            raise ValueError(f"features {features.shape}, t ({n},), y ({len(y)},): row counts differ")
        if not np.isin(t, (0, 1)).all():
            raise ValueError("treatment must be binary 0/1 for the propensity model")
        counts = np.bincount(t, minlength=2)
        if counts.min() < self.n_folds:
            raise ValueError(
                f"nuisance.folds={self.n_folds} needs at least that many units per arm; arms have {counts.tolist()}"
            )
        seed = self.random_state
        self.classifier_params_ = _check_params(self.classifier_params, "nuisance.classifier")
        self.regressor_params_ = _check_params(self.regressor_params, "nuisance.regressor")
        self.tuning_ = {}
        start = time.perf_counter()
        if self.tune:
            for role, target, grid, params, factory in (
                ("classifier", t, self.classifier_grid, self.classifier_params_, make_classifier),
                ("regressor", y, self.regressor_grid, self.regressor_params_, make_regressor),
            ):
                if not grid:
                    continue
                base = factory(params, seed=derive_seed(seed, f"tune_{role}"), n_jobs=self.n_jobs)
                result = tune(
                    base,
                    grid,
                    features,
                    target,
                    n_folds=self.tune_folds,
                    max_rows=self.tune_max_rows,
                    seed=derive_seed(seed, f"tune_{role}"),
                    key=f"nuisance.grid.{role}",
                    use_ray=self.use_ray,
                )
                params.update(result["best_params"])
                self.tuning_[role] = result
        tuned = time.perf_counter()

        self.folds_ = make_folds(n, n_folds=self.n_folds, seed=derive_seed(seed, "crossfit"), stratify=t)
        ray_opts = {"use_ray": self.use_ray, "ray_remote_func_options": self.ray_remote_func_options}
        self.propensity_ = cross_predict(
            make_classifier(self.classifier_params_, n_jobs=self.n_jobs),
            features,
            t,
            self.folds_,
            seeds=[derive_seed(seed, f"propensity_{k}") for k in range(len(self.folds_))],
            **ray_opts,
        )
        self.outcome_ = cross_predict(
            make_regressor(self.regressor_params_, n_jobs=self.n_jobs),
            features,
            y,
            self.folds_,
            seeds=[derive_seed(seed, f"outcome_{k}") for k in range(len(self.folds_))],
            **ray_opts,
        )
        done = time.perf_counter()
        self.seconds_ = {"tune": tuned - start, "crossfit": done - tuned}
        self.scores_ = _oof_scores(t, y, self.propensity_, self.outcome_)
        log.info(
            "cross-fitted nuisances on %d rows x %d features, %d folds in %.1fs: %s",
            n,
            features.shape[1],
            self.n_folds,
            done - tuned,
            self.scores_,
        )
        return self

    def summary(self) -> dict[str, Any]:
        """JSON-ready description: parameters used, tuning results (without the per-candidate table), scores."""
        tuning = {
            role: {k: v for k, v in res.items() if k not in ("candidates", "seconds")}
            for role, res in self.tuning_.items()
        }
        return {
            "folds": self.n_folds,
            "tuned": bool(self.tune),
            "tune_max_rows": self.tune_max_rows,
            "classifier_params": dict(self.classifier_params_),
            "regressor_params": dict(self.regressor_params_),
            "tuning": tuning,
            "scores": dict(self.scores_),
        }


def _oof_scores(t: np.ndarray, y: np.ndarray, e: np.ndarray, m: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import log_loss, roc_auc_score

    resid = y - m
    return {
        "propensity_log_loss": float(log_loss(t, np.clip(e, 1e-12, 1 - 1e-12), labels=[0, 1])),
        "propensity_auc": float(roc_auc_score(t, e)),
        "outcome_r2": float(1.0 - resid.var() / y.var()) if y.var() > 0 else float("nan"),
        "outcome_rmse": float(np.sqrt(np.mean(resid**2))),
    }


def from_config(cfg: Mapping[str, Any], *, seed: int) -> CrossFitNuisance:
    """Build a :class:`CrossFitNuisance` from the ``nuisance`` config group.

    Parameters
    ----------
    cfg : mapping
        ``nuisance`` node: ``folds``, ``n_jobs``, ``classifier``, ``regressor``, for tuning ``tune`` (bool),
        ``tune_folds``, ``tune_max_rows`` and ``grid.classifier`` / ``grid.regressor``, and ``use_ray``,
        ``ray_remote_func_options``.
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
    }
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(f"config group nuisance: unknown key(s) {unknown}; allowed {sorted(allowed)}")
    grid = dict(cfg.get("grid") or {})
    unknown = sorted(set(grid) - {"classifier", "regressor"})
    if unknown:
        raise ValueError(f"config key nuisance.grid: unknown key(s) {unknown}; use classifier / regressor")
    return CrossFitNuisance(
        classifier_params=_plain(cfg.get("classifier")),
        regressor_params=_plain(cfg.get("regressor")),
        classifier_grid=_plain(grid.get("classifier")),
        regressor_grid=_plain(grid.get("regressor")),
        tune=bool(cfg.get("tune", False)),
        n_folds=int(cfg.get("folds", 5)),
        tune_folds=int(cfg.get("tune_folds", 3)),
        tune_max_rows=None if cfg.get("tune_max_rows") is None else int(cfg["tune_max_rows"]),
        n_jobs=int(cfg.get("n_jobs", 1)),
        random_state=int(seed),
        use_ray=bool(cfg.get("use_ray", False)),
        ray_remote_func_options=_plain(cfg.get("ray_remote_func_options")),
    )


def _plain(node: Any) -> Any:
    """OmegaConf containers -> plain dict / list, without importing omegaconf here."""
    if node is None:
        return None
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)) or type(node).__name__ == "ListConfig":
        return [_plain(v) for v in node]
    return node


class CachedRegressor(RegressorMixin, BaseEstimator):
    """Hands precomputed out-of-fold outcome predictions to EconML as ``model_y``.

    Used with ``cv=1`` (EconML's "no cross-fitting" path): ``_crossfit`` then fits this model once on all rows
    in their original order and predicts those same rows, so EconML's residuals ``Y - m(x)`` are exactly the
    cached cross-fitted ones and no nuisance model is refitted. ``fit`` checks the target it is given equals the
    one the predictions were made for, so rows cannot be misaligned silently.

    Parameters
    ----------
    predictions : ndarray of shape (n,)
        Out-of-fold E[Y | x].
    target : ndarray of shape (n,)
        The outcome the predictions belong to.
    """

    def __init__(self, predictions: np.ndarray, target: np.ndarray):
        self.predictions = predictions
        self.target = target

    def fit(self, X: np.ndarray, y: np.ndarray, **_: Any) -> CachedRegressor:
        y = np.asarray(y, dtype=np.float64).ravel()
        if len(y) != len(self.target) or not np.array_equal(y, np.asarray(self.target, dtype=np.float64).ravel()):
            raise ValueError(
                "CachedRegressor: EconML passed a different outcome than the cached predictions belong to; "
                "it must be fitted with cv=1 on the same rows in the same order"
            )
        self.n_features_in_ = np.shape(X)[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if np.shape(X)[0] != len(self.predictions):
            raise ValueError(
                f"CachedRegressor holds {len(self.predictions)} cached predictions and cannot predict "
                f"{np.shape(X)[0]} new rows"
            )
        return np.asarray(self.predictions, dtype=np.float64)


class CachedClassifier(ClassifierMixin, BaseEstimator):
    """Hands precomputed out-of-fold propensities to EconML as ``model_t`` (binary treatment, ``cv=1``).

    Parameters
    ----------
    propensity : ndarray of shape (n,)
        Out-of-fold P(T=1 | x).
    target : ndarray of shape (n,)
        The 0/1 treatment the propensities belong to.
    """

    def __init__(self, propensity: np.ndarray, target: np.ndarray):
        self.propensity = propensity
        self.target = target

    def fit(self, X: np.ndarray, y: np.ndarray, **_: Any) -> CachedClassifier:
        y = np.asarray(y).ravel()
        if len(y) != len(self.target) or not np.array_equal(
            y.astype(np.int64), np.asarray(self.target).astype(np.int64)
        ):
            raise ValueError(
                "CachedClassifier: EconML passed a different treatment than the cached propensities belong to; "
                "it must be fitted with cv=1 on the same rows in the same order"
            )
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = np.shape(X)[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if np.shape(X)[0] != len(self.propensity):
            raise ValueError(
                f"CachedClassifier holds {len(self.propensity)} cached propensities and cannot predict "
                f"{np.shape(X)[0]} new rows"
            )
        e = np.asarray(self.propensity, dtype=np.float64)
        return np.column_stack([1.0 - e, e])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)
