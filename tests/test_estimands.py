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


def test_units_without_comparable_treated_units_are_counted_and_flagged():
    from causal.reporting.text import extrapolation_note

    # A third of the units sit where treatment is (almost) impossible: their propensity is clipped, so their
    # effect can only come from the outcome model; the record counts them and the report says so.
    x, t, y, e, mu0, mu1, tau = heterogeneous(n=3000, seed=2)
    e = np.where(x[:, 1] < np.quantile(x[:, 1], 1 / 3), 1e-4, e)
    t = (np.random.default_rng(3).random(len(e)) < e).astype(int)
    ate, _ = estimands.aipw("ate", y, t, e, mu1, mu0)
    assert ate["n_clipped"] >= len(e) // 3 and ate["n_units"] == len(e)
    assert extrapolation_note(ate).startswith(f"Caution: {ate['n_clipped'] / len(e):.0%} of the units")
    assert extrapolation_note(estimands.aipw("ate", y, t, np.clip(e, 0.05, 0.95), mu1, mu0)[0]) is None


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


def test_pooled_outcome_model_predicts_both_arms_from_one_fit():
    from sklearn.linear_model import LinearRegression

    from causal.crossfit import cross_predict_arms

    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 2))
    t = (rng.random(400) < 0.5).astype(int)
    y = 3.0 * t + x[:, 0] + rng.normal(scale=0.1, size=400)
    mu1, mu0 = cross_predict_arms(LinearRegression(), x, t, y, make_folds(400, n_folds=4, stratify=t))
    assert np.allclose(mu1 - mu0, 3.0, atol=0.05) and not np.isnan(mu1).any()


def _pipeline_cfg(overrides):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    conf = str(Path(__file__).resolve().parents[1] / "conf")
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


# Small fixed XGBoost nuisances instead of the learner choice (nuisance=auto): this test is about the estimand
# plumbing, and the learner choice is tested above; the estimand and clip keys keep their shipped defaults.
SMALL_RUN = [
    "data.n_titles=100",
    "nuisance=xgboost",
    "nuisance.folds=3",
    "nuisance.classifier.n_estimators=60",
    "nuisance.regressor.n_estimators=60",
    "estimator=linear_dml",
    "steps=[overlap,dml]",
]


def test_pipeline_states_the_estimand_and_writes_unit_effects(tmp_path):
    import pandas as pd

    from causal.pipeline import run

    res = run(_pipeline_cfg([*SMALL_RUN, "overlap.threshold=0.2"]), tmp_path)
    ate, est = res["ate"], res["estimands"]
    assert ate["estimand"] == "ate" and ate["n"] == res["n_units"] == res["n_used"]  # estimand ate: no trimming
    assert not res["overlap"]["applied"] and res["overlap"]["trimmed"] > 0
    assert est["ate_overlap"]["n"] == res["n_units"] - res["overlap"]["trimmed"]
    assert est["att"]["n"] == res["naive"]["n_treated"] and ate["n_clipped"] >= 0 and ate["repeats"] == 1
    truth = res["truth"]["ate"]
    assert abs(ate["estimate"] - truth) < 3.5 * ate["stderr"]
    units = pd.read_parquet(tmp_path / res["files"]["unit_effects"])
    assert len(units) == res["n_units"] and {"image_id", "cate", "aipw_score", "propensity"} <= set(units.columns)
    assert units["aipw_score"].mean() == pytest.approx(ate["estimate"])
    trimmed = run(_pipeline_cfg([*SMALL_RUN, "overlap.threshold=0.2", "estimand=ate_overlap"]), tmp_path / "o")
    assert trimmed["overlap"]["applied"] and trimmed["n_used"] == est["ate_overlap"]["n"]
    assert trimmed["ate"]["estimand"] == "ate_overlap"


def test_bad_estimand_is_refused_before_any_data(tmp_path):
    from causal.pipeline import run
    from causal.validate import ConfigError

    with pytest.raises(ConfigError, match="estimand"):
        run(_pipeline_cfg([*SMALL_RUN, "estimand=atc"]), tmp_path)
    with pytest.raises(ConfigError, match="dml.clip"):
        run(_pipeline_cfg([*SMALL_RUN, "dml.clip=0.7"]), tmp_path)


def test_att_clips_only_the_upper_bound():
    e = np.array([0.001, 0.5, 0.999])
    assert estimands.clip_propensity(e, 0.05, upper_only=True)[1] == 1
    x, t, y, e, mu0, mu1, tau = heterogeneous(n=2000, seed=5)
    att, _ = estimands.aipw("att", y, t, np.clip(e, 1e-4, 1 - 1e-4), mu1, mu0, clip=0.05)
    assert abs(att["estimate"] - tau[t == 1].mean()) < 3.5 * att["stderr"]


