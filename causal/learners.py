"""Candidate nuisance learners and the choice among them by out-of-fold loss.

A learner is any scikit-learn estimator: a built-in family named in config (``nuisance.candidates``) or an injected
one (``nuisance.model_t`` / ``nuisance.model_y`` with a ``_target_``, EconML's ``model_t`` / ``model_y`` style).
:func:`choose` cross-fits every candidate on the same folds and keeps the one with the lowest out-of-fold loss (log
loss for the propensity, squared error for the outcome); ``constant`` (intercept only) is always a candidate, so a
learner is chosen only when it beats it.

Built-in families (each with its own internal tuning, cheap enough to cross-fit several of them):

* ``constant`` -- prior probability / mean (the baseline to beat);
* ``linear`` -- standardised inputs, then ``LogisticRegressionCV`` (L2, log-loss CV) or ``RidgeCV``; above
  ``PENALTY_MAX_ROWS`` rows the penalty is chosen on a seeded subsample of that size and the model refitted with it
  on all rows (:class:`PenaltyOnSubsample`);
* ``spline`` -- standardised inputs, cubic B-splines per column (5 knots), then the same regularised fit;
* ``kernel`` -- standardised inputs, 300 Nystroem features of a Gaussian kernel (gamma = 1/p), then the same
  regularised fit, on at most 50,000 rows (:mod:`causal.kernel`): smooth interactions that trees and per-column
  splines approximate poorly;
* ``random_forest`` -- 100 trees, leaves of >= 5 units (10 for the propensity), at most 20,000 rows per tree;
* ``hist_gradient_boosting`` -- scikit-learn's histogram boosting with early stopping on a validation split;
* ``xgboost`` -- XGBoost with the ``nuisance.classifier`` / ``nuisance.regressor`` parameters (tuned by the grid
  when ``nuisance.tune`` is true);
* ``linear_boosting`` -- outcome models only (:data:`OUTCOME_ONLY`): the ``linear`` ridge fit plus histogram boosting
  of its residuals (:class:`LinearPlusBoosting`), a model that extrapolates along a linear trend where trees go flat.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.linalg import LinAlgWarning
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, Ridge, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import SplineTransformer, StandardScaler

from causal.crossfit import subsample_rows
from causal.kernel import make_kernel

log = logging.getLogger(__name__)

FAMILIES = (
    "constant",
    "linear",
    "spline",
    "kernel",
    "random_forest",
    "hist_gradient_boosting",
    "xgboost",
    "linear_boosting",
)
# Families with no classifier form: the propensity's candidates skip them.
OUTCOME_ONLY = ("linear_boosting",)
# Rows per tree of the random forest: time and memory stay flat as the data grow.
FOREST_MAX_ROWS = 20_000
_RIDGE_ALPHAS = np.logspace(-3, 4, 15)
# Rows on which the linear and spline families choose their penalty. Above it, RidgeCV's decomposition of the whole
# design and LogisticRegressionCV's inner folds cost memory and time that buy nothing: on the 1M-row chain the
# spline outcome model's cross-fit peaked at 3.7 GB (scripts/bench_causal.py, README).
PENALTY_MAX_ROWS = 50_000
# scikit-learn >= 1.8 warns unless these are explicit (same fit: L2 only, fitted attributes of the new layout).
_LOGIT_OPTIONS = (
    {"l1_ratios": (0.0,), "use_legacy_attributes": False}
    if "use_legacy_attributes" in LogisticRegressionCV().get_params()
    else {}
)


def _linear(kind: str, seed: int, n_jobs: int, splines: bool) -> Any:
    steps: list[Any] = [StandardScaler()]
    if splines:
        steps.append(SplineTransformer(n_knots=5, degree=3, extrapolation="constant"))
    return make_pipeline(*steps, _penalised(kind, seed))


def _penalised(kind: str, seed: int) -> PenaltyOnSubsample:
    """The L2-penalised final fit of the linear, spline and kernel families."""
    if kind == "classifier":
        # The logit's slope is penalised, the intercept is not; the L2 strength is chosen by 3-fold log loss.
        search = LogisticRegressionCV(
            Cs=6, cv=3, scoring="neg_log_loss", max_iter=500, tol=1e-3, random_state=seed, **_LOGIT_OPTIONS
        )
        return PenaltyOnSubsample(search, random_state=seed)
    return PenaltyOnSubsample(RidgeCV(alphas=_RIDGE_ALPHAS), random_state=seed)


class PenaltyOnSubsample(BaseEstimator):
    """A cross-validated L2 model (``RidgeCV`` or ``LogisticRegressionCV``) whose penalty is chosen on at most
    ``max_rows`` rows, then refitted with that penalty on all rows (``Ridge`` / ``LogisticRegression``).

    Up to ``max_rows`` rows it is the cross-validated model itself, unchanged.

    Parameters
    ----------
    search : RidgeCV or LogisticRegressionCV
        The penalty search (unfitted).
    max_rows : int
        Rows the search sees; a seeded random subsample above it.
    random_state : int
        Seed of the subsample.
    """

    def __init__(self, search: Any, max_rows: int = PENALTY_MAX_ROWS, random_state: int = 0):
        self.search = search
        self.max_rows = max_rows
        self.random_state = random_state

    def fit(self, x: np.ndarray, y: np.ndarray) -> PenaltyOnSubsample:
        rows = subsample_rows(len(y), self.max_rows, self.random_state)
        if rows is None:
            self.estimator_ = clone(self.search).fit(x, y)
        else:
            chosen = clone(self.search).fit(x[rows], y[rows])
            if isinstance(chosen, RidgeCV):
                # Solved in float64 on a private copy, centred in place: on float32 designs Ridge's Cholesky path
                # took 4x the memory and 10x the time (a 400,000 x 210 spline design: +2.6 GB, 12.5 s against
                # +0.6 GB, 1.1 s).
                with warnings.catch_warnings():
                    # The B-splines of each column sum to one, so under a small penalty the Gram matrix is
                    # ill-conditioned (rcond ~1e-8 on the 1M-row chain): still positive definite, and solved in
                    # float64 to about that relative accuracy.
                    warnings.simplefilter("ignore", LinAlgWarning)
                    final = Ridge(alpha=float(chosen.alpha_), solver="cholesky", copy_X=False)
                    self.estimator_ = final.fit(np.array(x, dtype=np.float64), y)
            else:
                final = LogisticRegression(C=float(np.ravel(chosen.C_)[0]), max_iter=chosen.max_iter, tol=chosen.tol)
                self.estimator_ = final.fit(x, y)
        if hasattr(self.estimator_, "classes_"):
            self.classes_ = self.estimator_.classes_
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.estimator_.predict(x)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.estimator_.predict_proba(x)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier" if isinstance(self.search, LogisticRegressionCV) else "regressor"
        return tags


def _forest(kind: str, seed: int, n_jobs: int, n_rows: int | None) -> Any:
    cap = None if n_rows is None or n_rows <= FOREST_MAX_ROWS else FOREST_MAX_ROWS
    if kind == "classifier":
        return RandomForestClassifier(
            n_estimators=100, min_samples_leaf=10, max_samples=cap, n_jobs=n_jobs, random_state=seed
        )
    return RandomForestRegressor(
        n_estimators=100, min_samples_leaf=5, max_features=0.5, max_samples=cap, n_jobs=n_jobs, random_state=seed
    )


def _boosting(kind: str, seed: int) -> Any:
    params = {
        "max_iter": 200,
        "learning_rate": 0.1,
        "max_leaf_nodes": 15,
        "min_samples_leaf": 20,
        "early_stopping": True,
        "validation_fraction": 0.2,
        "n_iter_no_change": 10,
        "random_state": seed,
    }
    if kind == "classifier":
        return HistGradientBoostingClassifier(**params)
    return HistGradientBoostingRegressor(**params)


def _xgboost(kind: str, seed: int, n_jobs: int, params: Mapping[str, Any] | None) -> Any:
    from causal.nuisance import make_classifier, make_regressor

    factory = make_classifier if kind == "classifier" else make_regressor
    return factory(params, seed=seed, n_jobs=n_jobs)


class LinearPlusBoosting(RegressorMixin, BaseEstimator):
    """Ridge regression on standardised inputs plus histogram gradient boosting of its residuals.

    A tree model predicts a constant beyond the units it was fitted on, so where one arm's units lie outside the
    other's (no overlap) its mu1 or mu0 is flat; the ridge part carries the linear trend there, and the boosting fits
    what the line misses inside the data. On ACIC 2016 instance 2 (scripts/bench_accuracy.py) the chosen boosting
    model's mu1 was 0.95 too low on the 10% of units with no treated unit near them (the ATE 3.4 standard errors
    off); this family won the out-of-fold choice there and gave -0.017.

    Parameters
    ----------
    random_state : int
        Seed of the ridge's penalty subsample and of the boosting's validation split.

    Attributes
    ----------
    linear_ : Pipeline
        The fitted ``linear`` family model (standardise, RidgeCV).
    boosting_ : HistGradientBoostingRegressor
        Fitted to the ridge's in-sample residuals, with early stopping.
    """

    def __init__(self, random_state: int = 0):
        self.random_state = random_state

    def fit(self, x: np.ndarray, y: np.ndarray) -> LinearPlusBoosting:
        """Fit the ridge to ``y`` (shape (n,)), then the boosting to its residuals; ``x`` of shape (n, p)."""
        y = np.asarray(y, dtype=np.float64)
        self.linear_ = _linear("regressor", self.random_state, 1, splines=False).fit(x, y)
        self.boosting_ = _boosting("regressor", self.random_state).fit(x, y - self.linear_.predict(x))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """E[y | x], shape (n,)."""
        return self.linear_.predict(x) + self.boosting_.predict(x)


def make_learner(
    spec: str | Mapping[str, Any],
    *,
    kind: str,
    seed: int = 0,
    n_jobs: int = 1,
    n_rows: int | None = None,
    xgb_params: Mapping[str, Any] | None = None,
) -> Any:
    """An unfitted learner from a family name or an injected ``{_target_: ..., ...}`` spec.

    Parameters
    ----------
    spec : str or mapping
        One of :data:`FAMILIES`, or a mapping with ``_target_`` (a dotted class or function path) and its keyword
        arguments, instantiated by Hydra (e.g. ``{_target_: sklearn.linear_model.LassoCV, cv: 3}``).
    kind : {"classifier", "regressor"}
        Propensity (classifier) or outcome (regressor) model.
    seed : int
        ``random_state`` where the learner has one.
    n_jobs : int
        Threads of the learners that take them (random forest, XGBoost).
    n_rows : int, optional
        Rows the learner will be trained on (caps the forest's rows per tree).
    xgb_params : mapping, optional
        XGBoost parameters of the ``xgboost`` family.

    Returns
    -------
    scikit-learn estimator
    """
    if kind not in ("classifier", "regressor"):
        raise ValueError(f"kind must be classifier or regressor, got {kind!r}")
    if isinstance(spec, Mapping):
        if "_target_" not in spec:
            raise ValueError(f"a learner spec needs `_target_` (a class path), got keys {sorted(spec)}")
        from hydra.utils import instantiate

        return instantiate(dict(spec), _convert_="all")
    if spec in OUTCOME_ONLY and kind == "classifier":
        raise ValueError(f"learner {spec!r} models outcomes only; it has no propensity (classifier) form")
    builders: dict[str, Callable[[], Any]] = {
        "constant": lambda: DummyClassifier(strategy="prior") if kind == "classifier" else DummyRegressor(),
        "linear": lambda: _linear(kind, seed, n_jobs, splines=False),
        "spline": lambda: _linear(kind, seed, n_jobs, splines=True),
        "kernel": lambda: make_kernel(_penalised(kind, seed), seed),
        "random_forest": lambda: _forest(kind, seed, n_jobs, n_rows),
        "hist_gradient_boosting": lambda: _boosting(kind, seed),
        "xgboost": lambda: _xgboost(kind, seed, n_jobs, xgb_params),
        "linear_boosting": lambda: LinearPlusBoosting(random_state=seed),
    }
    if spec in builders:
        return builders[spec]()
    raise ValueError(f"unknown learner {spec!r}; choose from {list(FAMILIES)} or give a `_target_`")


def spec_name(spec: str | Mapping[str, Any]) -> str:
    """Short name of a learner spec: the family, or the last part of ``_target_``."""
    if isinstance(spec, Mapping):
        return str(spec.get("_target_", "custom")).rsplit(".", 1)[-1]
    return str(spec)


def log_loss(t: np.ndarray, e: np.ndarray) -> float:
    """Mean binary log loss of probabilities ``e`` (clipped to [1e-6, 1 - 1e-6]) for 0/1 labels ``t``."""
    e = np.clip(np.asarray(e, dtype=np.float64), 1e-6, 1 - 1e-6)
    t = np.asarray(t, dtype=np.float64)
    return float(-np.mean(t * np.log(e) + (1 - t) * np.log(1 - e)))


def choose(
    names: Sequence[str],
    fit_oof: Callable[[str], Any],
    loss: Callable[[Any], float],
    *,
    role: str,
) -> tuple[str, dict[str, Any], dict[str, float]]:
    """Cross-fit every candidate and keep the one with the lowest out-of-fold loss.

    Parameters
    ----------
    names : sequence of str
        Candidate names (``"constant"`` among them to serve as the baseline).
    fit_oof : callable
        ``fit_oof(name)`` -> the candidate's out-of-fold predictions (any object ``loss`` accepts).
    loss : callable
        Out-of-fold loss of a prediction object; lower is better.
    role : str
        ``"propensity"`` or ``"outcome"``, for the log.

    Returns
    -------
    chosen : str
    predictions : dict
        ``{name: out-of-fold predictions}`` of every candidate.
    losses : dict
        ``{name: loss}``.
    """
    predictions = {name: fit_oof(name) for name in names}
    losses = {name: float(loss(pred)) for name, pred in predictions.items()}
    chosen = min(losses, key=lambda name: (losses[name], list(names).index(name)))
    base = losses.get("constant")
    log.info(
        "%s learner: %s (out-of-fold loss %.5g; constant %s; candidates %s)",
        role,
        chosen,
        losses[chosen],
        "n/a" if base is None else f"{base:.5g}",
        {k: round(v, 6) for k, v in losses.items()},
    )
    if chosen == "constant" and len(names) > 1:
        log.warning("no %s learner beats the intercept-only model: the constant is used", role)
    return chosen, predictions, losses


def select_predict(
    candidates: Sequence[str | Mapping[str, Any]],
    features: np.ndarray,
    target: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    seed: int = 0,
    n_jobs: int = 1,
    xgb_params: Mapping[str, Any] | None = None,
    role: str = "regression",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Out-of-fold predictions of a continuous target by the candidate regressor with the lowest out-of-fold MSE.

    Parameters
    ----------
    candidates : sequence of str or mapping
        Learner specs (:func:`make_learner`); ``"constant"`` is added as the baseline.
    features : ndarray of shape (n, p)
    target : ndarray of shape (n,)
    folds : sequence of (train, test)
        From :func:`causal.crossfit.make_folds`.
    seed, n_jobs : int
    xgb_params : mapping, optional
        Parameters of the ``xgboost`` family.
    role : str
        Name for the log.

    Returns
    -------
    predictions : ndarray of shape (n,)
    record : dict
        ``chosen``, ``losses`` ({name: out-of-fold MSE}), ``metric``.
    """
    from causal.crossfit import cross_predict

    specs = {spec_name(s): s for s in (["constant", *candidates] if "constant" not in candidates else candidates)}
    target = np.asarray(target, dtype=np.float64)

    def fit_oof(name: str) -> np.ndarray:
        learner = make_learner(
            specs[name], kind="regressor", seed=seed, n_jobs=n_jobs, n_rows=len(target), xgb_params=xgb_params
        )
        return cross_predict(learner, features, target, folds, n_threads=n_jobs)

    chosen, preds, losses = choose(list(specs), fit_oof, lambda p: np.mean((target - p) ** 2), role=role)
    return preds[chosen], {"chosen": chosen, "losses": losses, "metric": "mse"}
