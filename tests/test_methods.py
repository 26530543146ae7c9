"""Estimators side by side (causal.methods, causal.matching) and their agreement test (causal.agreement).

The statistical tests use a linear design with a known constant effect (1.0) and confounders x0, x1, with linear
cross-fitted nuisances (correct models, so every estimator is consistent); tolerances come from the binomial
standard error of a coverage rate over the seeds.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from causal import matching, methods, validate
from causal.agreement import agreement_test
from causal.crossfit import cross_predict, make_folds
from causal.methods import estimate_all, ipw

EFFECT = 1.0


@functools.lru_cache(maxsize=64)  # the coverage and size tests share the draws
def design(seed: int, n: int = 1000, drop_from_outcome: bool = False):
    """(y, t, (e, mu1, mu0)) of the linear design; ``drop_from_outcome`` leaves confounder x0 out of the outcome
    models only (the propensity model keeps it): the planted misspecification."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    t = (rng.random(n) < 1 / (1 + np.exp(-(0.8 * x[:, 0] - 0.5 * x[:, 1])))).astype(int)
    y = EFFECT * t + 1.5 * x[:, 0] + x[:, 1] + 0.5 * x[:, 2] + rng.normal(size=n)
    folds = make_folds(n, seed=seed, stratify=t)
    e = cross_predict(LogisticRegression(), x, t, folds)
    xo = x[:, 1:] if drop_from_outcome else x
    mu1 = cross_predict(LinearRegression(), xo, y, folds, train_mask=t == 1)
    mu0 = cross_predict(LinearRegression(), xo, y, folds, train_mask=t == 0)
    return y, t, (e, mu1, mu0)


def test_every_estimator_covers_the_truth_at_the_nominal_rate():
    """30 seeds: each CI covers the constant effect (ATE = ATT = 1) at 95% within 3 binomial SEs."""
    seeds = 30
    covered: dict[str, list[bool]] = {}
    for seed in range(seeds):
        y, t, arms = design(seed)
        estimates, _ = estimate_all(y, t, arms)
        for name, rec in estimates.items():
            covered.setdefault(name, []).append(rec["ci_low"] <= EFFECT <= rec["ci_high"])
    assert set(covered) == set(methods.METHODS) - {"linear_dml_ate", "causal_forest_ate"}
    floor = 0.95 - 3 * np.sqrt(0.95 * 0.05 / seeds)
    rates = {name: float(np.mean(v)) for name, v in covered.items()}
    assert all(rate >= floor for rate in rates.values()), rates


def test_agreement_flags_a_confounder_missing_from_the_outcome_model():
    """Correct models: the test rejects at about its level (30 seeds, within 3 binomial SEs of 0.05). The
    outcome models without confounder x0: the T-learner is biased (IPW, matching and AIPW are not) and the test
    rejects in every seed, naming the T-learner."""
    seeds = 30
    size = np.mean([agreement_test(*estimate_all(*design(s)))["verdict"] == "disagree" for s in range(seeds)])
    assert size <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / seeds)
    for seed in range(5):
        y, t, arms = design(seed, drop_from_outcome=True)
        estimates, parts = estimate_all(y, t, arms)
        result = agreement_test(estimates, parts)
        assert result["verdict"] == "disagree" and result["p_value"] < 1e-6
        worst = max(result["differences"], key=lambda k: abs(result["differences"][k]["z"]))
        assert worst == "t_learner_ate"
        assert "t_learner_ate" in result["sentence"] and "disagree" in result["sentence"]
        # the doubly robust estimate still covers the truth
        assert estimates["aipw_ate"]["ci_low"] <= EFFECT <= estimates["aipw_ate"]["ci_high"]


def test_agreement_record_and_the_contributions_average_to_the_estimates():
    y, t, arms = design(0)
    estimates, parts = estimate_all(y, t, arms)
    for name in ("ipw_ate", "ipw_att", "t_learner_ate", "aipw_ate", "matching_ate", "matching_att"):
        assert np.mean(parts[name]) == pytest.approx(estimates[name]["estimate"], rel=1e-9, abs=1e-12), name
    result = agreement_test(estimates, parts)
    assert result["verdict"] == "agree" and result["df"] == 5
    assert set(result["differences"]) == {"ipw_ate", "ipw_att", "matching_ate", "matching_att", "t_learner_ate"}


def test_hajek_ipw_by_hand():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    t = np.array([1, 1, 0, 0])
    e = np.array([0.5, 0.25, 0.5, 0.75])
    rec, _ = ipw("ate", y, t, e)
    treated = (1 / 0.5 * 1 + 1 / 0.25 * 2) / (1 / 0.5 + 1 / 0.25)
    control = (1 / 0.5 * 3 + 1 / 0.25 * 4) / (1 / 0.5 + 1 / 0.25)
    assert rec["estimate"] == pytest.approx(treated - control)
    rec, _ = ipw("att", y, t, e)
    assert rec["estimate"] == pytest.approx(1.5 - (1 * 3 + 3 * 4) / 4)


