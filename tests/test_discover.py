"""The hypothesis funnel (causal.discover) and the simulator's components (causal.simulate_components)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from statsmodels.stats.multitest import multipletests

from causal import discover
from causal.data import DataError
from causal.discover_report import report_section
from causal.pipeline import run
from causal.simulate import simulate_catalog
from causal.simulate_components import COMPONENTS, DEFAULT_EFFECTS, add_components
from causal.validate import ConfigError, validate_config

CONF = str(Path(__file__).resolve().parents[1] / "conf")
# A shrunk funnel: 2000 artworks and five screened columns (two planted effects, three nulls), seconds to run.
SMALL = [
    "experiment=discover",
    "data.n_titles=200",
    "discover.features=[text_area_fraction,figure_frontal,bg_warm,text_blocks,people_band,img_colourfulness]",
]


def _compose(overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture(scope="module")
def funnel(tmp_path_factory):
    out = tmp_path_factory.mktemp("discover")
    cfg = _compose([*SMALL, f"paths.cache={out / 'cache'}"])
    return run(cfg, out / "run"), cfg, out


# ------------------------------------------------------------------------------------------ components
def test_components_add_exactly_the_planted_effects():
    base = simulate_catalog(n_titles=100, seed=3)
    planted = {"text_area_fraction": -0.05, "people_band": {"4+": -0.01}}
    added = add_components(base, planted, seed=3)
    data = added.data
    assert set(COMPONENTS) <= set(data.columns) and len(data) == len(base.data)
    expected = -0.05 * data["text_area_fraction"] + np.where(data["people_band"] == "4+", -0.01, 0.0)
    np.testing.assert_allclose(data["take_rate"] - base.data["take_rate"], expected, atol=1e-12)
    truth = added.truth["components"]
    assert truth["text_area_fraction"] == -0.05 and truth["figure_frontal"] == 0.0
    assert truth["people_band"] == {"0": 0.0, "1": 0.0, "2-3": 0.0, "4+": -0.01}
    none = add_components(base, {}, seed=3)
    np.testing.assert_array_equal(none.data["take_rate"], base.data["take_rate"])
    # Confounded: components differ by genre (so screening flags nulls that adjustment clears).
    by_genre = data.groupby("genre")["text_area_fraction"].mean()
    assert by_genre["animation"] - by_genre["documentary"] > 0.05


def test_components_refuse_unknown_or_malformed_effects():
    base = simulate_catalog(n_titles=20, seed=0)
    with pytest.raises(DataError, match="data.components.logo_size"):
        add_components(base, {"logo_size": 0.1})
    with pytest.raises(DataError, match="data.components.people_band"):
        add_components(base, {"people_band": 0.1})
    with pytest.raises(DataError, match="data.components.figure_frontal"):
        add_components(base, {"figure_frontal": "big"})


def test_default_effects_plant_two_of_at_least_eight():
    assert len(COMPONENTS) >= 8 and len(DEFAULT_EFFECTS) == 2
    cfg = _compose(["experiment=discover"])
    assert dict(cfg.data.components) == DEFAULT_EFFECTS


# ------------------------------------------------------------------------------------------ hypotheses
def test_expand_kinds_and_reference_level():
    frame = pd.DataFrame(
        {
            "cont": np.linspace(0, 1, 100),
            "flag": ["yes", "no"] * 50,
            "band": ["1"] * 50 + ["0"] * 30 + ["4+"] * 15 + ["2-3"] * 5,
        }
    )
    (cont,) = discover.expand(frame, "cont", min_arm=10)
    assert cont["treatment_kind"] == "continuous" and cont["rows"].all()
    (flag,) = discover.expand(frame, "flag", min_arm=10)
    assert flag["treatment_kind"] == "binary" and flag["t"].sum() == 50
    levels = discover.expand(frame, "band", min_arm=10)
    # Reference: the most frequent level; a level rarer than min_arm is not a hypothesis.
    assert [(h["level"], h["reference"]) for h in levels] == [("0", "1"), ("4+", "1")]
    four = levels[1]
    assert four["rows"].sum() == 65 and four["t"][four["rows"]].sum() == 15


def test_rank_is_holm_and_sorted():
    p = [0.04, 0.001, 0.3, 0.01]
    rows = [
        {"feature": f"f{i}", "treatment_kind": "binary", "estimate": 1.0, "ci_low": 0, "ci_high": 2, "p_value": v}
        for i, v in enumerate(p)
    ]
    rows.append({"feature": "skipped", "treatment_kind": "binary", "skipped": "arms too small"})
    table = discover.rank(rows, alpha=0.05)
    _, holm, _, _ = multipletests(p, method="holm")
    assert [r["feature"] for r in table] == ["f1", "f3", "f0", "f2", "skipped"]
    assert [r["p_adjusted"] for r in table[:4]] == pytest.approx(sorted(holm))
    assert [r["significant"] for r in table[:4]] == [True, True, False, False]
    assert list(table[0])[: len(discover.TABLE_KEYS)] == list(discover.TABLE_KEYS)


def test_truth_of_levels_and_columns():
    truth = {
        "components": {"people_band": {"0": 0.0, "1": 0.0, "4+": -0.01}, "bg_warm": 0.0},
        "treatment": "face_present",
        "ate_variance_weighted": 0.012,
    }
    level = {"feature": "people_band", "treatment_kind": "categorical_level", "level": "4+", "reference": "1"}
    assert discover.truth_of(level, truth) == pytest.approx(-0.01)
    assert discover.truth_of({"feature": "img_brightness", "treatment_kind": "continuous"}, truth) == 0.0
    assert discover.truth_of({"feature": "face_present", "treatment_kind": "binary"}, truth) == 0.012
    assert discover.truth_of({"feature": "face_count", "treatment_kind": "continuous"}, truth) is None
    assert discover.truth_of(level, None) is None


# ------------------------------------------------------------------------------------------ end to end
def test_funnel_finds_the_planted_effects_and_no_null(funnel):
    results, _, out = funnel
    on_disk = json.loads((out / "run" / "results.json").read_text())
    table = on_disk["hypotheses"]
    assert table and all(set(discover.TABLE_KEYS) <= set(h) for h in table if "p_value" in h)
    adjusted = [h["p_adjusted"] for h in table if "p_value" in h]
    assert adjusted == sorted(adjusted)
    by_name = {discover.label(h): h for h in table}
    for feature, effect in DEFAULT_EFFECTS.items():
        h = by_name[feature]
        assert h["significant"] and h["truth"] == effect
        assert abs(h["estimate"] - effect) < 3 * h["stderr"]  # seeded; 3 SE
    nulls = [h for h in table if h.get("truth") == 0]
    assert len(nulls) >= 3 and not any(h["significant"] for h in nulls)
    assert on_disk["discover"]["false_discoveries"] == 0 and on_disk["discover"]["true_discoveries"] == 2
    # Continuous hypotheses carry their dose-response curve; binary ones their propensity overlap.
    assert len(by_name["text_area_fraction"]["dose_response"]) == 5
    assert 0 < by_name["figure_frontal"]["overlap"]["propensity_min"] < 0.5
    assert 0 < by_name["figure_frontal"]["sensitivity"]["rv"] < 1


def test_funnel_reuses_cached_hypotheses(funnel, tmp_path, monkeypatch):
    results, cfg, _ = funnel

    def refit(*args, **kwargs):
        raise AssertionError("a cached hypothesis was estimated again")

    monkeypatch.setattr(discover, "run_hypothesis", refit)
    again = run(cfg, tmp_path)
    assert again["hypotheses"] == results["hypotheses"]


def test_report_section_lists_every_hypothesis(funnel):
    results, _, _ = funnel
    html = report_section(results)
    assert "hypothesis funnel" in html and "Holm" in html
    from causal.report_html import render_report

    assert "<h1>Which components change take rate?</h1>" in render_report(results)  # display names, not columns
    for h in results["hypotheses"]:
        assert h["feature"] in html
    assert report_section({"treatment": "t"}) == ""
    hostile = {"hypotheses": [{"feature": "<script>", "treatment_kind": "binary", "skipped": "x"}], "discover": {}}
    assert "<script>" not in report_section(hostile)


@pytest.mark.parametrize(
    ("override", "key"),
    [("discover.top_k=0", "discover.top_k"), ("+discover.bogus=1", "discover"), ("discover.alpha=2", "discover.alpha")],
)
def test_bad_discover_config_is_refused_before_fitting(override, key):
    with pytest.raises(ConfigError, match=key):
        validate_config(_compose(["experiment=discover", override]))


def test_unknown_feature_is_named(tmp_path):
    cfg = _compose(["experiment=discover", "data.n_titles=20", "discover.features=[no_such_column]"])
    results = run(cfg, tmp_path)
    assert results["errors"][0]["step"] == "discover" and "no_such_column" in results["errors"][0]["message"]


# ------------------------------------------------------------------------------------------ bands
def test_bands_from_annotation_columns():
    from causal.bands import add_bands, face_size_band, people_band

    count = pd.Series([0, 1, 2, 3, 4, 9, None], name="face_count")
    assert list(people_band(count)) == ["0", "1", "2-3", "2-3", "4+", "4+", None]
    area = pd.Series([0.0, 0.005, 0.02, 0.099, 0.1, 0.5, np.nan])
    faces = pd.Series([0, 1, 1, 1, 1, 1, 0])
    assert list(face_size_band(area, faces)) == ["none", "small", "medium", "medium", "large", "large", "none"]
    with pytest.raises(ValueError, match="face_count"):
        people_band(pd.Series([-1], name="face_count"))
    frame = pd.DataFrame({"face_count": [0, 5], "face_area_max": [0.0, 0.2], "people_band": ["mine", "mine"]})
    added = add_bands(frame)
    assert list(added["people_band"]) == ["mine", "mine"]  # an existing column is kept
    assert list(added["face_size_band"]) == ["none", "large"] and "face_size_band" not in frame


def test_text_position_band():
    from causal.bands import text_position

    got = text_position(pd.Series([0.1, 0.5, 0.9, np.nan, 0.2]), pd.Series([1, 2, 1, 0, 0]))
    assert list(got) == ["top", "middle", "bottom", "none", "none"]


def test_facing_band_follows_the_pose_modules_yaw():
    """Landmarks of heads turned by known yaws (vision.pose's perspective projection, in image coordinates as a
    detector gives them) go through the pose estimate and the band: +yaw turns the nose toward the image's
    right."""
    from causal.bands import FACING_YAW, add_bands, facing_band
    from vision.pose import FRONTAL_YAW, head_pose, project

    assert FACING_YAW == FRONTAL_YAW
    yaws = [-45.0, -30.0, -10.0, 0.0, 10.0, 30.0, 45.0]
    estimated = []
    for yaw in yaws:
        estimated.append(head_pose(project(yaw, 0.0, 0.0))["yaw"])
    got = facing_band(pd.Series(estimated + [np.nan]))
    assert list(got) == ["left", "left", "camera", "camera", "camera", "right", "right", "none"]
    frame = pd.DataFrame({"largest_face_yaw": [35.0, np.nan]})
    assert list(add_bands(frame)["facing_band"]) == ["right", "none"]


@pytest.mark.slow
def test_ray_tasks_give_the_same_table(funnel, tmp_path):
    ray = pytest.importorskip("ray")
    results, _, _ = funnel
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        again = run(_compose([*SMALL, "paths.cache=null", "discover.use_ray=true"]), tmp_path)
    finally:
        ray.shutdown()
    assert [discover.label(h) for h in again["hypotheses"]] == [discover.label(h) for h in results["hypotheses"]]
    for a, b in zip(again["hypotheses"], results["hypotheses"], strict=True):
        assert a["estimate"] == pytest.approx(b["estimate"], rel=1e-9) and a["p_adjusted"] == pytest.approx(
            b["p_adjusted"]
        )


def test_printed_summary_ranks_the_hypotheses(funnel):
    from causal.summary import summary_lines

    results, _, _ = funnel
    lines = summary_lines(results)
    start = next(i for i, line in enumerate(lines) if line.startswith("hypotheses (Holm"))
    first = results["hypotheses"][0]
    assert lines[start + 1].split()[0] == discover.label(first).split(" vs ")[0].replace(" ", "")


def test_the_step_and_the_validator_know_the_same_keys():
    from causal.validate import allowed_keys

    assert set(discover.DEFAULTS) == set(allowed_keys("discover"))
    with pytest.raises(ValueError, match="discover: unknown key"):
        discover.options({"topk": 3}, 0.05)
