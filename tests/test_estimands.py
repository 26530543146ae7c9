"""AIPW estimands, learner choice by out-of-fold loss, repeated cross-fitting, the cross-fitting layer's folds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from causal import estimands
from causal.crossfit import cross_predict, make_folds
from causal.dml import partially_linear
from causal.mediation import compare_methods
from causal.nuisance import CrossFitNuisance


def heterogeneous(n: int = 4000, seed: int = 0):
    """Confounded data whose effect grows with the propensity: ATE, ATT and the variance-weighted average differ."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    e = special.expit(1.2 * x[:, 0])
    t = (rng.random(n) < e).astype(int)
    tau = 1.0 + x[:, 0] ** 2 + 0.5 * x[:, 0]
    mu0 = x[:, 0] + 0.5 * x[:, 1]
    y = mu0 + t * tau + rng.normal(size=n)
    return x, t, y, e, mu0, mu0 + tau, tau


def test_aipw_with_true_nuisances_hits_ate_and_att_not_the_variance_weighted_average():
    x, t, y, e, mu0, mu1, tau = heterogeneous()
    ate, _ = estimands.aipw("ate", y, t, e, mu1, mu0)
    att, _ = estimands.aipw("att", y, t, e, mu1, mu0)
    # Tolerances from the estimates' own standard errors (3.5 SE: a false alarm about once in 2000 seeds).
    assert abs(ate["estimate"] - tau.mean()) < 3.5 * ate["stderr"]
    assert abs(att["estimate"] - tau[t == 1].mean()) < 3.5 * att["stderr"]
    assert att["n"] == t.sum() and ate["n"] == len(t) and att["population"] == "treated units"
    pl = partially_linear(y, t, e, e * mu1 + (1 - e) * mu0)
    assert abs(pl["estimate"] - tau.mean()) > 5 * ate["stderr"]  # the PL coefficient is another estimand
    assert "variance-weighted" in pl["estimand"]


def test_clipping_is_counted_and_bounded():
    e = np.array([0.0001, 0.2, 0.5, 0.9999])
    clipped, moved = estimands.clip_propensity(e, 0.01)
    assert moved == 2 and clipped.min() == 0.01 and clipped.max() == 0.99
    with pytest.raises(ValueError, match="dml.clip"):
        estimands.clip_propensity(e, 0.6)


def test_median_aggregation_adds_the_spread_over_splits():
    theta, se = estimands.aggregate(np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.1, 0.1]))
    assert theta == 2.0
    assert se == pytest.approx(np.sqrt(0.01 + 1.0))  # median of se^2 + (theta_r - 2)^2 = {1.01, 0.01, 1.01}


def test_group_aware_folds_keep_clusters_together_and_arm_masks_train_one_arm():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(60), 5)
    folds = make_folds(len(groups), n_folds=4, groups=groups)
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
    x = rng.normal(size=(300, 2))
    t = (rng.random(300) < 0.5).astype(int)
    y = np.where(t == 1, 10.0, 0.0) + x[:, 0]
    from sklearn.linear_model import LinearRegression

    mu1 = cross_predict(LinearRegression(), x, y, folds, train_mask=t == 1)
    mu0 = cross_predict(LinearRegression(), x, y, folds, train_mask=t == 0)
    assert np.allclose(mu1 - mu0, 10.0)  # each arm's model saw only its own arm


def test_learner_choice_by_out_of_fold_loss_with_the_constant_as_baseline():
    rng = np.random.default_rng(2)
    n = 1500
    x = rng.normal(size=(n, 4))
    t = (rng.random(n) < special.expit(1.5 * x[:, 0])).astype(int)
    y = 2 * x[:, 1] + t + rng.normal(size=n)
    model = CrossFitNuisance(candidates=["linear", "hist_gradient_boosting"], n_folds=3, repeats=2).fit(x, t, y)
    sel = model.selection_
    assert set(sel["propensity"]["losses"]) == {"constant", "linear", "hist_gradient_boosting"}
    assert sel["propensity"]["chosen"] == "linear" and sel["outcome"]["chosen"] == "linear"
    assert sel["propensity"]["losses"]["linear"] < sel["propensity"]["losses"]["constant"]
    assert model.propensity_repeats_.shape == (2, n) and model.outcome_treated_repeats_.shape == (2, n)
    assert model.summary()["learners"] == sel
    # A treatment that no covariate predicts: nothing beats the intercept-only model.
    noise_t = (rng.random(n) < 0.5).astype(int)
    model = CrossFitNuisance(candidates=["linear", "random_forest"], n_folds=3).fit(x, noise_t, y)
    assert model.selection_["propensity"]["chosen"] == "constant"


def test_injected_learner_replaces_the_candidates():
    x, t, y, *_ = heterogeneous(n=800)
    model = CrossFitNuisance(
        candidates=["xgboost"],
        model_t={"_target_": "sklearn.linear_model.LogisticRegression", "C": 10.0},
        n_folds=3,
    ).fit(x, t, y)
    assert model.selection_["propensity"]["chosen"] == "LogisticRegression"
    assert model.selection_["outcome"]["chosen"] == "xgboost"


def test_mediation_methods_disagreement_flag():
    def block(direct, width=0.1, verdict="partial"):
        rec = {"estimate": direct, "ci_low": direct - width, "ci_high": direct + width}
        return {"total": rec, "direct": rec, "indirect": rec, "verdict": verdict}

    assert not compare_methods(block(1.0), block(1.05))["disagree"]
    out = compare_methods(block(1.0), block(2.0))
    assert out["disagree"] and not out["effects"]["direct"]["intervals_overlap"]
    assert compare_methods(block(1.0), block(1.0, verdict="full"))["disagree"]
