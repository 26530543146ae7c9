"""Nuisance models: seeding, out-of-fold predictions, tuning on a subsample, handing cached predictions to EconML."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from econml.dml import LinearDML

from causal.nuisance import (
    CachedClassifier,
    CachedRegressor,
    CrossFitNuisance,
    derive_seed,
    from_config,
    make_classifier,
    make_regressor,
    tune,
)

SMALL = {"n_estimators": 40, "max_depth": 3, "learning_rate": 0.2}


@pytest.fixture(scope="module")
def confounded():
    """n = 3000 units, 5 covariates; the treatment depends on x0, x1 and the outcome on x0, x2 and T."""
    rng = np.random.default_rng(7)
    n = 3000
    x = rng.normal(size=(n, 5))
    e = 1.0 / (1.0 + np.exp(-(0.8 * x[:, 0] - 0.5 * x[:, 1])))
    t = rng.binomial(1, e)
    y = x[:, 0] + np.sin(2 * x[:, 2]) + 0.5 * t + rng.normal(scale=0.5, size=n)
    return x, t, y


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, "crossfit") == derive_seed(0, "crossfit")
    seeds = {derive_seed(s, name) for s in range(3) for name in ("a", "b", "crossfit")}
    assert len(seeds) == 9
    assert all(0 <= s < 2**31 - 1 for s in seeds)


def test_factories_use_hist_and_the_seed():
    clf = make_classifier(SMALL, seed=11, n_jobs=1)
    reg = make_regressor(SMALL, seed=12, n_jobs=1)
    assert clf.get_params()["tree_method"] == "hist" and clf.get_params()["random_state"] == 11
    assert reg.get_params()["tree_method"] == "hist" and reg.get_params()["random_state"] == 12


@pytest.mark.parametrize(
    ("params", "message"),
    [({"max_dept": 3}, "nuisance.classifier: unknown XGBoost parameter"), ({"random_state": 1}, "set from `seed`")],
)
def test_bad_model_parameters_name_the_config_key(params, message):
    with pytest.raises(ValueError, match=message):
        make_classifier(params)


def test_from_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="config group nuisance: unknown key"):
        from_config({"folds": 3, "fold": 3}, seed=0)
    with pytest.raises(ValueError, match="nuisance.grid"):
        from_config({"grid": {"classifer": {"max_depth": [2]}}}, seed=0)


def test_crossfit_predictions_are_out_of_fold(confounded):
    x, t, _ = confounded
    # A pure-noise outcome: a model scored on rows it was trained on would show R^2 > 0; out of fold it cannot.
    noise = np.random.default_rng(3).normal(size=len(t))
    model = CrossFitNuisance(classifier_params=SMALL, regressor_params={**SMALL, "max_depth": 6}, n_folds=4)
    model.fit(x, t, noise)
    tests = np.concatenate([test for _, test in model.folds_])
    assert np.array_equal(np.sort(tests), np.arange(len(t)))  # the test folds partition the rows
    for train, test in model.folds_:
        assert np.intersect1d(train, test).size == 0
    assert not np.isnan(model.propensity_).any() and not np.isnan(model.outcome_).any()
    assert model.scores_["outcome_r2"] < 0.01
    in_sample = make_regressor({**SMALL, "max_depth": 6}).fit(x, noise).predict(x)
    assert 1 - np.var(noise - in_sample) / np.var(noise) > 0.1  # the same model in-sample does "explain" noise


def test_crossfit_learns_the_propensity(confounded):
    x, t, y = confounded
    model = CrossFitNuisance(classifier_params=SMALL, regressor_params=SMALL, n_folds=3).fit(x, t, y)
    true_e = 1.0 / (1.0 + np.exp(-(0.8 * x[:, 0] - 0.5 * x[:, 1])))
    assert np.corrcoef(model.propensity_, true_e)[0, 1] > 0.9
    assert model.scores_["propensity_auc"] > 0.65
    assert model.scores_["outcome_r2"] > 0.5


def test_same_seed_same_numbers_other_seed_other_folds(confounded):
    x, t, y = confounded
    params = {**SMALL, "subsample": 0.7, "colsample_bytree": 0.8}  # randomised fits: the seed must reach them
    a = CrossFitNuisance(classifier_params=params, regressor_params=params, n_folds=3, random_state=5).fit(x, t, y)
    b = CrossFitNuisance(classifier_params=params, regressor_params=params, n_folds=3, random_state=5).fit(x, t, y)
    c = CrossFitNuisance(classifier_params=params, regressor_params=params, n_folds=3, random_state=6).fit(x, t, y)
    assert np.array_equal(a.propensity_, b.propensity_) and np.array_equal(a.outcome_, b.outcome_)
    assert not np.array_equal(a.folds_[0][1], c.folds_[0][1])
    assert not np.array_equal(a.outcome_, c.outcome_)


def test_tune_searches_a_subsample_and_finds_the_needed_depth():
    rng = np.random.default_rng(1)
    n = 4000
    x = rng.normal(size=(n, 3))
    y = np.where(x[:, 0] * x[:, 1] > 0, 1.0, -1.0) + rng.normal(scale=0.3, size=n)  # needs depth >= 2
    result = tune(make_regressor({"n_estimators": 60}), {"max_depth": [1, 4]}, x, y, n_folds=3, max_rows=1500)
    assert result["n_rows"] == 1500
    assert result["best_params"] == {"max_depth": 4}
    assert result["n_candidates"] == 2 and len(result["candidates"]) == 2
    t = (x[:, 0] > 0).astype(int)
    stratified = tune(make_classifier({"n_estimators": 20}), {"max_depth": [2]}, x, t, max_rows=1000)
    assert stratified["n_rows"] == 1000 and stratified["scoring"] == "neg_log_loss"


def test_tuned_parameters_are_used_for_the_crossfit(confounded):
    x, t, y = confounded
    model = CrossFitNuisance(
        classifier_params={"n_estimators": 30},
        regressor_params={"n_estimators": 30},
        classifier_grid={"max_depth": [1, 3]},
        regressor_grid={"max_depth": [1, 3]},
        tune=True,
        n_folds=3,
        tune_max_rows=1000,
    ).fit(x, t, y)
    assert model.regressor_params_["max_depth"] == model.tuning_["regressor"]["best_params"]["max_depth"]
    assert model.classifier_params_["max_depth"] == model.tuning_["classifier"]["best_params"]["max_depth"]
    assert model.regressor_params_["n_estimators"] == 30  # fixed settings outside the grid are kept
    summary = model.summary()
    assert summary["tuned"] and "candidates" not in summary["tuning"]["regressor"]


def test_cached_predictions_reproduce_econml_own_crossfit(confounded):
    """EconML fitting XGBoost on our folds and EconML reading our cached predictions give the same estimate.

    The outcome model here is E[Y | x] = e mu1 + (1 - e) mu0 from the per-arm models, so EconML's own refit gets
    that as its (fixed) model_y, and the comparison is on the propensity it refits fold by fold.
    """
    x, t, y = confounded
    model = CrossFitNuisance(classifier_params=SMALL, regressor_params=SMALL, n_folds=3, random_state=2)
    model.fit(x, t, y)
    cached = LinearDML(
        model_y=CachedRegressor(model.outcome_, y),
        model_t=CachedClassifier(model.propensity_, t),
        discrete_treatment=True,
        cv=1,
        random_state=0,
    ).fit(y, t, X=None, W=x)
    # XGBoost without row/column subsampling is deterministic, so a refit on each fold reproduces the propensity.
    manual = np.empty(len(t))
    for train, test in model.folds_:
        manual[test] = make_classifier(SMALL).fit(x[train], t[train]).predict_proba(x[test])[:, 1]
    assert np.allclose(manual, model.propensity_, rtol=1e-6, atol=1e-7)
    resid_t, resid_y = t - model.propensity_, y - model.outcome_
    assert cached.ate() == pytest.approx(resid_t @ resid_y / (resid_t @ resid_t), rel=1e-9)
    assert abs(cached.ate() - 0.5) < 4 * cached.ate_inference().stderr_mean


def test_arm_models_give_the_pooled_outcome(confounded):
    x, t, y = confounded
    model = CrossFitNuisance(classifier_params=SMALL, regressor_params=SMALL, n_folds=3).fit(x, t, y)
    e = model.propensity_
    assert np.allclose(model.outcome_, e * model.outcome_treated_ + (1 - e) * model.outcome_control_)
    # The arm models learn the effect (0.5) as their difference.
    assert abs(np.mean(model.outcome_treated_ - model.outcome_control_) - 0.5) < 0.15


def test_cached_models_refuse_other_rows(confounded):
    x, t, y = confounded
    reg = CachedRegressor(np.zeros(len(y)), y)
    with pytest.raises(ValueError, match="different outcome"):
        reg.fit(x, y[::-1])
    with pytest.raises(ValueError, match="cannot predict"):
        reg.fit(x, y).predict(x[:10])
    clf = CachedClassifier(np.full(len(t), 0.5), t)
    with pytest.raises(ValueError, match="different treatment"):
        clf.fit(x, 1 - t)
    proba = clf.fit(x, t).predict_proba(x)
    assert proba.shape == (len(t), 2) and np.allclose(proba.sum(axis=1), 1.0)


def test_crossfit_rejects_bad_input(confounded):
    x, t, y = confounded
    with pytest.raises(ValueError, match="binary"):
        CrossFitNuisance(n_folds=2).fit(x, t * 2, y)
    with pytest.raises(ValueError, match="nuisance.folds=5"):
        CrossFitNuisance(n_folds=5).fit(x[:6], np.array([0, 1, 1, 1, 1, 1]), y[:6])


def test_logit_stack_weights_favour_the_informative_candidate():
    from scipy import special

    from causal.stacking import logit_stack_weights

    rng = np.random.default_rng(1)
    n = 4000
    x = rng.normal(size=n)
    truth = special.expit(x)
    t = (rng.uniform(size=n) < truth).astype(int)
    noise = special.expit(rng.normal(size=n))  # a candidate unrelated to the treatment
    weights, intercept = logit_stack_weights(np.column_stack([truth, noise]), t)
    # The MLE of the true logit's slope is 1 with sd ~ 0.04 at n = 4000; the unrelated candidate gets ~0.
    assert abs(weights[0] - 1) < 0.2 and weights[1] < 0.1 and abs(intercept) < 0.2


def test_logit_stack_weights_do_not_stretch_a_shrunken_member():
    """A member whose logit is the truth's shrunk five-fold: an unconstrained fit would give it weight ~5 and extreme
    propensities (IHDP's spline member got 4.4 and 5.8 in the two seeds inspected). The weights are capped at a sum
    of one, so the stack's logit is at most its members' (before the intercept); the cap binds (the sum is 1)."""
    from scipy import special

    from causal.stacking import logit, logit_stack_weights

    rng = np.random.default_rng(2)
    n = 4000
    x = rng.normal(scale=1.5, size=n)
    t = (rng.uniform(size=n) < special.expit(x)).astype(int)
    shrunk = special.expit(0.2 * x)
    other = special.expit(0.1 * x + 0.3 * rng.normal(size=n))
    weights, intercept = logit_stack_weights(np.column_stack([shrunk, other]), t)
    assert np.all(weights >= 0) and weights.sum() <= 1 + 1e-6
    assert weights.sum() > 0.99  # binding: more slope would lower the log loss
    z = np.column_stack([logit(shrunk), logit(other)])
    assert np.all(np.abs(z @ weights) <= np.abs(z).max(axis=1) + 1e-6)  # no unit's logit beyond its members'


def test_stacked_propensity_is_a_valid_cross_fitted_learner():
    from causal import stacking

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    t = (rng.uniform(size=400) < 1 / (1 + np.exp(-x[:, 0] - 0.5 * x[:, 1] ** 2))).astype(int)
    y = x[:, 0] + 0.5 * t + rng.normal(size=400)
    nuis = CrossFitNuisance(
        candidates=["linear", "spline", "random_forest"], stack=("propensity",), repeats=2, random_state=0
    ).fit(x, t, y)
    sel = nuis.selection_["propensity"]
    assert sel["chosen"] == "stack" and len(sel["weights"]) >= 2
    # In-sample weights on out-of-fold predictions: never worse than the best single candidate.
    assert sel["losses"]["stack"] <= min(v for k, v in sel["losses"].items() if k != "stack") + 1e-9
    e = nuis.propensity_repeats_
    assert e.shape == (2, 400) and np.all((e > 0) & (e < 1))
    assert isinstance(nuis.learner("propensity"), stacking.LogitStack)
    # Without stacking the single best is used.
    single = CrossFitNuisance(candidates=["linear", "spline"], random_state=0).fit(x, t, y)
    assert single.selection_["propensity"]["chosen"] in ("linear", "spline")


def test_outcome_structure_chosen_by_out_of_fold_loss():
    """outcome_mode=auto: pooled and per-arm variants of each candidate compete; arms whose surfaces differ in
    shape (a linear model of (x, T) cannot fit x * T) go per arm."""
    rng = np.random.default_rng(2)
    n = 600
    x = rng.normal(size=(n, 2))
    t = (rng.uniform(size=n) < 0.5).astype(int)
    y = np.where(t == 1, 2 * x[:, 0], -2 * x[:, 0]) + 0.3 * rng.normal(size=n)
    nuis = CrossFitNuisance(candidates=["linear"], outcome_mode="auto", random_state=0).fit(x, t, y)
    sel = nuis.selection_["outcome"]
    assert sel["chosen"] == "linear/arms" and set(sel["losses"]) == {"linear", "linear/arms"}
    assert sel["losses"]["linear/arms"] < 0.5 * sel["losses"]["linear"]
    # Per-arm predictions recover both slopes.
    assert np.corrcoef(nuis.outcome_treated_, 2 * x[:, 0])[0, 1] > 0.95
    assert np.corrcoef(nuis.outcome_control_, -2 * x[:, 0])[0, 1] > 0.95
    with pytest.raises(ValueError, match="outcome_mode"):
        CrossFitNuisance(candidates=["linear"], outcome_mode="both").fit(x, t, y)


def test_penalty_chosen_on_a_subsample_above_max_rows_and_refitted_on_all_rows():
    from sklearn.linear_model import LogisticRegressionCV, Ridge, RidgeCV

    from causal.learners import _LOGIT_OPTIONS, PenaltyOnSubsample

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 5))
    y = x @ np.arange(5.0) + rng.normal(size=3000)
    t = (x[:, 0] + rng.normal(size=3000) > 0).astype(int)
    alphas = np.logspace(-3, 4, 15)
    # Up to max_rows (the shipped 50,000 covers every test table): exactly the cross-validated model.
    small = PenaltyOnSubsample(RidgeCV(alphas=alphas)).fit(x, y)
    np.testing.assert_array_equal(small.predict(x), RidgeCV(alphas=alphas).fit(x, y).predict(x))
    # Above it: the penalty of the subsample's search, the coefficients of a fit on every row.
    big = PenaltyOnSubsample(RidgeCV(alphas=alphas), max_rows=500, random_state=3).fit(x, y)
    rows = np.sort(np.random.default_rng(3).choice(3000, 500, replace=False))
    alpha = RidgeCV(alphas=alphas).fit(x[rows], y[rows]).alpha_
    np.testing.assert_allclose(big.predict(x), Ridge(alpha=alpha).fit(x, y).predict(x), atol=1e-8)
    search = LogisticRegressionCV(Cs=4, cv=3, scoring="neg_log_loss", max_iter=500, **_LOGIT_OPTIONS)
    clf = PenaltyOnSubsample(search, max_rows=500).fit(x, t)
    assert list(clf.classes_) == [0, 1] and clf.predict_proba(x).shape == (3000, 2)
    assert np.mean((clf.predict_proba(x)[:, 1] > 0.5) == t) > 0.7  # x0 drives t: far better than chance


def test_weighted_outcome_loss_estimates_both_arms_error_over_all_units():
    """The shipped outcome choice (nuisance.outcome_loss=weighted) scores a model by its error over all units, where
    the ATE uses it, not only over the units of its own arm: a treated-arm model that is wrong only where treated
    units are rare is caught."""
    from scipy import special

    rng = np.random.default_rng(0)
    n = 20_000
    x = rng.normal(size=n)
    e = special.expit(2 * x)
    t = (rng.random(n) < e).astype(int)
    mu1, mu0 = x, np.zeros(n)
    y = np.where(t == 1, mu1, mu0) + rng.normal(size=n)
    wrong = np.where(x < 0, 2.0, 0.0)  # mu1 off by 2 on half the units, where few are treated
    weighted = CrossFitNuisance(outcome_loss="weighted")._outcome_loss(t, y, e)((mu1 + wrong, mu0))
    # Truth: E[wrong^2] = 2 for mu1 plus the unit noise variance of each arm = 4. Tolerance 4 SD of the loss over
    # 200 seeds (0.083).
    assert abs(weighted - 4.0) < 4 * 0.083
    own_arm = CrossFitNuisance(outcome_loss="own_arm")._outcome_loss(t, y, e)((mu1 + wrong, mu0))
    assert own_arm < 2.0  # about 1.44: the unweighted own-arm error barely sees the wrong region
    assert load_config_default("outcome_loss") == "weighted"


def load_config_default(key):
    from hydra import compose, initialize_config_dir

    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose(config_name="config").nuisance[key]


def test_linear_boosting_extrapolates_along_the_trend_where_trees_go_flat():
    """Fitted on x0 in [0, 1], predicted at x0 = 1.5: the ridge part carries the slope of 3 beyond the data (truth
    4.5 + 0.5 sin(6 x1)); histogram boosting alone predicts its edge value (~3). The ridge slope's standard error is
    ~0.03 here, so 0.15 at half a unit beyond the data is several of them."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from causal.learners import LinearPlusBoosting, make_learner

    rng = np.random.default_rng(3)
    n = 2000
    x = rng.uniform(size=(n, 2))
    y = 3 * x[:, 0] + 0.5 * np.sin(6 * x[:, 1]) + 0.1 * rng.normal(size=n)
    beyond = np.column_stack([np.full(500, 1.5), rng.uniform(size=500)])
    truth = 4.5 + 0.5 * np.sin(6 * beyond[:, 1])
    model = make_learner("linear_boosting", kind="regressor", seed=0).fit(x, y)
    assert isinstance(model, LinearPlusBoosting)
    assert abs(np.mean(model.predict(beyond) - truth)) < 0.15
    inside = rng.uniform(size=(500, 2))  # and it fits the curvature inside the data
    assert np.sqrt(np.mean((model.predict(inside) - 3 * inside[:, 0] - 0.5 * np.sin(6 * inside[:, 1])) ** 2)) < 0.1
    flat = HistGradientBoostingRegressor(random_state=0).fit(x, y)
    assert np.mean(flat.predict(beyond) - truth) < -1.0
    with pytest.raises(ValueError, match="outcomes only"):
        make_learner("linear_boosting", kind="classifier")


def test_outcome_only_families_are_skipped_for_the_propensity(confounded):
    x, t, y = confounded
    nuis = CrossFitNuisance(candidates=["linear", "linear_boosting"], n_folds=3, repeats=1).fit(
        x[:600], t[:600], y[:600]
    )
    assert set(nuis.selection_["propensity"]["losses"]) == {"constant", "linear"}
    assert set(nuis.selection_["outcome"]["losses"]) == {"constant", "linear", "linear_boosting"}


def test_mean_stack_weights_recover_a_known_mixture():
    """y = 0.7 p1 + 0.3 p2 + noise (SD 0.1, n = 2000): each weight's standard error is about 0.1 / sqrt(2000) =
    0.002, so 0.02 is ten of them; a column of pure noise gets no weight (below MIN_WEIGHT, dropped)."""
    from causal.stacking import MIN_WEIGHT, mean_stack_weights

    rng = np.random.default_rng(4)
    p = rng.normal(size=(2000, 3))
    y = 0.7 * p[:, 0] + 0.3 * p[:, 1] + 0.1 * rng.normal(size=2000)
    w = mean_stack_weights(p, y)
    assert w.sum() == pytest.approx(1.0)
    assert w[:2] == pytest.approx([0.7, 0.3], abs=0.02)
    assert w[2] == 0.0 and MIN_WEIGHT > 0
    # Unit weights change the fit: units weighted where only p2 explains y pull the weight to p2.
    y2 = np.where(np.arange(2000) < 1000, p[:, 0], p[:, 1])
    sw = np.where(np.arange(2000) < 1000, 0.01, 1.0)
    assert mean_stack_weights(p[:, :2], y2, sw)[1] > 0.9


def test_stack_outcome_on_own_arm_predictions_and_none_for_a_single_member():
    """Candidate A is right for the treated arm only, B for the control arm only (each unit is scored on its own
    arm's prediction): the loss (1 - w_a)^2 n1 + w_a^2 n0 (times var(y - noise)) is least at w_a = n1 / n, 0.5 with
    SD 0.011 at n = 2000, so 0.05 is over four SDs. A candidate equal to y takes all the weight: no stack."""
    from causal.stacking import combine, stack_outcome

    rng = np.random.default_rng(6)
    n = 2000
    t = rng.binomial(1, 0.5, size=n)
    y = rng.normal(size=n)
    noise = rng.normal(size=n)
    preds = {"a": (y, noise), "b": (noise, y)}  # (mu1, mu0): a is exact on the treated, b on the controls
    weights, (mu1, mu0) = stack_outcome(preds, t, y)
    assert weights == pytest.approx({"a": 0.5, "b": 0.5}, abs=0.05)
    assert mu1 == pytest.approx(weights["a"] * y + weights["b"] * noise)
    assert combine(weights, preds)[1] == pytest.approx(mu0)
    assert stack_outcome({"exact": (y, y), "noise": (noise, noise)}, t, y) is None


def test_outcome_stack_is_cross_fitted_in_every_repeat_and_refittable():
    """stack=[outcome]: the candidates' convex combination is chosen when two get weight; its loss is no worse than
    the best single candidate's; later repeats refit each member in its own structure; learner() gives a model of
    E[y | x] with the same members."""
    from causal.stacking import MeanStack

    rng = np.random.default_rng(5)
    n = 1200
    x = rng.uniform(-2, 2, size=(n, 3))
    t = rng.binomial(1, 1 / (1 + np.exp(-x[:, 0])))
    y = 2 * x[:, 0] + np.sin(3 * x[:, 1]) + t * (1 + x[:, 2]) + 0.3 * rng.normal(size=n)
    nuis = CrossFitNuisance(
        candidates=["linear", "hist_gradient_boosting"], outcome_mode="auto", stack=("outcome",), repeats=2
    ).fit(x, t, y)
    sel = nuis.selection_["outcome"]
    assert sel["chosen"] == "stack" and len(sel["weights"]) >= 2
    assert sum(sel["weights"].values()) == pytest.approx(1.0)
    singles = {k: v for k, v in sel["losses"].items() if k != "stack"}
    assert sel["losses"]["stack"] <= min(singles.values()) + 1e-9
    assert nuis.outcome_treated_repeats_.shape == (2, n) and np.isfinite(nuis.outcome_treated_repeats_).all()
    # The second repeat (new folds, members refitted) predicts as well as the first.
    truth1 = 2 * x[:, 0] + np.sin(3 * x[:, 1]) + 1 + x[:, 2]
    rmse = np.sqrt(np.mean((nuis.outcome_treated_repeats_ - truth1) ** 2, axis=1))
    assert rmse[1] < 1.5 * rmse[0] and rmse[0] < 0.5
    members = nuis.outcome_members()
    assert set(members) == set(sel["weights"])
    rebuilt = sum(w * mu1 for w, mu1, _ in members.values())
    assert np.allclose(rebuilt, nuis.outcome_treated_repeats_)
    model = nuis.learner("outcome")
    assert isinstance(model, MeanStack)
    assert np.corrcoef(model.fit(x, y).predict(x), y)[0, 1] > 0.9
    with pytest.raises(ValueError, match="nuisance.stack"):
        CrossFitNuisance(candidates=["linear"], stack=("outcomes",)).fit(x, t, y)