def test_cluster_robust_stderr_matches_the_spread_under_shared_shocks_and_reduces_to_the_plain_one():
    # Units of a cluster share a shock and (mostly) their treatment, as artworks of a title: the plain standard
    # error is too small, the cluster-robust one matches the spread of the estimates.
    rng = np.random.default_rng(11)
    n_clusters, size, reps = 150, 8, 300
    groups = np.repeat(np.arange(n_clusters), size)
    estimates, plain, robust = [], [], []
    for _ in range(reps):
        x = np.repeat(rng.normal(size=n_clusters), size)
        e = special.expit(0.8 * x)
        t = np.repeat(rng.random(n_clusters), size) < e
        y = x + t * 1.0 + np.repeat(rng.normal(scale=1.5, size=n_clusters), size) + rng.normal(size=len(groups))
        rec, _ = estimands.aipw("ate", y, t, e, x + 1.0, x, groups=groups)
        estimates.append(rec["estimate"])
        robust.append(rec["stderr"])
        plain.append(estimands.aipw("ate", y, t, e, x + 1.0, x)[0]["stderr"])
    spread = np.std(estimates, ddof=1)
    # The sample SD of 300 estimates is within about 4% of the true SD; 15% is over 3.5 of its standard errors.
    assert abs(np.mean(robust) / spread - 1) < 0.15
    assert np.mean(plain) / spread < 0.85
    assert rec["n_clusters"] == n_clusters
    influence = rng.normal(size=50)
    assert estimands.mean_stderr(influence, np.arange(50)) == pytest.approx(estimands.mean_stderr(influence))


def test_simulated_runs_cluster_by_title_unless_switched_off(tmp_path):
    from causal.pipeline import run

    res = run(_pipeline_cfg(SMALL_RUN), tmp_path / "a")  # data=simulated declares data.cluster=title_id
    assert res["ate"]["n_clusters"] == 100 and res["estimands"]["att"]["n_clusters"] == 100
    plain = run(_pipeline_cfg([*SMALL_RUN, "data.cluster=null"]), tmp_path / "b")
    assert "n_clusters" not in plain["ate"]
    assert plain["ate"]["stderr"] < res["ate"]["stderr"]  # title shocks: independent-row errors are too small


def test_model_averaged_stderr_adds_the_members_disagreement():
    """Stacked outcome: the estimate is the weighted mean of the members' estimates (the score is linear in mu1, mu0)
    and the standard error is Buckland et al.'s sum_k w_k sqrt(se_k^2 + (theta_k - theta)^2): equal to the plain
    one when the members agree, larger by their spread when they do not."""
    rng = np.random.default_rng(11)
    n = 3000
    x = rng.normal(size=n)
    e = 1 / (1 + np.exp(-x))
    t = rng.binomial(1, e)
    y = x + t * 1.0 + rng.normal(size=n)
    good = (x + 1.0, x)
    off = (x + 1.0 + 0.4 * (x < -1), x)  # wrong where few treated units are: AIPW corrects only part of it
    w = {"good": 0.5, "off": 0.5}
    mu1 = 0.5 * good[0] + 0.5 * off[0]
    rec, _ = estimands.aipw("ate", y, t, e, mu1, x, members={"good": (0.5, *good), "off": (0.5, *off)})
    singles = {k: estimands.aipw("ate", y, t, e, *m)[0] for k, m in (("good", good), ("off", off))}
    assert rec["estimate"] == pytest.approx(sum(w[k] * singles[k]["estimate"] for k in w), rel=1e-12)
    expected = sum(
        w[k] * np.sqrt(singles[k]["stderr"] ** 2 + (singles[k]["estimate"] - rec["estimate"]) ** 2) for k in w
    )
    assert rec["stderr"] == pytest.approx(expected, rel=1e-12)
    assert rec["stderr"] > rec["stderr_within_model"]
    assert rec["estimates_by_member"] == pytest.approx({k: singles[k]["estimate"] for k in w})
    assert "model-averaged over 2 outcome learners" in rec["method"]
    same, _ = estimands.aipw("ate", y, t, e, *good, members={"a": (0.5, *good), "b": (0.5, *good)})
    assert same["stderr"] == pytest.approx(estimands.aipw("ate", y, t, e, *good)[0]["stderr"], rel=1e-12)
