"""Sensitivity analysis: published numbers reproduced, EconML bounds, and refutations on a simulator.

The Darfur data of Cinelli & Hazlett (2020) ship inside PySensemakr's wheel (``sensemakr/data/darfur.csv``).
PySensemakr itself breaks on pandas 3, so it is never installed: the ``darfur`` fixture downloads the pinned wheel
once with ``pip download --no-deps`` into pytest's cache folder and reads the CSV out of the zip. Without a
reachable package index the Darfur tests are skipped with the reason shown.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from econml.dml import LinearDML
from sklearn.linear_model import LinearRegression
from threadpoolctl import threadpool_limits

from causal.sensitivity import (
    REFUTATIONS,
    benchmark_bounds,
    dml_sensitivity,
    dml_sensitivity_from_residuals,
    e_value,
    e_value_for_effect,
    e_value_from_smd,
    ovb_contour_plot,
    ovb_robustness,
    refute,
    robustness_value,
)
from causal.simulate import simulate_catalog


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_blas():
    """These tests solve many small least-squares problems; threaded BLAS only contends on a shared 2-core runner
    (measured 20x slower under load)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


PYSENSEMAKR = "PySensemakr==0.0.8"
DARFUR_COVARIATES = ("village", "female", "age", "farmer_dar", "herder_dar", "pastvoted", "hhsize_darfur")


@pytest.fixture(scope="session")
def darfur(request, tmp_path_factory) -> pd.DataFrame:
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    folder = Path(cache.mkdir("pysensemakr")) if cache is not None else tmp_path_factory.mktemp("pysensemakr")
    wheels = sorted(folder.glob("PySensemakr-0.0.8-*.whl"))
    if not wheels:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            PYSENSEMAKR,
            "-d",
            str(folder),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as err:
            pytest.skip(f"cannot download {PYSENSEMAKR} (the Darfur data): {err}")
        wheels = sorted(folder.glob("PySensemakr-0.0.8-*.whl"))
        if proc.returncode != 0 or not wheels:
            pytest.skip(
                f"cannot download {PYSENSEMAKR} (the Darfur data) from the package index: {proc.stderr.strip()[-300:]}"
            )
    with zipfile.ZipFile(wheels[0]) as wheel, wheel.open("sensemakr/data/darfur.csv") as f:
        return pd.read_csv(f)


@pytest.fixture(scope="module")
def darfur_ovb(darfur) -> dict:
    return ovb_robustness(
        darfur, "directlyharmed", "peacefactor", DARFUR_COVARIATES, benchmark_covariates=["female"], kd=[1, 2, 3]
    )


# ------------------------------------------------------------------------------------------------ E-values


def test_e_value_worked_examples():
    """VanderWeele & Ding (2017): RR 3.9 -> E-value 7.26; its lower confidence limit 1.8 -> 3.0."""
    res = e_value(3.9, 1.8, 8.7)
    assert res["e_value"] == pytest.approx(7.26, abs=0.005)
    assert res["e_value_ci"] == pytest.approx(3.0, abs=0.005)
    assert e_value(1.8)["e_value"] == pytest.approx(3.0, abs=0.005)


def test_e_value_protective_and_null_interval():
    # a protective RR is inverted: RR 1/3.9 has the same E-value; its CI limit nearest 1 is the upper one
    res = e_value(1 / 3.9, 1 / 8.7, 1 / 1.8)
    assert res["e_value"] == pytest.approx(7.26, abs=0.005)
    assert res["e_value_ci"] == pytest.approx(3.0, abs=0.005)
    assert e_value(1.3, 0.9, 1.8)["e_value_ci"] == 1.0
    assert e_value(1.0)["e_value"] == 1.0
    with pytest.raises(ValueError, match="rr must be"):
        e_value(-1.0)
    with pytest.raises(ValueError, match="above"):
        e_value(2.0, 3.0, 1.0)


