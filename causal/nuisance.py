"""The one set of nuisance predictions every causal step shares: propensity and per-arm outcome models.

:class:`CrossFitNuisance` fits, out of fold (:mod:`causal.crossfit`), the propensity e(x) = P(T=1 | x) and the
outcome of each treatment arm, mu1(x) = E[Y | T=1, x] and mu0(x) = E[Y | T=0, x], for the AIPW score: by default
from one model of (x, T) predicted at T = 1 and T = 0 (EconML's DRLearner; the arms share the learner's
structure), from one model per arm (``outcome_mode="arms"``, DoubleML's IRM), or, under ``nuisance=auto``
(``outcome_mode="auto"``), whichever of the two has the lower out-of-fold loss. E[Y | x] = e mu1 + (1 - e) mu0
follows from them. Each model is chosen among candidate learners by out-of-fold loss (:mod:`causal.learners`),
and the cross-fit can be repeated over independent fold splits (``repeats``; DoubleML's ``n_rep``). The overlap
diagnostics, the AIPW estimands, both EconML estimators (through :class:`CachedRegressor` and
:class:`CachedClassifier`) and the sensitivity step read these predictions instead of refitting their own models.

XGBoost factories, the grid search and :func:`derive_seed` live in :mod:`causal.xgb`, the EconML adapters
:class:`CachedRegressor` / :class:`CachedClassifier` in :mod:`causal.cached`; both are re-exported here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from causal import learners, stacking
from causal.cached import CachedClassifier, CachedRegressor
from causal.crossfit import cross_predict, cross_predict_arms, make_folds
from causal.selection import ARMS_SUFFIX, OUTCOME_METRICS, OUTCOME_MODES, STACKABLE, LearnerChoice
from causal.xgb import _RESERVED, _XGB_KEYS, _check_params, derive_seed, make_classifier, make_regressor, tune

__all__ = [
    "_RESERVED",
    "_XGB_KEYS",
    "OUTCOME_METRICS",
    "OUTCOME_MODES",
    "STACKABLE",
    "CachedClassifier",
    "CachedRegressor",
    "CrossFitNuisance",
    "derive_seed",
    "from_config",
    "make_classifier",
    "make_regressor",
    "tune",
]

log = logging.getLogger(__name__)


class CrossFitNuisance(LearnerChoice, BaseEstimator):
    """Cross-fitted propensity and per-arm outcome predictions, chosen among candidate learners, optionally repeated.

    For each of ``n_folds`` folds (stratified by treatment, or by cluster with ``groups``) the propensity learner is
    fitted on the other folds and predicts the held-out fold, and so are the outcome learner on the treated and on
    the control units of the other folds (mu1, mu0), so every unit's predictions come from models that never saw it
    (Chernozhukov et al., 2018). With several candidates, each is cross-fitted and the one with the lowest
    out-of-fold loss is used (on a subsample of ``select_max_rows`` rows when the data are larger, then cross-fitted
    on all rows). With ``repeats > 1`` the cross-fit is repeated on independent fold splits with the chosen
    learners; the ``*_repeats_`` arrays hold each repeat, the plain attributes their mean.

    Parameters
    ----------
    candidates : sequence of str or mapping, optional
        Learner specs (:func:`causal.learners.make_learner`) tried for both nuisances; default ``["xgboost"]``.
        ``"constant"`` is added when there is more than one candidate.
    model_t, model_y : str or mapping, optional
        One learner for the propensity / the outcome (e.g. ``{_target_: sklearn.linear_model.LassoCV}``); replaces
        ``candidates`` for that nuisance.
    classifier_params, regressor_params : mapping, optional
        XGBoost parameters of the ``xgboost`` family; tuned values override them.
    classifier_grid, regressor_grid : mapping, optional
        Grids searched when ``tune`` is true.
    tune : bool
        Grid-search the XGBoost parameters (:func:`causal.xgb.tune`) first.
    n_folds : int
        Cross-fitting folds.
    repeats : int
        Independent fold splits; estimates are aggregated by their median (:func:`causal.estimands.aggregate`).
    repeats_max_rows : int, optional
        Above this many rows one cross-fit only: the fold split's noise shrinks with n while a repeat's cost grows
        with it. ``None``: no limit.
    select_max_rows : int
        Learner choice on all rows up to this size (reusing the chosen learner's out-of-fold predictions), on a
        seeded stratified subsample above it.
    tune_folds, tune_max_rows : int
        Folds and rows of the XGBoost grid search.
    n_jobs : int
        Threads per model.
    random_state : int
        The run's seed; children are derived per model, fold split and subsample.
    use_ray : bool
        Run the folds (and the grid search's fits) as Ray tasks; same numbers.
    outcome_mode : {"arms", "pooled", "auto"}
        ``arms``: one outcome model per treatment arm (DoubleML's IRM); ``pooled``: one model of (x, T) predicted
        at T = 1 and T = 0 (EconML's DRLearner), which shares structure between the arms; ``auto``: both are
        candidates (``NAME`` pooled, ``NAME/arms`` per arm) and the out-of-fold loss chooses, like the learner.
    ray_remote_func_options : mapping, optional
        Options of the fold tasks, e.g. ``{"num_cpus": 1}``.
    stack : sequence of str
        Nuisances (``"propensity"``, ``"outcome"``) whose candidates are combined instead of picking one, with
        weights fitted to the out-of-fold predictions: on the logit scale for the propensity
        (:class:`causal.stacking.LogitStack`), a convex combination under the outcome loss for the outcome
        (:mod:`causal.stacking`). Used when the choice is made on all rows (at most ``select_max_rows``); above,
        the single best candidate.

    Attributes
    ----------
    folds_ : list of (ndarray, ndarray)
        Folds of the first repeat; the test parts partition ``range(n)``.
    propensity_ : ndarray of shape (n,)
        Out-of-fold P(T=1 | x), raw (not clipped), mean over repeats.
    outcome_treated_, outcome_control_ : ndarray of shape (n,)
        Out-of-fold mu1(x), mu0(x).
    outcome_ : ndarray of shape (n,)
        E[Y | x] = e mu1 + (1 - e) mu0.
    propensity_repeats_, outcome_treated_repeats_, outcome_control_repeats_ : ndarray of shape (repeats, n)
    outcome_members_ : dict
        With a stacked outcome, ``{member: (weight, mu1, mu0)}`` (arrays of shape (repeats, n)) whose weighted sums
        are the outcome arrays above, for the model-averaged standard error (:func:`causal.estimands.aipw`);
        empty for a single learner.
    selection_ : dict
        ``{"propensity": ..., "outcome": ...}``: ``chosen`` (a candidate, or ``"stack"``), ``losses`` (out-of-fold,
        per candidate), ``metric``, ``n_rows``, and for a stack its ``weights`` ({candidate: weight}),
        ``best_single`` and (propensity) ``intercept``.
    classifier_params_, regressor_params_ : dict
        XGBoost parameters (fixed merged with tuned).
    tuning_ : dict
        Grid-search results, or empty.
    scores_ : dict
        Out-of-fold quality: ``propensity_log_loss``, ``propensity_auc``, ``outcome_r2``, ``outcome_rmse``.
    seconds_ : dict
        Wall time of ``tune``, ``select`` and ``crossfit``.
    """

    def __init__(
        self,
        *,
        candidates: Sequence[str | Mapping[str, Any]] | None = None,
        model_t: str | Mapping[str, Any] | None = None,
        model_y: str | Mapping[str, Any] | None = None,
        classifier_params: Mapping[str, Any] | None = None,
        regressor_params: Mapping[str, Any] | None = None,
        classifier_grid: Mapping[str, Sequence[Any]] | None = None,
        regressor_grid: Mapping[str, Sequence[Any]] | None = None,
        tune: bool = False,
        n_folds: int = 5,
        repeats: int = 1,
        repeats_max_rows: int | None = None,
        select_max_rows: int = 10_000,
        tune_folds: int = 3,
        tune_max_rows: int | None = 50_000,
        n_jobs: int = 1,
        random_state: int = 0,
        use_ray: bool = False,
        ray_remote_func_options: Mapping[str, Any] | None = None,
        outcome_mode: str = "pooled",
        outcome_loss: str = "own_arm",
        stack: Sequence[str] = (),
    ):
        self.outcome_mode = outcome_mode
        self.outcome_loss = outcome_loss
        self.stack = stack
        self.candidates = candidates
        self.model_t = model_t
        self.model_y = model_y
        self.classifier_params = classifier_params
        self.regressor_params = regressor_params
        self.classifier_grid = classifier_grid
        self.regressor_grid = regressor_grid
        self.tune = tune
        self.n_folds = n_folds
        self.repeats = repeats
        self.repeats_max_rows = repeats_max_rows
        self.select_max_rows = select_max_rows
        self.tune_folds = tune_folds
        self.tune_max_rows = tune_max_rows
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.use_ray = use_ray
        self.ray_remote_func_options = ray_remote_func_options

    def fit(
        self, features: np.ndarray | pd.DataFrame, t: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None
    ) -> CrossFitNuisance:
        """Tune (optionally), choose the learners and cross-fit the propensity and both arms' outcome models.

        Parameters
        ----------
        features : array-like of shape (n, p)
            Everything the nuisances condition on: confounders W and effect modifiers X.
        t : ndarray of shape (n,)
            Binary treatment, 0/1.
        y : ndarray of shape (n,)
            Outcome.
        groups : ndarray of shape (n,), optional
            Cluster labels: folds keep clusters together.

        Returns
        -------
        self
        """
        features, t, y = self._check(features, t, y)
        n = len(t)
        start = time.perf_counter()
        self._tune_xgb(features, t, y)
        tuned = time.perf_counter()
        specs = self._specs()
        self.learners_ = {role: {learners.spec_name(s): s for s in role_specs} for role, role_specs in specs.items()}
        self.groups_ = groups
        first = self._select(features, t, y, groups)
        selected = time.perf_counter()
        e_all, parts_all = [], []
        for r in range(self._n_repeats(n)):
            folds = self._folds(n, t, groups, r)
            if r == 0:
                self.folds_ = folds
            e, parts = first if (r == 0 and first is not None) else self._crossfit(features, t, y, folds, r)
            e_all.append(e)
            parts_all.append(parts)
        self._store_outcomes(parts_all)
        self.propensity_repeats_ = np.vstack(e_all)
        self.propensity_ = self.propensity_repeats_.mean(axis=0)
        self.outcome_treated_ = self.outcome_treated_repeats_.mean(axis=0)
        self.outcome_control_ = self.outcome_control_repeats_.mean(axis=0)
        self.outcome_ = self.propensity_ * self.outcome_treated_ + (1 - self.propensity_) * self.outcome_control_
        done = time.perf_counter()
        self.seconds_ = {"tune": tuned - start, "select": selected - tuned, "crossfit": done - selected}
        self.scores_ = _oof_scores(t, y, self.propensity_, self.outcome_)
        self.scores_["outcome_arm_rmse"] = float(
            np.sqrt(np.mean((y - np.where(t == 1, self.outcome_treated_, self.outcome_control_)) ** 2))
        )
        log.info(
            "cross-fitted nuisances (%s / %s) on %d rows x %d features, %d folds x %d repeats in %.1fs: %s",
            self.selection_["propensity"]["chosen"],
            self.selection_["outcome"]["chosen"],
            n,
            features.shape[1],
            self.n_folds,
            len(e_all),
            done - selected,
            self.scores_,
        )
        return self

    def _n_repeats(self, n: int) -> int:
        """Cross-fits run on n rows: ``repeats``, or 1 above ``repeats_max_rows``."""
        if self.repeats_max_rows is not None and n > self.repeats_max_rows:
            return 1
        return max(int(self.repeats), 1)

    def _check(self, features: Any, t: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        if int(self.repeats) < 1:
            raise ValueError(f"nuisance.repeats must be >= 1, got {self.repeats}")
        for key, allowed in (("outcome_mode", OUTCOME_MODES), ("outcome_loss", tuple(OUTCOME_METRICS))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"nuisance.{key} must be one of {list(allowed)}, got {getattr(self, key)!r}")
        if any(role not in STACKABLE for role in self.stack):
            raise ValueError(f"nuisance.stack entries must be in {list(STACKABLE)}, got {list(self.stack)}")
        return features, t, y

    def _specs(self) -> dict[str, list[Any]]:
        base = list(self.candidates) if self.candidates else ["xgboost"]
        if len(base) > 1 and "constant" not in base:
            base = ["constant", *base]
        return {
            "propensity": [self.model_t]
            if self.model_t is not None
            else [s for s in base if s not in learners.OUTCOME_ONLY],
            "outcome": [self.model_y] if self.model_y is not None else base,
        }

    def _tune_xgb(self, features: np.ndarray, t: np.ndarray, y: np.ndarray) -> None:
        seed = self.random_state
        self.classifier_params_ = _check_params(self.classifier_params, "nuisance.classifier")
        self.regressor_params_ = _check_params(self.regressor_params, "nuisance.regressor")
        self.tuning_ = {}
        uses_xgb = [s for role in self._specs().values() for s in role if s == "xgboost"]
        if not self.tune or not uses_xgb:
            return
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

    def learner(self, role: str, n_rows: int | None = None) -> Any:
        """The unfitted learner chosen for ``role`` (``"propensity"`` or ``"outcome"``), e.g. to refit it on
        altered data; after :meth:`fit`."""
        return self._learner(role, self.chosen_[role], n_rows)

    def _learner(self, role: str, name: str, n_rows: int | None) -> Any:
        name = name.removesuffix(ARMS_SUFFIX)
        if name == "stack":
            spec = self.selection_[role]
            members = [self._learner(role, member, n_rows) for member in spec["weights"]]
            if role == "outcome":  # a model of E[y | x] from the same members (for refits and per-arm fits)
                return stacking.MeanStack(members, list(spec["weights"].values()))
            return stacking.LogitStack(members, list(spec["weights"].values()), spec["intercept"])
        spec = self.learners_[role][name]
        kind = "classifier" if role == "propensity" else "regressor"
        params = self.classifier_params_ if kind == "classifier" else self.regressor_params_
        return learners.make_learner(
            spec,
            kind=kind,
            seed=derive_seed(self.random_state, f"{role}_{name}"),
            n_jobs=self.n_jobs,
            n_rows=n_rows,
            xgb_params=params,
        )

    @property
    def outcome_per_arm_(self) -> bool:
        """Whether the chosen outcome model was fitted per treatment arm (a T-learner's structure)."""
        return self._mode(self.chosen_["outcome"]) == "arms"

    def per_arm_outcomes(
        self, features: np.ndarray | pd.DataFrame, t: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-fold outcome predictions of one model per arm, each of shape (repeats, n): the fitted ones when
        the chosen outcome model is per arm; otherwise the chosen learner cross-fitted once per arm on the same
        folds (one model of (x, T) shares structure between the arms and shrinks mu1 - mu0 toward zero, as an
        S-learner does). Pass the arrays given to :meth:`fit`."""
        if self.outcome_per_arm_:
            return self.outcome_treated_repeats_, self.outcome_control_repeats_
        features, t, y = self._check(features, t, y)
        name = self.chosen_["outcome"]
        mu1_all, mu0_all = [], []
        for r in range(self.outcome_treated_repeats_.shape[0]):
            folds = self._folds(len(t), t, getattr(self, "groups_", None), r)
            learner = self._learner("outcome", name, len(t))
            seeds = [derive_seed(self.random_state, f"outcome_{name}/arms_r{r}_{k}") for k in range(len(folds))]
            mu1, mu0 = (
                cross_predict(learner, features, y, folds, seeds=seeds, train_mask=t == arm, n_threads=self.n_jobs)
                for arm in (1, 0)
            )
            mu1_all.append(mu1)
            mu0_all.append(mu0)
        return np.vstack(mu1_all), np.vstack(mu0_all)

    def _folds(self, n: int, t: np.ndarray, groups: np.ndarray | None, r: int) -> list[tuple[np.ndarray, np.ndarray]]:
        name = "crossfit" if r == 0 else f"crossfit_{r}"
        seed = derive_seed(self.random_state, name)
        # Clusters go to folds at random (seeded), so repeated cross-fits get different splits.
        return make_folds(n, n_folds=self.n_folds, seed=seed, stratify=t, groups=groups, shuffle_groups=True)

    def _predict_role(
        self, role: str, name: str, features: np.ndarray, t: np.ndarray, y: np.ndarray, folds: Any, tag: str
    ) -> Any:
        """Out-of-fold predictions of one candidate: e for the propensity, (mu1, mu0) for the outcome."""
        learner = self._learner(role, name, len(t))
        opts = {
            "use_ray": self.use_ray,
            "ray_remote_func_options": self.ray_remote_func_options,
            "n_threads": self.n_jobs,
        }
        seeds = [derive_seed(self.random_state, f"{role}_{name}_{tag}_{k}") for k in range(len(folds))]
        if role == "propensity":
            return cross_predict(learner, features, t, folds, seeds=seeds, **opts)
        if self._mode(name) == "pooled":
            return cross_predict_arms(learner, features, t, y, folds, seeds=seeds, n_threads=self.n_jobs)
        return tuple(
            cross_predict(learner, features, y, folds, seeds=seeds, train_mask=t == arm, **opts) for arm in (1, 0)
        )

    def _crossfit(
        self, features: np.ndarray, t: np.ndarray, y: np.ndarray, folds: Any, r: int
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """One repeat: e and {outcome member: (mu1, mu0)} (the chosen learner alone, or each stack member in its
        own structure, pooled or per arm)."""
        e = self._predict_role("propensity", self.chosen_["propensity"], features, t, y, folds, f"r{r}")
        parts = {m: self._predict_role("outcome", m, features, t, y, folds, f"r{r}") for m in self._outcome_weights()}
        return e, parts

    def outcome_members(self, rows: np.ndarray | None = None) -> dict[str, tuple] | None:
        """A stacked outcome's members ``{name: (weight, mu1, mu0)}`` (arrays of shape (repeats, n_rows)) on
        ``rows`` (a boolean mask or indices; all by default), or None for a single learner; after :meth:`fit`."""
        members = getattr(self, "outcome_members_", None)
        if not members:
            return None
        pick = slice(None) if rows is None else rows
        return {m: (w, mu1[:, pick], mu0[:, pick]) for m, (w, mu1, mu0) in members.items()}

    def _outcome_weights(self) -> dict[str, float]:
        """{member: weight} of the outcome: the stack's weights, or the chosen learner with weight 1."""
        sel = self.selection_["outcome"]
        return dict(sel["weights"]) if sel["chosen"] == "stack" else {sel["chosen"]: 1.0}

    def _store_outcomes(self, parts_all: list[dict[str, Any]]) -> None:
        """mu1 and mu0 of every repeat (the members' weighted sum), and each member's when the outcome is a stack."""
        weights = self._outcome_weights()
        members = {m: tuple(np.vstack([p[m][arm] for p in parts_all]) for arm in (0, 1)) for m in weights}
        self.outcome_treated_repeats_, self.outcome_control_repeats_ = stacking.combine(weights, members)
        self.outcome_members_ = {m: (w, *members[m]) for m, w in weights.items()} if len(weights) > 1 else {}

    def summary(self) -> dict[str, Any]:
        """JSON-ready description: learners chosen (with every candidate's loss), parameters, tuning, scores."""
        tuning = {
            role: {k: v for k, v in res.items() if k not in ("candidates", "seconds")}
            for role, res in self.tuning_.items()
        }
        return {
            "folds": self.n_folds,
            "repeats": int(self.propensity_repeats_.shape[0]),
            "learners": self.selection_,
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
    """A :class:`CrossFitNuisance` from the ``nuisance`` config node (:func:`causal.nuisance_config.from_config`)."""
    from causal.nuisance_config import from_config as build

    return build(cfg, seed=seed)
