"""Rosenbaum bounds (causal.sensitivity.rosenbaum) against printed and independent results, and their behaviour.

The data: the lead study of Morton et al. (1982), 33 pairs of children (blood lead of a child whose parent worked in
a battery factory, and of a matched control child, micrograms/dl), as typed in R package rbounds' ``psens`` example
and analysed in Rosenbaum (2002), Observational Studies, 2nd ed., section 4.3.3.

What is checked against print. The course notes "Stat 921 Notes 16" (Wharton, reading for Rosenbaum 2002, ch. 4.3;
https://studylib.net/doc/7489897/notes-16---wharton-statistics-department) print R's exact signed-rank test of
these pairs (``exactRankTests::wilcox.exact``, zeros dropped): ``V = 499, p-value = 8.037e-07`` (two-sided). The
exact bound at Gamma = 1 is that test, so ``signed_rank_bound_exact`` must give those digits; for Gamma > 1 the same
code runs with P(positive) = Gamma / (1 + Gamma) in place of 1/2.

What is checked against an independent library. At Gamma = 1 the normal-approximation bound is scipy's Wilcoxon
test (Pratt's zeros for Rosenbaum's convention, Wilcoxon's for rbounds'), and the exact bound is scipy's exact test.

What is checked against Rosenbaum's own software for Gamma > 1. ``senWilcox`` of Rosenbaum's R package DOS2 (the
normal approximation, the zero difference ranked and given weight 0), whose documentation states that its lead
example "reproduces parts of Tables 4.3 and 4.4 in Rosenbaum (2002)", was run in R 4.2.2 on these 33 differences
(``senWilcox(d, gamma=g)$pval``; Gamma critical by ``uniroot`` at tolerance 1e-12). Its output, printed to ten
significant digits, is ``SENWILCOX`` below; this implementation must match it to those digits. The four-decimal
figures Rosenbaum (2002) prints in Table 4.3 are those values rounded (0.0018, 0.0136, 0.0388, 0.0468 at Gamma 2, 3,
4, 4.25); no copy of the book itself was read here.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from causal.sensitivity.rosenbaum import (
    gamma_critical,
    rosenbaum_bounds,
    signed_rank_bound_exact,
    signed_rank_bounds,
)

EXPOSED = [38, 23, 41, 18, 37, 36, 23, 62, 31, 34, 24, 14, 21, 17, 16, 20, 15, 10, 45, 39, 22, 35, 49, 48, 44, 35,
           43, 39, 34, 13, 73, 25, 27]  # fmt: skip
CONTROL = [16, 18, 18, 24, 19, 11, 10, 15, 16, 18, 18, 13, 19, 10, 16, 16, 24, 13, 9, 14, 21, 19, 7, 18, 19, 12, 11,
           22, 25, 16, 13, 11, 13]  # fmt: skip
LEAD = np.array(EXPOSED, dtype=float) - np.array(CONTROL, dtype=float)
# DOS2::senWilcox(d, gamma)$pval on these pairs, R 4.2.2, printed with options(digits=10).
SENWILCOX = {1.0: 5.062207783e-06, 2.0: 0.001789875977, 3.0: 0.0136153061, 4.0: 0.03878978249, 4.25: 0.04682514232,
             5.0: 0.07399068444}  # fmt: skip
SENWILCOX_GAMMA_CRITICAL = 4.344174635  # uniroot(function(g) senWilcox(d, g)$pval - 0.05, c(1, 10), tol = 1e-12)


def test_lead_data_reproduce_the_printed_exact_signed_rank_test():
    nonzero = LEAD[LEAD != 0]
    ranks = stats.rankdata(np.abs(nonzero))
    assert ranks[nonzero > 0].sum() == 499  # printed: V = 499
    two_sided = 2 * signed_rank_bound_exact(LEAD, 1.0, drop_zeros=True)
    assert f"{two_sided:.3e}" == "8.037e-07"  # printed: p-value = 8.037e-07


def test_gamma_one_agrees_with_scipys_wilcoxon_test():
    rng = np.random.default_rng(1)
    ties = np.round(rng.normal(0.3, 1.0, size=40), 1)
    ties[:3] = 0.0
    for d in (LEAD, ties):
        pratt = stats.wilcoxon(d, zero_method="pratt", correction=False, alternative="greater", method="approx")
        wilcox = stats.wilcoxon(d, zero_method="wilcox", correction=False, alternative="greater", method="approx")
        assert signed_rank_bounds(d, 1.0)[1] == pytest.approx(pratt.pvalue, rel=1e-10)
        assert signed_rank_bounds(d[d != 0], 1.0)[1] == pytest.approx(wilcox.pvalue, rel=1e-10)
    no_ties = rng.normal(0.4, 1.0, size=30)
    exact = stats.wilcoxon(no_ties, alternative="greater", method="exact")
    assert signed_rank_bound_exact(no_ties, 1.0) == pytest.approx(exact.pvalue, rel=1e-10)


def test_exact_bound_grows_with_gamma_and_approaches_the_normal_one_in_large_samples():
    exact = [signed_rank_bound_exact(LEAD, g) for g in (1, 2, 3, 4, 5)]
    assert np.all(np.diff(exact) > 0)
    d = np.random.default_rng(2).normal(0.3, 1.0, size=300)
    assert signed_rank_bound_exact(d, 1.5) == pytest.approx(signed_rank_bounds(d, 1.5)[1], abs=0.002)


@pytest.mark.parametrize("gamma", sorted(SENWILCOX))
def test_lead_example_upper_bounds_match_rosenbaums_senwilcox(gamma):
    _, upper = signed_rank_bounds(LEAD, gamma)
    assert upper == pytest.approx(SENWILCOX[gamma], rel=5e-10)  # ten printed digits


def test_lead_example_gamma_critical_and_the_unbiased_p_value():
    assert signed_rank_bounds(LEAD, 1.0)[1] < 0.0001
    critical = gamma_critical(LEAD, alpha=0.05)
    assert critical == pytest.approx(SENWILCOX_GAMMA_CRITICAL, rel=5e-10)
    assert signed_rank_bounds(LEAD, critical)[1] == pytest.approx(0.05, abs=1e-9)
    block = rosenbaum_bounds(LEAD, alpha=0.05, gammas=[1, 2, 3])
    assert block["gamma_critical"] == pytest.approx(critical)
    assert block["n_pairs"] == 33 and block["direction"] == "positive" and block["statistic"] == 527
    assert [round(r["p_upper"], 4) for r in block["table"][1:]] == [0.0018, 0.0136]
    assert all(r["p_lower"] <= r["p_upper"] for r in block["table"])


def test_a_negative_effect_is_tested_on_its_own_side_and_noise_is_not_significant():
    flipped = rosenbaum_bounds(-LEAD)
    assert flipped["direction"] == "negative"
    assert flipped["gamma_critical"] == pytest.approx(gamma_critical(LEAD))
    noise = np.random.default_rng(0).normal(size=40)
    block = rosenbaum_bounds(noise)
    assert block["gamma_critical"] is None and "not significant" in block["sentence"]
    with pytest.raises(ValueError, match="Gamma"):
        signed_rank_bounds(LEAD, 0.5)
    with pytest.raises(ValueError, match="Gamma"):
        signed_rank_bound_exact(LEAD, 0.5)


def test_upper_bound_grows_with_gamma():
    uppers = [signed_rank_bounds(LEAD, g)[1] for g in (1, 1.5, 2, 3, 5, 8)]
    assert np.all(np.diff(uppers) > 0)


def test_config_keys_agree_with_the_step_and_bad_values_are_refused():
    from omegaconf import OmegaConf

    from causal import sensitivity, validate

    assert validate.allowed_keys("sensitivity.rosenbaum") == sensitivity._ROSENBAUM_KEYS
    cfg = OmegaConf.create(
        {"steps": ["sensitivity"], "sensitivity": {"analyses": ["rosenbaum"], "rosenbaum": {"gammas": [0.5, 2]}}}
    )
    with pytest.raises(validate.ConfigError, match=r"sensitivity\.rosenbaum\.gammas\[0\]"):
        validate.validate_config(cfg)