def test_e_value_from_smd_states_the_approximation():
    d, se = 0.5, 0.1
    res = e_value_from_smd(d, se)
    assert res["rr"] == pytest.approx(np.exp(0.91 * d))
    assert res["ci_low"] == pytest.approx(np.exp(0.91 * d - 1.78 * se), rel=1e-3)  # 0.91 * 1.96 = 1.78
    assert res["ci_high"] == pytest.approx(np.exp(0.91 * d + 1.78 * se), rel=1e-3)
    rr_low = res["ci_low"]
    assert res["e_value_ci"] == pytest.approx(rr_low + np.sqrt(rr_low * (rr_low - 1)))
    assert "exp(0.91 * d)" in res["approximation"]
    # a negative effect on take rate is treated symmetrically
    assert e_value_for_effect(-0.02, 0.004, 0.04)["e_value"] == pytest.approx(e_value_from_smd(0.5)["e_value"])


# ----------------------------------------------------------------------------------- Cinelli & Hazlett


@pytest.mark.slow  # fits a regression with 486 village fixed effects
def test_darfur_published_numbers(darfur_ovb):
    """Cinelli & Hazlett (2020), Darfur: 0.097 (se 0.023), partial R2 2.2%, RV 13.9%, RV_alpha 7.6%, dof 783."""
    res = darfur_ovb
    assert res["estimate"] == pytest.approx(0.097, abs=5e-4)
    assert res["stderr"] == pytest.approx(0.023, abs=5e-4)
    assert res["t_value"] == pytest.approx(4.18, abs=5e-3)
    assert res["dof"] == 783
    assert res["partial_r2"] == pytest.approx(0.022, abs=5e-4)
    assert res["robustness_value"] == pytest.approx(0.139, abs=5e-4)
    assert res["robustness_value_alpha"] == pytest.approx(0.076, abs=5e-4)


@pytest.mark.slow  # fits a regression with 486 village fixed effects
def test_darfur_female_benchmark_bounds(darfur_ovb):
    """Bounds from `female` (sensemakr's Darfur output): 1x female R2dz.x 0.9%, R2yz.dx 12.5%; adjusted estimates
    0.075 / 0.053 / 0.030 for 1x / 2x / 3x, the last one no longer significant."""
    res = darfur_ovb
    b1, b2, b3 = res["bounds"]
    assert [b["label"] for b in res["bounds"]] == ["1x female", "2x female", "3x female"]
    assert b1["r2dz_x"] == pytest.approx(0.009, abs=5e-4)
    assert b1["r2yz_dx"] == pytest.approx(0.125, abs=5e-4)
    assert b2["r2dz_x"] == pytest.approx(0.018, abs=5e-4)
    assert b3["r2yz_dx"] == pytest.approx(0.374, abs=5e-4)
    assert [round(b["adjusted_estimate"], 3) for b in res["bounds"]] == [0.075, 0.053, 0.030]
    assert b1["adjusted_ci_low"] > 0 and b2["adjusted_ci_low"] > 0 and b3["adjusted_ci_low"] < 0


