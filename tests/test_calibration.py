"""Calibration against randomised rows (causal.calibration) and the simulator's explore traffic.

The planted bias is exact: the simulated catalog with a 10% randomised explore share, then the take rate of every
treated observational row raised by DELTA (an artefact the randomised rows do not share, e.g. selective logging):
the observational AIPW estimate then exceeds the experimental one by DELTA in expectation, and by 0 without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causal.calibration import calibrate
from causal.simulate import simulate_catalog

REPO = Path(__file__).resolve().parents[1]
DELTA = 0.02  # about 6 standard errors of the bias at 4000 rows, 10% randomised
# Small fixed nuisances instead of the shipped learner choice, to keep the test at seconds (same code path).
SHRINK = [
    "nuisance=xgboost",
    "nuisance.folds=3",
    "nuisance.classifier.n_estimators=60",
    "nuisance.regressor.n_estimators=60",
]


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_explore_share_randomises_a_share_and_leaves_other_catalogs_unchanged():
    base = simulate_catalog(n_titles=300, seed=3)
    same = simulate_catalog(n_titles=300, seed=3, explore_share=0.0)
    pd.testing.assert_frame_equal(base.data, same.data)
    assert "explore" not in base.data.columns
    cat = simulate_catalog(n_titles=300, seed=3, explore_share=0.1)
    explore = cat.data["explore"].to_numpy()
    assert abs(explore.mean() - 0.1) < 3 * np.sqrt(0.1 * 0.9 / explore.size)
    assert np.all(cat.units["propensity"].to_numpy()[explore] == 0.5)  # a fair coin at face_share, whatever x
    kept = ~explore  # rows outside explore traffic keep their treatment
    assert np.array_equal(cat.data["face_present"].to_numpy()[kept], base.data["face_present"].to_numpy()[kept])
    with pytest.raises(ValueError, match="explore_share"):
        simulate_catalog(n_titles=10, explore_share=1.0)


def _planted_table(path: Path, delta: float, seed: int) -> Path:
    cat = simulate_catalog(n_titles=400, seed=seed, explore_share=0.1)
    table = cat.data.drop(columns=[c for c in cat.data.columns if c.endswith("embedding")], errors="ignore")
    observational_treated = ~table["explore"] & table["face_present"].astype(bool)
    table.loc[observational_treated, "take_rate"] += delta
    table.to_parquet(path)
    return path


@pytest.mark.parametrize("delta", [DELTA, 0.0])
def test_bias_interval_covers_the_planted_bias(tmp_path, delta):
    from causal.pipeline import run

    table = _planted_table(tmp_path / "catalog.parquet", delta, seed=11)
    cfg = _compose(
        ["data=table", f"data.path={table}", "data.randomised_column=explore", "steps=[calibration]", *SHRINK]
    )
    cal = run(cfg, tmp_path / "run")["calibration"]
    assert cal["bias_ci_low"] <= delta <= cal["bias_ci_high"], cal
    assert cal["n_randomised"] == int(pd.read_parquet(table)["explore"].sum())
    if delta:
        assert cal["bias_ci_low"] > 0 and "overestimates" in cal["sentence"]
    assert set(cal["calibrated"]) == {"genre", "country"}


def test_calibrate_by_hand_and_refuses_a_table_without_randomised_rows():
    rng = np.random.default_rng(0)
    n = 400
    randomised = np.arange(n) < 100
    t = rng.integers(0, 2, size=n)
    y = 2.0 * t + rng.normal(size=n)
    scores = np.where(randomised, 0.0, 2.5 + rng.normal(scale=0.5, size=n))
    out = calibrate(y, t, randomised, scores)
    exp = y[randomised & (t == 1)].mean() - y[randomised & (t == 0)].mean()
    assert out["experimental"]["estimate"] == pytest.approx(exp)
    assert out["bias"] == pytest.approx(scores[~randomised].mean() - exp)
    assert out["bias_stderr"] == pytest.approx(np.hypot(out["observational"]["stderr"], out["experimental"]["stderr"]))
    with pytest.raises(ValueError, match="randomised"):
        calibrate(y, t, np.zeros(n, dtype=bool), scores)


def test_calibration_step_needs_the_randomised_column_before_fitting():
    from causal.validate import ConfigError, validate_config

    with pytest.raises(ConfigError, match="data.randomised_column"):
        validate_config(_compose(["steps=[calibration]"]))


def test_clustered_rows_widen_the_bias_interval_to_the_spread_over_replications():
    """Rows of a title share a shock: the cluster-robust bias standard error matches the bias's spread over 300
    replications (within 15%, about 3 standard errors of a 300-draw SD), the plain one is too small, and with
    one row per cluster the cluster-robust error equals the plain one to within the ddof terms."""
    n, size = 2000, 20
    titles = np.arange(n) // size
    randomised = (titles % 10) == 0  # whole titles randomised ...
    randomised[np.arange(n) % size == 1] = True  # ... and one row of every other title: titles span both sides
    biases, cluster_se, plain_se = [], [], []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        shock = rng.normal(scale=1.0, size=n // size)[titles]
        t = rng.integers(0, 2, size=n)
        y = 2.0 * t + shock + rng.normal(size=n)
        scores = 2.0 + 2.0 * shock + rng.normal(size=n)  # AIPW-like scores carrying the title shock
        out = calibrate(y, t, randomised, scores, clusters=titles)
        biases.append(out["bias"])
        cluster_se.append(out["bias_stderr"])
        plain_se.append(calibrate(y, t, randomised, scores)["bias_stderr"])
    spread = np.std(biases, ddof=1)
    assert np.mean(cluster_se) == pytest.approx(spread, rel=0.15)
    assert np.mean(plain_se) < 0.75 * spread  # 0.62 here: the shocks are ignored
    rng = np.random.default_rng(1)
    t = rng.integers(0, 2, size=n)
    y, scores = 2.0 * t + rng.normal(size=n), 2.0 + rng.normal(size=n)
    single = calibrate(y, t, randomised, scores, clusters=np.arange(n))
    plain = calibrate(y, t, randomised, scores)
    assert single["bias_stderr"] == pytest.approx(plain["bias_stderr"], rel=0.02)
    assert single["observational"]["n_clusters"] == int((~randomised).sum())
