"""Overlap: Crump trimming (cross-checked with EconML), balance, effective sample size, trimming reports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from econml.dr._drlearner import _calculate_crump_threshold

from causal.overlap import (
    balancing_weights,
    crump_threshold,
    diagnose,
    effective_sample_size,
    from_config,
    propensity_histogram,
    standardized_mean_differences,
    trim_mask,
)


@pytest.mark.parametrize(("a", "b"), [(0.5, 0.5), (1.0, 1.0), (2.0, 2.0), (0.4, 1.5)])
def test_crump_threshold_matches_econml(a, b):
    e = np.random.default_rng(0).beta(a, b, size=4000)
    ours = crump_threshold(e)
    theirs = _calculate_crump_threshold(np.column_stack([1 - e, e]))  # EconML subtracts a 1e-10 tolerance
    assert ours == pytest.approx(theirs, abs=1e-9)
    assert 0.0 < ours < 0.5


def test_crump_trims_nothing_with_good_overlap():
    e = np.random.default_rng(1).uniform(0.3, 0.7, size=2000)
    assert crump_threshold(e) == 0.0
    keep, alpha = trim_mask(e, rule="crump")
    assert keep.all() and alpha == 0.0


def test_fixed_rule_and_errors():
    e = np.array([0.005, 0.05, 0.5, 0.95, 0.995])
    keep, alpha = trim_mask(e, rule="fixed", threshold=0.01)
    assert alpha == 0.01 and keep.tolist() == [False, True, True, True, False]
    assert trim_mask(e, rule="none")[0].all()
    with pytest.raises(ValueError, match="overlap.rule"):
        trim_mask(e, rule="crumb")
    with pytest.raises(ValueError, match="overlap.threshold"):
        trim_mask(e, rule="fixed", threshold=0.6)
    with pytest.raises(ValueError, match="overlap.weighting"):
        balancing_weights(e, np.ones(5), "atm")
    with pytest.raises(ValueError, match="config group overlap: unknown key"):
        from_config({"rule": "fixed", "treshold": 0.1})


def test_smd_known_value():
    x = pd.DataFrame({"a": [1.0, 2.0, 3.0, 3.0, 4.0, 5.0], "const": [1.0] * 6})
    t = np.array([0, 0, 0, 1, 1, 1])
    # means 2 and 4, variances 1 and 1 -> SMD 2
    smd = standardized_mean_differences(x, t)
    assert smd["a"] == pytest.approx(2.0) and smd["const"] == 0.0


def test_weighting_with_the_true_propensity_balances_a_confounder():
    rng = np.random.default_rng(2)
    n = 20000
    x = rng.normal(size=n)
    e = 1.0 / (1.0 + np.exp(-x))
    t = rng.binomial(1, e)
    cov = pd.DataFrame({"x": x, "noise": rng.normal(size=n)})
    raw = standardized_mean_differences(cov, t)
    assert raw["x"] > 0.5  # confounded
    for kind in ("ipw", "overlap"):
        weighted = standardized_mean_differences(cov, t, balancing_weights(e, t, kind))
        # Sampling error of a weighted SMD at n = 20000 is about 0.02; 0.06 is three of those.
        assert abs(weighted["x"]) < 0.06, kind
        assert abs(weighted["noise"]) < 0.06, kind


def test_effective_sample_size():
    assert effective_sample_size(np.ones(50)) == pytest.approx(50.0)
    assert effective_sample_size(np.array([1e6, 1.0, 1.0])) == pytest.approx(1.0, abs=1e-5)


def test_diagnose_reports_trimming_per_arm_and_group():
    rng = np.random.default_rng(3)
    n = 3000
    g = rng.choice(["a", "b", "c"], size=n)
    x = rng.normal(size=n) + (g == "c") * 2.0
    e = 1.0 / (1.0 + np.exp(-1.5 * x))
    t = rng.binomial(1, e)
    cov = pd.DataFrame({"x": x, "g=c": (g == "c").astype(float)})
    result, keep = diagnose(e, t, cov, pd.DataFrame({"g": g}), rule="fixed", threshold=0.05, bins=20)
    assert result["trimmed"] == int((~keep).sum()) > 0
    assert result["trimmed_by_arm"]["treated"] + result["trimmed_by_arm"]["control"] == result["trimmed"]
    by_group = {r["level"]: r for r in result["trimmed_by_group"]["g"]}
    assert sum(r["trimmed"] for r in by_group.values()) == result["trimmed"]
    assert sum(r["n"] for r in by_group.values()) == n
    assert by_group["c"]["trimmed"] > by_group["a"]["trimmed"]  # the shifted group loses most
    assert abs(result["smd_weighted"]["x"]) < abs(result["smd_raw"]["x"])
    assert set(result["smd_weighted_by"]) == {"ipw", "overlap"}
    hist = result["histogram"]
    assert len(hist["edges"]) == 21 and sum(hist["treated"]) == int(t.sum()) and sum(hist["control"]) == n - t.sum()
    assert result["ess"]["unweighted"]["treated"] == pytest.approx(float(t[keep].sum()))
    assert result["ess"]["ipw"]["treated"] < result["ess"]["unweighted"]["treated"]


def test_propensity_histogram_counts():
    hist = propensity_histogram(np.array([0.0, 0.1, 0.55, 1.0]), np.array([1, 0, 1, 0]), bins=2)
    assert hist == {"edges": [0.0, 0.5, 1.0], "treated": [1, 1], "control": [1, 1]}