@pytest.mark.slow  # fits a regression with 486 village fixed effects
def test_darfur_contour_plot(darfur_ovb, tmp_path):
    res = darfur_ovb
    path = ovb_contour_plot(res, tmp_path / "plots" / "ovb.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def linear_confounded(n: int, effect: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    w1, w2 = rng.normal(size=n), rng.normal(size=n)
    region = rng.choice(["eu", "us", "asia"], size=n)
    shift = pd.Series(region).map({"eu": 0.0, "us": 0.5, "asia": -0.5}).to_numpy()
    t = 0.8 * w1 - 0.4 * w2 + shift + rng.normal(size=n)
    y = effect * t + w1 + 0.5 * w2 + shift + rng.normal(size=n)
    return pd.DataFrame({"t": t, "y": y, "w1": w1, "w2": w2, "region": region})


def test_ovb_matches_closed_forms_and_categorical_benchmark():
    frame = linear_confounded(800, effect=0.2, seed=1)
    res = ovb_robustness(frame, "t", "y", ["w1", "w2", "region"], benchmark_covariates=["w1", "region"], kd=[0.5, 1])
    t, dof = res["t_value"], res["dof"]
    assert dof == 800 - 6  # intercept, t, w1, w2 and two region dummies
    assert res["partial_r2"] == pytest.approx(t**2 / (t**2 + dof))
    f = abs(t) / np.sqrt(dof)
    assert res["robustness_value"] == pytest.approx(0.5 * (np.sqrt(f**4 + 4 * f**2) - f**2))
    # RV_{q,alpha} is where a confounder with R2 = RV on both sides makes the adjusted t hit the critical value
    rv_a = res["robustness_value_alpha"]
    from causal.sensitivity import adjusted_effect

    adj = adjusted_effect(res["estimate"], res["stderr"], dof, rv_a, rv_a)
    from scipy import stats

    assert adj["adjusted_t"] == pytest.approx(stats.t.ppf(0.975, dof - 1), rel=1e-3)
    # confounding equal to RV_q removes the whole estimate
    rv = res["robustness_value"]
    assert adjusted_effect(res["estimate"], res["stderr"], dof, rv, rv)["adjusted_estimate"] == pytest.approx(
        0, abs=1e-10
    )
    assert set(res["benchmarks"]) == {"w1", "region"}
    assert len(res["bounds"]) == 4
    # the categorical benchmark uses the group partial R2 of its two dummies
    assert 0 < res["benchmarks"]["region"]["r2dxj_x"] < 1


def test_robustness_value_alpha_zero_when_not_significant():
    assert robustness_value(1.5, 500, alpha=0.05) == 0.0
    assert robustness_value(1.5, 500) > 0


def test_benchmark_bounds_reject_impossible_strength():
    with pytest.raises(ValueError, match="kd=30"):
        benchmark_bounds(0.05, 0.1, kd=30)


def test_ovb_input_errors():
    frame = linear_confounded(50, effect=0.2, seed=2)
    with pytest.raises(ValueError, match="benchmark covariate"):
        ovb_robustness(frame, "t", "y", ["w1"], benchmark_covariates=["w2"])
    with pytest.raises(ValueError, match="'nope'"):
        ovb_robustness(frame, "t", "y", ["nope"])
    with pytest.raises(ValueError, match="also listed"):
        ovb_robustness(frame, "t", "y", ["t", "w1"])


# ----------------------------------------------------------------------------------------- EconML DML


@pytest.fixture(scope="module")
def fitted_dml():
    frame = linear_confounded(1500, effect=0.3, seed=3)
    w = pd.get_dummies(frame[["w1", "w2", "region"]], drop_first=True, dtype=float).to_numpy()
    est = LinearDML(model_y=LinearRegression(), model_t=LinearRegression(), cv=3, random_state=0)
    est.fit(frame["y"].to_numpy(), frame["t"].to_numpy(), W=w, cache_values=True)
    return est


def test_dml_sensitivity_econml_api(fitted_dml):
    res = dml_sensitivity(fitted_dml, c_y=0.05, c_t=0.05, rho=1.0)
    ate = float(np.ravel(fitted_dml.ate())[0])
    assert res["estimate"] == pytest.approx(ate, rel=1e-6)
    assert res["ci_low"] < res["theta_low"] < ate < res["theta_high"] < res["ci_high"]
    assert 0 < res["robustness_value"] < res["robustness_value_theta"] < 1
    assert "Robustness Value" in res["summary"]
    # at c_y = c_t = RV (CI version, rho = 1) the lower confidence bound touches 0
    rv = res["robustness_value"]
    low, _ = fitted_dml.sensitivity_interval(c_y=rv, c_t=rv, rho=1.0)
    assert low == pytest.approx(0, abs=1e-4)
    # stronger confounding widens the bounds
    wider = dml_sensitivity(fitted_dml, c_y=0.2, c_t=0.2)
    assert wider["ci_low"] < res["ci_low"] and wider["ci_high"] > res["ci_high"]


def test_dml_sensitivity_from_cached_residuals_matches_estimator(fitted_dml):
    y_res, t_res = fitted_dml.residuals_[:2]
    ours = dml_sensitivity_from_residuals(y_res, t_res, c_y=0.05, c_t=0.05, rho=1.0)
    theirs = dml_sensitivity(fitted_dml, c_y=0.05, c_t=0.05, rho=1.0)
    for key in ("estimate", "theta_low", "theta_high", "ci_low", "ci_high", "robustness_value"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-6), key


def test_dml_sensitivity_rejects_other_estimators():
    with pytest.raises(TypeError, match="EconML"):
        dml_sensitivity(LinearRegression())


# ------------------------------------------------------------------------------------------ refutations


def ols_fit(confounders):
    """fit_fn for refute(): OLS of y on t + confounders + extras, with its estimate, stderr and 95% CI."""

    def fit(frame: pd.DataFrame, extra=()):
        import statsmodels.api as sm

        x = pd.get_dummies(frame[["t", *confounders, *extra]], drop_first=True, dtype=float)
        res = sm.OLS(frame["y"].to_numpy(), sm.add_constant(x, has_constant="add")).fit()
        low, high = res.conf_int().loc["t"]
        return {"estimate": res.params["t"], "stderr": res.bse["t"], "ci_low": low, "ci_high": high}

    return fit


def test_refutations_pass_for_a_correct_estimator():
    frame = linear_confounded(600, effect=0.3, seed=4)
    confounders = ("w1", "w2", "region")
    results = refute(
        ols_fit(confounders), frame, treatment="t", outcome="y", n_sims=20, seed=0, confounders=confounders
    )
    assert [r["name"] for r in results] == list(REFUTATIONS)
    by_name = {r["name"]: r for r in results}
    placebo = by_name["placebo_treatment"]
    assert placebo["ci_low"] <= 0 <= placebo["ci_high"]
    assert placebo["p_value"] == pytest.approx(1 / 21)  # the real effect is far outside the placebo spread
    assert all(r["passed"] for r in results), [r["reading"] for r in results]
    assert all(r["reading"] for r in results)


def test_refutations_catch_a_broken_estimator():
    """An estimator that forgets the confounders finds an effect on the dummy outcome and fails that test."""
    frame = linear_confounded(600, effect=0.3, seed=5)
    results = refute(
        ols_fit(()),
        frame,
        treatment="t",
        outcome="y",
        kinds=["dummy_outcome", "placebo_treatment"],
        n_sims=10,
        seed=0,
        confounders=("w1", "w2", "region"),
    )
    by_name = {r["name"]: r for r in results}
    assert not by_name["dummy_outcome"]["passed"]
    assert "failed" in by_name["dummy_outcome"]["reading"]
    assert by_name["placebo_treatment"]["passed"]  # a permuted treatment is unconfounded even for this estimator


def test_placebo_on_simulated_catalog():
    """causal.simulate's catalog (confounded face presence, true ATE 0.015): the placebo effect's interval covers 0
    and the real estimate lies outside every placebo estimate."""
    sim = simulate_catalog(n_titles=200, seed=0)
    frame = sim.data.rename(columns={"face_present": "t", "take_rate": "y"}).assign(t=lambda d: d["t"].astype(float))
    confounders = ("genre", "country", "title_popularity", "release_year")
    (placebo,) = refute(
        ols_fit(confounders), frame, treatment="t", outcome="y", kinds=["placebo_treatment"], n_sims=20, seed=0
    )
    assert placebo["passed"] and placebo["ci_low"] <= 0 <= placebo["ci_high"]
    assert placebo["p_value"] == pytest.approx(1 / 21)


def test_single_placebo_uses_the_refit_interval():
    frame = linear_confounded(400, effect=0.3, seed=6)
    (placebo,) = refute(
        ols_fit(("w1", "w2")), frame, treatment="t", outcome="y", kinds=["placebo_treatment"], n_sims=1, seed=0
    )
    assert placebo["interval_basis"] == "the refit's own confidence interval"
    assert placebo["ci_low"] <= 0 <= placebo["ci_high"]


def test_refute_input_errors():
    frame = linear_confounded(100, effect=0.3, seed=7)
    with pytest.raises(ValueError, match="unknown refutation"):
        refute(ols_fit(()), frame, treatment="t", outcome="y", kinds=["bootstrap"])
    with pytest.raises(ValueError, match="stderr"):
        refute(lambda f, extra=(): 0.1, frame, treatment="t", outcome="y", kinds=["data_subset"])
    with pytest.raises(ValueError, match="treatment column 'face'"):
        refute(ols_fit(()), frame, treatment="face", outcome="y")


@pytest.mark.slow
def test_pipeline_sensitivity_step(tmp_path):
    """The configured step after dml: contract keys, the OVB plot, refutations and the misclassification block."""
    from hydra import compose, initialize_config_dir

    from causal.pipeline import run

    conf = str(Path(__file__).resolve().parents[1] / "conf")
    overrides = [
        "data.n_titles=100",
        "nuisance=xgboost",
        "nuisance.folds=3",
        "nuisance.classifier.n_estimators=60",
        "nuisance.regressor.n_estimators=60",
        "estimator=linear_dml",
        "steps=[dml,sensitivity]",
        "sensitivity.analyses=[e_value,ovb,dml,refutations,misclassification]",
        "sensitivity.refutations.n_sims=2",
        "sensitivity.misclassification.sensitivity=0.95",
        "sensitivity.misclassification.specificity=0.97",
        "sensitivity.misclassification.n_draws=200",
    ]
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    results = run(cfg, tmp_path)
    sens = results["sensitivity"]
    assert sens["e_value"] > 1 and 1 <= sens["e_value_ci"] <= sens["e_value"]
    assert {"estimate", "stderr", "partial_r2", "robustness_value", "robustness_value_alpha"} <= set(sens["linear"])
    assert [b["label"] for b in sens["linear"]["bounds"]] == [f"{k}x title_popularity" for k in (1, 2, 3)]
    assert {"robustness_value", "ci_low", "ci_high"} <= set(sens["dml"])
    assert sens["dml"]["ci_low"] < results["ate_partially_linear"]["estimate"] < sens["dml"]["ci_high"]
    assert [r["name"] for r in sens["refutations"]] == list(REFUTATIONS)
    assert all({"name", "estimate", "passed", "reading"} <= set(r) for r in sens["refutations"])
    mis = results["misclassification"]
    assert (mis["sensitivity"], mis["specificity"]) == (0.95, 0.97)
    assert abs(mis["ate_corrected"]["estimate"]) > abs(mis["ate_uncorrected"]["estimate"])
    assert (tmp_path / results["plots"]["ovb_contour"]).exists()


def test_refutations_refit_the_runs_chosen_learners():
    """The refutation refits use the learners the nuisance step chose, not a fixed XGBoost."""
    from types import SimpleNamespace

    from sklearn.pipeline import Pipeline

    from causal.nuisance import CrossFitNuisance
    from causal.sensitivity.step import _refit_learners
    from causal.stacking import LogitStack

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    t = (rng.uniform(size=400) < 1 / (1 + np.exp(-x[:, 0]))).astype(int)
    y = x[:, 0] + 0.5 * t + rng.normal(size=400)
    for stack in ((), ("propensity",)):
        nuis = CrossFitNuisance(candidates=["linear", "spline"], stack=stack, random_state=0).fit(x, t, y)
        ctx = SimpleNamespace(nuisance=nuis, step_config=lambda name: {"n_jobs": 1, "folds": 5})
        t_model, y_model = _refit_learners(ctx, binary=True)
        chosen = nuis.selection_["propensity"]["chosen"]
        if chosen == "stack":
            assert isinstance(t_model, LogitStack) and len(t_model.estimators) >= 2
        else:
            assert isinstance(t_model, Pipeline) and chosen in ("linear", "spline")
        assert isinstance(y_model, Pipeline)  # linear / spline: RidgeCV after scaling, never XGBoost
