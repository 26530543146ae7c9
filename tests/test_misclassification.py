"""Misclassification-corrected ATE: closed forms, and recovery of the truth after flipping treatments at known rates."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from threadpoolctl import threadpool_limits

from causal.misclassification import DetectorRates, cross_fit_nuisances, misclassification_corrected_ate
from causal.simulate import simulate_catalog


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_blas():
    """These tests solve many small least-squares problems; threaded BLAS only contends on a shared 2-core runner
    (measured 20x slower under load)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def flip(t: np.ndarray, se: float, sp: float, rng: np.random.Generator) -> np.ndarray:
    """What a detector with sensitivity se and specificity sp reports for the true 0/1 treatment t."""
    u = rng.random(len(t))
    return np.where(t == 1, u < se, u > sp).astype(float)


def evaluated_rates(se: float, sp: float, n_pos: int, n_neg: int, rng: np.random.Generator) -> DetectorRates:
    """Rates as a detector evaluation on n_pos + n_neg labelled images would measure them (binomial noise)."""
    return DetectorRates(rng.binomial(n_pos, se) / n_pos, rng.binomial(n_neg, sp) / n_neg, n_pos, n_neg, "simulated")


def stratified(n: int, ate: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four strata with different true propensities and baselines; constant effect ``ate``."""
    rng = np.random.default_rng(seed)
    stratum = rng.integers(0, 4, size=n)
    pi = np.array([0.2, 0.4, 0.6, 0.8])[stratum]
    base = np.array([0.0, 1.0, -0.5, 0.8])[stratum]
    t = (rng.random(n) < pi).astype(float)
    y = base + ate * t + rng.normal(size=n)
    w = np.eye(4)[stratum][:, 1:]
    return y, t, w


def test_without_covariates_equals_matrix_method():
    rng = np.random.default_rng(0)
    y, t, _ = stratified(5000, ate=0.5, seed=0)
    t_obs = flip(t, 0.85, 0.9, rng)
    rates = DetectorRates(0.85, 0.9)
    res = misclassification_corrected_ate(y, t_obs, rates=rates, n_draws=200)
    p_obs = t_obs.mean()
    p_true = (p_obs + 0.9 - 1) / (0.85 + 0.9 - 1)
    ppv, npv = 0.85 * p_true / p_obs, 0.9 * (1 - p_true) / (1 - p_obs)
    diff = y[t_obs == 1].mean() - y[t_obs == 0].mean()
    assert res["ate_uncorrected"]["estimate"] == pytest.approx(diff)
    assert res["ate_corrected"]["estimate"] == pytest.approx(diff / (ppv + npv - 1))
    assert res["prevalence_corrected"] == pytest.approx(p_true)
    assert "none" in res["rate_uncertainty"]


def test_perfect_detector_gives_aipw():
    y, t, w = stratified(3000, ate=0.5, seed=1)
    res = misclassification_corrected_ate(
        y,
        t,
        w,
        rates=DetectorRates(1.0, 1.0),
        propensity_model=LogisticRegression(),
        outcome_model=LinearRegression(),
        n_draws=200,
    )
    assert res["ate_corrected"]["estimate"] == pytest.approx(res["ate_uncorrected"]["estimate"])
    assert res["ate_corrected_fixed_rates"]["stderr"] == pytest.approx(res["ate_uncorrected"]["stderr"])


def test_flipped_treatment_corrected_recovers_true_ate():
    """Detector with Se 0.85, Sp 0.90 measured on 300 + 300 labelled images; true effect 0.5."""
    rng = np.random.default_rng(2)
    y, t, w = stratified(20000, ate=0.5, seed=2)
    t_obs = flip(t, 0.85, 0.9, rng)
    rates = evaluated_rates(0.85, 0.9, 300, 300, rng)
    # saturated nuisance models on the stratum dummies are exact
    res = misclassification_corrected_ate(
        y,
        t_obs,
        w,
        rates=rates,
        propensity_model=LogisticRegression(C=1e6),
        outcome_model=LinearRegression(),
        n_draws=2000,
        seed=0,
    )
    naive, corrected = res["ate_uncorrected"], res["ate_corrected"]
    assert naive["ci_high"] < 0.5 and naive["estimate"] > 0  # biased toward 0, well beyond sampling error
    assert corrected["ci_low"] <= 0.5 <= corrected["ci_high"]
    # the interval carries the rates' uncertainty: wider than with the rates taken as exact
    fixed = res["ate_corrected_fixed_rates"]
    assert corrected["ci_high"] - corrected["ci_low"] > 1.2 * (fixed["ci_high"] - fixed["ci_low"])
    assert res["n_clipped"] == 0
    assert res["attenuation"] < 0.85


@pytest.mark.slow
def test_simulated_catalog_detector_errors_corrected():
    """causal.simulate's catalog (confounded, heterogeneous face effect): face_present seen through a detector with
    Se 0.9 / Sp 0.93, measured on 400 + 400 labelled images. Gradient-boosted nuisances, clusters = titles."""
    sim = simulate_catalog(n_titles=1000, seed=1)
    data = sim.data
    rng = np.random.default_rng(3)
    t_obs = flip(data["face_present"].to_numpy().astype(float), 0.9, 0.93, rng)
    rates = evaluated_rates(0.9, 0.93, 400, 400, rng)
    w = pd.get_dummies(
        data[["genre", "country", "title_popularity", "release_year"]], drop_first=True, dtype=float
    ).to_numpy()
    with threadpool_limits(limits=1, user_api="openmp"):
        res = misclassification_corrected_ate(
            data["take_rate"].to_numpy(),
            t_obs,
            w,
            rates=rates,
            propensity_model=HistGradientBoostingClassifier(max_iter=100, random_state=0),
            outcome_model=HistGradientBoostingRegressor(max_iter=100, random_state=0),
            n_folds=3,
            seed=0,
            groups=data["title_id"].to_numpy(),
        )
    truth = sim.truth["ate"]
    assert res["ate_uncorrected"]["ci_high"] < truth
    assert res["ate_corrected"]["ci_low"] <= truth <= res["ate_corrected"]["ci_high"]


def test_cached_predictions_match_internal_fit():
    rng = np.random.default_rng(4)
    y, t, w = stratified(2000, ate=0.5, seed=4)
    t_obs = flip(t, 0.85, 0.9, rng)
    models = {"propensity_model": LogisticRegression(), "outcome_model": LinearRegression()}
    e, mu1, mu0 = cross_fit_nuisances(y, t_obs, w, **models, n_folds=5, seed=0)
    rates = DetectorRates(0.85, 0.9, 200, 200)
    fitted = misclassification_corrected_ate(y, t_obs, w, rates=rates, **models, seed=0, n_draws=300)
    cached = misclassification_corrected_ate(
        y, t_obs, rates=rates, propensity=e, outcome_treated=mu1, outcome_control=mu0, seed=0, n_draws=300
    )
    assert cached["ate_corrected"] == pytest.approx(fitted["ate_corrected"])
    with pytest.raises(ValueError, match="all three"):
        misclassification_corrected_ate(y, t_obs, rates=rates, propensity=e)


def test_cluster_robust_standard_error():
    y, t, w = stratified(2000, ate=0.5, seed=5)
    groups = np.arange(2000) // 10
    y = y + np.random.default_rng(5).normal(scale=2.0, size=200)[groups] * t  # a title-level effect shock
    kwargs = {"rates": DetectorRates(0.9, 0.9), "n_draws": 200}
    iid = misclassification_corrected_ate(y, t, **kwargs)
    clustered = misclassification_corrected_ate(y, t, groups=groups, **kwargs)
    assert clustered["ate_corrected"]["estimate"] == pytest.approx(iid["ate_corrected"]["estimate"])
    assert clustered["ate_corrected_fixed_rates"]["stderr"] > 1.5 * iid["ate_corrected_fixed_rates"]["stderr"]


def test_rates_from_metrics_layouts(tmp_path):
    nested = {"image_level": {"sensitivity": 0.9, "specificity": 0.8}, "n_positive": 120, "n_negative": 80}
    rates = DetectorRates.from_metrics(nested)
    assert (rates.sensitivity, rates.specificity, rates.n_positive, rates.n_negative) == (0.9, 0.8, 120, 80)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"image_level": {"tp": 90, "fn": 10, "tn": 76, "fp": 4}}))
    rates = DetectorRates.from_metrics(path)
    assert (rates.sensitivity, rates.specificity, rates.n_positive, rates.n_negative) == (0.9, 0.95, 100, 80)
    assert rates.source == str(path)
    assert DetectorRates.from_config({"sensitivity": 0.9, "specificity": 0.7}).has_counts is False
    assert DetectorRates.from_config({"metrics_file": str(path)}).n_positive == 100
    se, sp = DetectorRates(0.9, 0.95, 100, 80).draw(20000, np.random.default_rng(0))
    assert se.mean() == pytest.approx(90.5 / 101, abs=0.002)  # Jeffreys posterior mean
    assert se.std() == pytest.approx(np.sqrt(0.9 * 0.1 / 100), rel=0.1)


def test_rate_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="no better than chance"):
        DetectorRates(0.5, 0.4)
    with pytest.raises(ValueError, match="sensitivity must be"):
        DetectorRates(1.2, 0.9)
    with pytest.raises(ValueError, match="both n_positive and n_negative"):
        DetectorRates(0.9, 0.9, n_positive=10)
    bad = tmp_path / "metrics.json"
    bad.write_text(json.dumps({"image_level": {"sensitivity": 0.9}}))
    with pytest.raises(ValueError, match=f"{bad}.*specificity"):
        DetectorRates.from_metrics(bad)
    with pytest.raises(FileNotFoundError, match="not found"):
        DetectorRates.from_metrics(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="metrics_file, or both"):
        DetectorRates.from_config({"sensitivity": 0.9})
    with pytest.raises(ValueError, match="binary"):
        misclassification_corrected_ate(np.zeros(4), np.array([0, 1, 2, 1]), rates=DetectorRates(0.9, 0.9))
