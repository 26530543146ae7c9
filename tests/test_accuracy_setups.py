"""The accuracy harness's setups (scripts/accuracy_setups.py): tables and truths as published."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import accuracy_setups as setups  # noqa: E402


def test_lalonde_is_the_nsw_trainees_against_cps_controls_with_the_experimental_att():
    rep = setups.lalonde_cps()
    assert rep.estimand == "att" and rep.truth == 1794.0
    assert int(rep.t.sum()) == 185 and int((rep.t == 0).sum()) == 15992  # Dehejia & Wahba's trainees, CPS-1
    low, high = rep.published
    assert low == np.float64(1794 - 1.96 * 633) and high == np.float64(1794 + 1.96 * 633)
    assert rep.x.shape == (16177, 10) and not np.isnan(rep.x).any()
    # The naive comparison is badly negative (CPS men earn far more): the setup is a real test of adjustment.
    assert rep.y[rep.t == 1].mean() - rep.y[rep.t == 0].mean() < -8000


def test_synthetic_truth_is_the_sample_mean_effect_and_the_simulator_declares_its_titles():
    rep = setups.make_data("nw_c", 300, seed=1)
    assert rep.truth == 1.0 and rep.estimand == "ate" and rep.clusters is None
    sim = setups.make_data("simulator", 200, seed=0)
    assert sim.clusters is not None and len(np.unique(sim.clusters)) == 20 and len(sim.clusters) == len(sim.y)
