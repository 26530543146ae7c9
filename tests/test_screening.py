"""causal.screening: tests, intervals and BH adjustment against their textbook formulas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.multitest import multipletests

from causal.data import DataError
from causal.screening import COLUMNS, screen_features
from causal.simulate import simulate_catalog


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 400
    x = rng.standard_normal(n)
    flag = rng.random(n) < 0.4
    level = rng.choice(["a", "b", "c", "d"], n)
    y = 0.3 * x + 0.5 * flag + np.select([level == "b", level == "c"], [0.4, -0.3], 0.0) + rng.standard_normal(n)
    return pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(n)],
            "title_id": [f"t{k // 4}" for k in range(n)],
            "shop_id": rng.integers(0, 5, n),
            "x": x,
            "flag": flag,
            "level": level,
            "noise": rng.standard_normal(n),
            "y": y,
        }
    )


def test_columns_kinds_and_skips(frame):
    data = frame.assign(
        const=1.0,
        empty=np.nan,
        emb=[np.zeros(3)] * len(frame),
        code=[f"u{k}" for k in range(len(frame))],
        plays=frame["y"] * 3,
    )
    table = screen_features(data, "y", exclude=["plays"])
    assert list(table.columns[: len(COLUMNS)]) == COLUMNS
    assert set(table["feature"]) == {"x", "flag", "level", "noise"}
    kinds = dict(zip(table["feature"], table["kind"]))
    tests = dict(zip(table["feature"], table["test"]))
    assert kinds == {"x": "continuous", "noise": "continuous", "flag": "binary", "level": "categorical"}
    assert tests == {"x": "pearson", "noise": "pearson", "flag": "diff_means", "level": "anova"}
    assert table["rank"].tolist() == list(range(1, 5))
    assert table["p_value"].is_monotonic_increasing
    # Explicit features are screened even if they look like ids.
    assert screen_features(data, "y", ["shop_id"])["kind"].iloc[0] == "continuous"


def test_pearson_ci_is_fisher_z(frame):
    row = screen_features(frame, "y", ["x"]).iloc[0]
    r, p = stats.pearsonr(frame["x"], frame["y"])
    z, se = np.arctanh(r), 1 / np.sqrt(len(frame) - 3)
    q = stats.norm.ppf(0.975)
    assert row["estimate"] == pytest.approx(r)
    assert row["ci_low"] == pytest.approx(np.tanh(z - q * se), rel=1e-9)
    assert row["ci_high"] == pytest.approx(np.tanh(z + q * se), rel=1e-9)
    assert row["p_value"] == pytest.approx(p)
    assert row["n"] == len(frame)


def test_difference_in_means_ci_is_welch(frame):
    row = screen_features(frame, "y", ["flag"]).iloc[0]
    a, b = frame.loc[frame["flag"], "y"], frame.loc[~frame["flag"], "y"]
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    diff = a.mean() - b.mean()
    assert row["estimate"] == pytest.approx(diff)
    assert row["ci_low"] == pytest.approx(diff - half, rel=1e-9)
    assert row["ci_high"] == pytest.approx(diff + half, rel=1e-9)
    assert row["p_value"] == pytest.approx(2 * stats.t.sf(abs(diff) / np.sqrt(va + vb), df), rel=1e-9)
    assert row["levels"] == "1 - 0"
    assert row["effect_r"] == pytest.approx(np.corrcoef(frame["flag"], frame["y"])[0, 1])


def test_anova_eta_squared_and_its_noncentral_f_interval(frame):
    row = screen_features(frame, "y", ["level"]).iloc[0]
    fit = smf.ols("y ~ C(level)", data=frame).fit()
    anova = sm.stats.anova_lm(fit)
    ss_between, ss_resid = anova.loc["C(level)", "sum_sq"], anova.loc["Residual", "sum_sq"]
    assert row["estimate"] == pytest.approx(ss_between / (ss_between + ss_resid))
    assert row["f_statistic"] == pytest.approx(anova.loc["C(level)", "F"])
    assert row["p_value"] == pytest.approx(anova.loc["C(level)", "PR(>F)"])
    # The interval inverts the noncentral F: at its ends the observed F sits at the 97.5% / 2.5% quantiles.
    n, k = len(frame), 4
    lam = [n * e / (1 - e) for e in (row["ci_low"], row["ci_high"])]
    F = row["f_statistic"]
    assert stats.ncf.cdf(F, k - 1, n - k, lam[0]) == pytest.approx(0.975, abs=1e-4)
    assert stats.ncf.cdf(F, k - 1, n - k, lam[1]) == pytest.approx(0.025, abs=1e-4)
    assert row["ci_low"] < row["estimate"] < row["ci_high"]


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg by the formula: min over j >= i of p_(j) m / j, capped at 1."""
    m = len(p)
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def test_benjamini_hochberg_over_all_features(frame):
    rng = np.random.default_rng(0)
    wide = frame.assign(**{f"z{k}": rng.standard_normal(len(frame)) + 0.02 * k * frame["y"] for k in range(12)})
    table = screen_features(wide, "y", alpha=0.1)
    p = table["p_value"].to_numpy()
    np.testing.assert_allclose(table["p_adjusted"], _bh(p), rtol=1e-12)
    np.testing.assert_allclose(table["p_adjusted"], multipletests(p, method="fdr_bh")[1], rtol=1e-12)
    assert (table["significant"] == (table["p_adjusted"] < 0.1)).all()


def test_missing_values_are_left_out_per_feature(frame):
    data = frame.copy()
    data.loc[:9, "x"] = np.nan
    data.loc[5:7, "y"] = np.nan
    row = screen_features(data, "y", ["x", "flag"]).set_index("feature")
    assert row.loc["x", "n"] == len(frame) - 10
    assert row.loc["flag", "n"] == len(frame) - 3
    keep = data[["x", "y"]].dropna()
    assert row.loc["x", "estimate"] == pytest.approx(stats.pearsonr(keep["x"], keep["y"])[0])


def test_errors_and_empty_result(frame):
    with pytest.raises(DataError, match="eng.csv: missing outcome column 'take_rate'"):
        screen_features(frame, "take_rate", source="eng.csv")
    with pytest.raises(DataError, match=r"missing feature column\(s\) \['nope'\]"):
        screen_features(frame, "y", ["nope"])
    with pytest.raises(DataError, match="outcome column 'level' must be numeric"):
        screen_features(frame, "level")
    empty = screen_features(frame[["image_id", "y"]], "y")
    assert empty.empty and list(empty.columns[: len(COLUMNS)]) == COLUMNS


def test_on_the_simulator_confounders_rank_high_and_noise_does_not():
    data = simulate_catalog(n_titles=400, artworks_per_title=5, seed=0).data
    table = screen_features(data, "take_rate", exclude=["plays", "impressions"]).set_index("feature")
    for feature in ("title_popularity", "genre", "face_present"):
        assert table.loc[feature, "significant"], feature
    assert not table.loc["img_colourfulness", "significant"]
    assert table.loc["face_present", "estimate"] > 0