def test_matching_by_hand_with_caliper_and_abadie_imbens_variance():
    """Treated at logit 0 and 1 match controls at logit 0.1 and 1.1; the treated unit at logit 5 has no control
    within the caliper and is left out. ATT = mean(10 - 1, 12 - 2) = 9.5; with one match each and every control
    used once, the AI variance is sum((d - 9.5)^2) / N1^2 = (0.25 + 0.25) / 4."""
    logits = np.array([0.0, 1.0, 5.0, 0.1, 1.1, -1.0])
    e = 1 / (1 + np.exp(-logits))
    t = np.array([1, 1, 1, 0, 0, 0])
    y = np.array([10.0, 12.0, 30.0, 1.0, 2.0, 0.0])
    width = 1.0 / np.std(logits, ddof=1)  # caliper of 1 logit unit
    res = matching.match_effect("att", y, t, e, caliper=width)
    assert res.record["estimate"] == pytest.approx(9.5)
    assert res.record["n_matched"] == 2 and res.record["n_unmatched"] == 1
    assert res.record["stderr"] == pytest.approx(np.sqrt(0.5 / 4))
    assert np.sort(res.pair_differences) == pytest.approx([9.0, 10.0])
    with pytest.raises(ValueError, match="ate or att"):
        matching.match_effect("atc", y, t, e)


def test_bias_correction_removes_the_matching_discrepancy():
    """y = 2 x + effect, matches at a different x: the raw match is off by 2 * (x_i - x_j); the correction with
    the true outcome model recovers the effect exactly."""
    x = np.array([0.0, 1.0, 0.3, 1.2])
    t = np.array([1, 1, 0, 0])
    y = 2 * x + 3.0 * t
    e = 1 / (1 + np.exp(-x))
    mu = (2 * x + 3.0, 2 * x)
    res = matching.match_effect("ate", y, t, e, caliper=None, outcome_models=mu)
    assert res.record["estimate"] == pytest.approx(3.0)
    raw = matching.match_effect("ate", y, t, e, caliper=None)
    assert raw.record["estimate"] != pytest.approx(3.0)


def test_names_and_keys_agree_with_the_config_check():
    assert validate.METHODS == methods.METHODS
    assert validate.allowed_keys("methods") == methods.KEYS


def test_bad_methods_config_is_refused_before_fitting():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {"steps": ["overlap", "dml", "methods"], "methods": {"include": ["aipw_ate", "ipw_atee"], "caliper": -1}}
    )
    with pytest.raises(validate.ConfigError) as caught:
        validate.validate_config(cfg)
    keys = sorted(key for key, _ in caught.value.problems)
    assert keys == ["methods.caliper", "methods.include"]
    with pytest.raises(validate.ConfigError, match="methods.cailper"):
        validate.validate_config(OmegaConf.create({"methods": {"cailper": 0.2}}))


def test_methods_step_writes_every_estimator_from_the_runs_nuisances(tmp_path):
    """A small simulator run (fixed small nuisances and forest instead of the shipped learner choice, to keep the
    test at seconds): every method is written, the AIPW entries are the run's estimands, the agreement test ran."""
    from hydra import compose, initialize_config_dir

    from causal.pipeline import run

    shrink = ["data.n_titles=100", "nuisance=xgboost", "nuisance.folds=3", "nuisance.classifier.n_estimators=60"]
    shrink += ["nuisance.regressor.n_estimators=60", "estimator.n_estimators=40", "steps=[overlap,dml,methods]"]
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=shrink)
    results = run(cfg, tmp_path)
    by_method = results["estimates_by_method"]
    assert list(by_method) == list(methods.METHODS)
    for name, rec in by_method.items():
        assert rec["ci_low"] <= rec["estimate"] <= rec["ci_high"], name
        assert rec["estimand"] == ("att" if name.endswith("_att") else "ate")
    assert by_method["aipw_ate"]["estimate"] == pytest.approx(results["estimands"]["ate"]["estimate"])
    assert by_method["aipw_att"]["estimate"] == pytest.approx(results["estimands"]["att"]["estimate"])
    agreement = results["agreement"]
    assert agreement["verdict"] in ("agree", "close", "disagree") and 0 <= agreement["p_value"] <= 1
    assert agreement["not_tested"] == ["linear_dml_ate"] and agreement["df"] == 6


