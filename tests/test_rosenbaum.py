"""Rosenbaum bounds (causal.sensitivity.rosenbaum) against a published worked example, and their behaviour.

The example: the lead data of Morton et al. (1982), 33 pairs of children (blood lead of a child whose parent worked
in a battery factory, and of a matched control child, micrograms/dl), analysed in Rosenbaum (2002), Observational
Studies, 2nd ed., Springer, section 4.3.3 (the signed-rank sensitivity analysis; the same data are the example of
R package rbounds' ``psens`` and dataset ``lead`` of R package DOS). The printed upper bounds on the one-sided
significance level: Gamma = 1: < 0.0001; 2: 0.0018; 3: 0.0136; 4: 0.0388; 4.25: 0.0468 (so the effect is
insensitive to hidden bias up to Gamma of about 4.25 and sensitive at 4.5).
"""

from __future__ import annotations

import numpy as np
import pytest

from causal.sensitivity.rosenbaum import gamma_critical, rosenbaum_bounds, signed_rank_bounds

EXPOSED = [38, 23, 41, 18, 37, 36, 23, 62, 31, 34, 24, 14, 21, 17, 16, 20, 15, 10, 45, 39, 22, 35, 49, 48, 44, 35,
           43, 39, 34, 13, 73, 25, 27]  # fmt: skip
CONTROL = [16, 18, 18, 24, 19, 11, 10, 15, 16, 18, 18, 13, 19, 10, 16, 16, 24, 13, 9, 14, 21, 19, 7, 18, 19, 12, 11,
           22, 25, 16, 13, 11, 13]  # fmt: skip
LEAD = np.array(EXPOSED, dtype=float) - np.array(CONTROL, dtype=float)
PRINTED = {2.0: 0.0018, 3.0: 0.0136, 4.0: 0.0388, 4.25: 0.0468}


@pytest.mark.parametrize("gamma", sorted(PRINTED))
def test_lead_example_reproduces_the_printed_upper_bounds(gamma):
    _, upper = signed_rank_bounds(LEAD, gamma)
    assert round(upper, 4) == PRINTED[gamma]


def test_lead_example_gamma_critical_and_the_unbiased_p_value():
    assert signed_rank_bounds(LEAD, 1.0)[1] < 0.0001
    critical = gamma_critical(LEAD, alpha=0.05)
    assert 4.25 < critical < 4.5  # significant at 4.25 (0.0468), not at 4.5
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
