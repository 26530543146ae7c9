"""How :class:`causal.nuisance.CrossFitNuisance` chooses its learners: each candidate cross-fitted on the same
folds, the one with the lowest out-of-fold loss kept (log loss for the propensity; for the outcome, squared error on
each unit's own arm, optionally inverse-propensity weighted per arm), or a stack of them (:mod:`causal.stacking`).

:class:`LearnerChoice` is a mixin of ``CrossFitNuisance``: it reads the estimator's parameters (``stack``,
``outcome_mode``, ``outcome_loss``, ``select_max_rows``, ...) and uses its ``_folds``, ``_predict_role`` and
``_outcome_weights``; it sets ``selection_`` and ``chosen_``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from causal import learners, stacking
from causal.crossfit import make_folds
from causal.xgb import derive_seed

log = logging.getLogger(__name__)
ARMS_SUFFIX = "/arms"  # outcome candidate fitted per treatment arm (outcome_mode="auto")

OUTCOME_MODES = ("pooled", "arms", "auto")
STACKABLE = ("propensity", "outcome")  # values of ``stack``
# Outcome-choice losses (``outcome_loss``) and how results.json names them.
OUTCOME_METRICS = {"own_arm": "mse (own arm)", "weighted": "mse per arm, inverse-propensity weighted, summed"}
# Propensity bounds of those weights: units beyond it weigh at most 100 times an average unit (measured with this
# bound, conf/nuisance/auto.yaml).
WEIGHT_CLIP = 0.01


def _is_constant(name: str) -> bool:
    return name.removesuffix(ARMS_SUFFIX) == "constant"


class LearnerChoice:
    """Learner choice by out-of-fold loss (a mixin of :class:`causal.nuisance.CrossFitNuisance`)."""

    def _mode(self, name: str) -> str:
        """Outcome structure of a candidate name: ``NAME/arms`` per arm under ``outcome_mode="auto"``."""
        if self.outcome_mode == "auto":
            return "arms" if name.endswith(ARMS_SUFFIX) else "pooled"
        return self.outcome_mode  # checked by _check when fit starts

    def _names(self, role: str) -> list[str]:
        names = list(self.learners_[role])
        if role == "outcome" and self.outcome_mode == "auto":
            return names + [name + ARMS_SUFFIX for name in names]
        return names

    def _select(
        self, features: np.ndarray, t: np.ndarray, y: np.ndarray, groups: np.ndarray | None
    ) -> tuple[np.ndarray, dict[str, Any]] | None:
        """Choose each nuisance's learner; when chosen on all rows, returns the first repeat's predictions: e and
        ``{outcome member: (mu1, mu0)}`` (the chosen learner alone, or the stack's members)."""
        n = len(t)
        rows = np.arange(n)
        if n > self.select_max_rows and any(len(v) > 1 for v in self.learners_.values()):
            rows, _ = train_test_split(
                rows,
                train_size=int(self.select_max_rows),
                stratify=t,
                random_state=derive_seed(self.random_state, "select_subsample"),
            )
            rows = np.sort(rows)
        full = len(rows) == n
        f, tt, yy = features[rows], t[rows], y[rows]
        g = None if groups is None else np.asarray(groups)[rows]
        folds = (
            self._folds(len(rows), tt, g, 0)
            if full
            else make_folds(
                len(rows), n_folds=self.n_folds, seed=derive_seed(self.random_state, "select"), stratify=tt, groups=g
            )
        )
        losses = {"propensity": lambda e: learners.log_loss(tt, e)}
        chosen: dict[str, Any] = {}
        self.selection_ = {}
        for role in ("propensity", "outcome"):
            if role == "outcome":
                losses[role] = self._outcome_loss(tt, yy, chosen["propensity"])
            names = self._names(role)
            name, preds, role_losses = learners.choose(
                names,
                lambda nm, role=role: self._predict_role(role, nm, f, tt, yy, folds, "r0"),
                losses[role],
                role=role,
            )
            self.selection_[role] = {
                "chosen": name,
                "losses": role_losses,
                "metric": "log_loss" if role == "propensity" else OUTCOME_METRICS[self.outcome_loss],
                "n_rows": int(len(rows)),
            }
            if role in self.stack and full and len([nm for nm in names if not _is_constant(nm)]) > 1:
                if role == "propensity":
                    name, preds = self._stack_propensity(preds, tt)
                else:
                    name, preds = self._stack_outcome(preds, tt, yy, chosen["propensity"], losses[role])
            chosen[role] = preds[name]
        self.chosen_ = {role: sel["chosen"] for role, sel in self.selection_.items()}
        if not full:
            return None
        return chosen["propensity"], {m: preds[m] for m in self._outcome_weights()}  # preds: the outcome's

    def _outcome_loss(self, t: np.ndarray, y: np.ndarray, e: np.ndarray) -> Callable[[Any], float]:
        """Out-of-fold loss of an outcome candidate's (mu1, mu0): squared error on each unit's own arm, either
        pooled over units (``own_arm``) or, per arm, weighted by the inverse of the chosen propensity and summed
        (``weighted``): an estimate of the population MSE of mu1 plus that of mu0, what the ATE needs where the
        arms' covariates differ."""
        if self.outcome_loss == "own_arm":
            return lambda mu: float(np.mean((y - np.where(t == 1, mu[0], mu[1])) ** 2))
        w = self._unit_weights(t, e)

        def loss(mu: Any) -> float:
            sq = (y - np.where(t == 1, mu[0], mu[1])) ** 2
            return float(sum(np.average(sq[t == arm], weights=w[t == arm]) for arm in (1, 0)))

        return loss

    def _unit_weights(self, t: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Per-unit weights of the outcome loss: 1 (``own_arm``) or the inverse of the clipped propensity of the
        unit's arm, normalised to sum to one within each arm (``weighted``: the arms count equally, as in the loss)."""
        if self.outcome_loss == "own_arm":
            return np.ones(len(t))
        e = np.clip(e, WEIGHT_CLIP, 1 - WEIGHT_CLIP)
        w = np.where(t == 1, 1 / e, 1 / (1 - e))
        return np.where(t == 1, w / w[t == 1].sum(), w / w[t == 0].sum())

    def _stack_propensity(self, preds: dict[str, np.ndarray], t: np.ndarray) -> tuple[str, dict[str, np.ndarray]]:
        """``"stack"`` and its predictions added when two or more candidates get weight on the logit scale
        (:func:`causal.stacking.stack_propensity`), else the single best."""
        sel = self.selection_["propensity"]
        stack = stacking.stack_propensity(preds, t)
        if stack is None:
            return sel["chosen"], preds
        used, intercept, stacked = stack
        sel["losses"]["stack"] = learners.log_loss(t, stacked)
        sel.update(chosen="stack", best_single=sel["chosen"], weights=used, intercept=intercept)
        log.info("propensity: stack of %s (out-of-fold log loss %.5g)", used, sel["losses"]["stack"])
        return "stack", {**preds, "stack": stacked}

    def _stack_outcome(
        self, preds: dict[str, Any], t: np.ndarray, y: np.ndarray, e: np.ndarray, loss: Callable[[Any], float]
    ) -> tuple[str, dict[str, Any]]:
        """``"stack"`` and its (mu1, mu0) added when two or more candidates get weight under the choice's own
        weighting (:func:`causal.stacking.stack_outcome`) and the stack's loss beats the best single candidate's."""
        sel = self.selection_["outcome"]
        members = {nm: mu for nm, mu in preds.items() if not _is_constant(nm)}
        stack = stacking.stack_outcome(members, t, y, self._unit_weights(t, e))
        if stack is None:
            return sel["chosen"], preds
        used, stacked = stack
        sel["losses"]["stack"] = float(loss(stacked))
        if sel["losses"]["stack"] >= sel["losses"][sel["chosen"]]:  # dropping small weights can cost that much
            return sel["chosen"], preds
        sel.update(chosen="stack", best_single=sel["chosen"], weights=used)
        log.info("outcome: stack of %s (out-of-fold loss %.5g)", used, sel["losses"]["stack"])
        return "stack", {**preds, "stack": stacked}