def test_a_detectable_but_tiny_difference_is_close_not_disagree():
    """Shared nuisances make differences precise; one far below the reference's standard error is immaterial."""
    rng = np.random.default_rng(0)
    n = 4000
    base = rng.normal(0.0, 1.0, n)  # the reference's contributions: estimate ~0, stderr ~ 1/sqrt(n) = 0.0158
    offset = 0.002 + rng.normal(0.0, 0.01, n)  # mean shift 0.002: z ~ 12, but 0.13 of the reference's stderr
    parts = {"aipw_ate": base, "other_ate": base + offset}
    estimates = {
        name: {"estimate": float(c.mean()), "stderr": float(c.std(ddof=1) / np.sqrt(n)), "estimand": "ate"}
        for name, c in parts.items()
    }
    result = agreement_test(estimates, parts)
    assert result["p_value"] < 1e-6 and result["largest_difference_in_se"] < 0.25
    assert result["verdict"] == "close" and "immaterially" in result["sentence"]
    parts["other_ate"] = base + offset + 0.01  # now 0.76 of the reference's stderr: material
    estimates["other_ate"]["estimate"] = float(parts["other_ate"].mean())
    assert agreement_test(estimates, parts)["verdict"] == "disagree"


def test_a_noisy_method_far_but_undetectably_so_does_not_make_a_close_difference_disagree():
    """IPW-like noise: a large but insignificant difference is sampling noise, not disagreement."""
    rng = np.random.default_rng(1)
    n = 4000
    base = rng.normal(0.0, 1.0, n)
    parts = {
        "aipw_ate": base,
        "forest_ate": base + 0.002 + rng.normal(0.0, 0.01, n),  # detectable (z ~ 12), 0.13 of the reference's se
        "ipw_ate": base + 0.012 + rng.normal(0.0, 2.0, n),  # 0.76 of the reference's se, but z ~ 0.4
    }
    estimates = {
        name: {"estimate": float(c.mean()), "stderr": float(c.std(ddof=1) / np.sqrt(n)), "estimand": "ate"}
        for name, c in parts.items()
    }
    result = agreement_test(estimates, parts)
    assert result["p_value"] < 1e-6 and abs(result["differences"]["ipw_ate"]["z"]) < 1.96
    assert result["verdict"] == "close" and result["largest_difference_in_se"] < 0.25


def test_the_t_learner_always_uses_one_outcome_model_per_arm():
    """A pooled outcome model of (x, T) (here linear, so with one common slope of T) imposes a constant effect;
    with an effect 1 + x0 and treatment more likely at high x0, its plug-in mean is the overlap-weighted effect, not
    the ATE (1). ``per_arm_outcomes`` refits the chosen learner per arm on the run's folds: the same predictions as
    a run fitted per arm from the start, and a T-learner that covers the ATE."""
    from causal.nuisance import CrossFitNuisance

    rng = np.random.default_rng(5)
    n = 4000
    x = rng.normal(size=(n, 2))
    t = (rng.random(n) < 1 / (1 + np.exp(-(1.2 * x[:, 0] + 0.8)))).astype(int)
    y = t * (EFFECT + x[:, 0]) + x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=n)
    opts = {"candidates": ["linear"], "repeats": 2, "random_state": 3}
    pooled = CrossFitNuisance(outcome_mode="pooled", **opts).fit(x, t, y)
    arms = CrossFitNuisance(outcome_mode="arms", **opts).fit(x, t, y)
    assert not pooled.outcome_per_arm_ and arms.outcome_per_arm_
    mu1, mu0 = pooled.per_arm_outcomes(x, t, y)
    assert mu1.shape == mu0.shape == (2, n)
    np.testing.assert_allclose(mu1, arms.outcome_treated_repeats_, rtol=1e-10)
    np.testing.assert_allclose(mu0, arms.outcome_control_repeats_, rtol=1e-10)
    assert arms.per_arm_outcomes(x, t, y)[0] is arms.outcome_treated_repeats_
    nuisances = (pooled.propensity_repeats_, pooled.outcome_treated_repeats_, pooled.outcome_control_repeats_)
    as_pooled, _ = estimate_all(y, t, nuisances, include=("t_learner_ate",))
    per_arm, _ = estimate_all(y, t, nuisances, include=("t_learner_ate",), t_learner_arms=(mu1, mu0))
    shrunk, fixed = as_pooled["t_learner_ate"], per_arm["t_learner_ate"]
    assert abs(shrunk["estimate"] - EFFECT) > 4 * shrunk["stderr"]  # the pooled plug-in misses the ATE
    assert fixed["ci_low"] <= EFFECT <= fixed["ci_high"]


def test_agreement_with_one_unit_per_cluster_is_the_plain_test_and_clusters_widen_it():
    y, t, arms = design(1)
    estimates, parts = estimate_all(y, t, arms)
    plain = agreement_test(estimates, parts)
    singletons = agreement_test(estimates, parts, groups=np.arange(len(y)))
    assert singletons["statistic"] == pytest.approx(plain["statistic"], rel=1e-9)
    # Pairs of units as clusters: a different (cluster-robust) covariance, so a different statistic, same df.
    paired = agreement_test(estimates, parts, groups=np.arange(len(y)) // 2)
    assert paired["df"] == plain["df"] and paired["statistic"] != pytest.approx(plain["statistic"], rel=1e-6)
