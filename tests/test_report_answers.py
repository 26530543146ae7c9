"""Answers people can act on: the robustness verdict from the benchmark comparison, effects in planning terms, the
naive difference on all units, display names instead of column names, context-aware assumptions, the gallery."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from causal.report_html import render_report
from causal.reporting.gallery import THUMB_PX, gallery_html
from causal.reporting.labels import DEFAULT_NAMES, DisplayNames
from causal.reporting.planning import baseline_block, effect_words, lift
from causal.reporting.verdict import robustness_verdict
from causal.sensitivity.ovb import ovb_robustness
from causal.summary import summary_lines

_ATE = {"estimate": 0.015, "stderr": 0.002, "ci_low": 0.011, "ci_high": 0.019, "method": "AIPW", "n": 1000}


def _confounded_table(effect: float, strength: float, n: int = 3000, seed: int = 3) -> pd.DataFrame:
    """y = effect * t + strength * x1 + x2 + noise; t depends on x1 (the benchmark) as strongly as on nothing else."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    t = (rng.random(n) < 1 / (1 + np.exp(-strength * x1))).astype(float)
    y = effect * t + strength * x1 + 0.5 * x2 + rng.normal(size=n)
    return pd.DataFrame({"t": t, "y": y, "x1": x1, "x2": x2})


def _results_with_ovb(frame: pd.DataFrame) -> dict:
    linear = ovb_robustness(frame, "t", "y", ["x1", "x2"], benchmark_covariates=["x1"], kd=[1, 2, 3])
    effect = {k: linear[k] for k in ("estimate", "stderr", "ci_low", "ci_high")}
    return {
        "n_units": len(frame),
        "n_used": len(frame),
        "treatment": "t",
        "outcome": "y",
        "ate": {**effect, "method": "AIPW", "n": len(frame)},
        "sensitivity": {"e_value": 2.5, "linear": linear, "refutations": [{"name": "placebo", "passed": True}]},
        "steps": ["dml", "sensitivity"],
    }


def test_a_benchmark_that_explains_the_effect_away_makes_the_headline_fragile():
    results = _results_with_ovb(_confounded_table(effect=0.15, strength=0.8))
    assert results["ate"]["ci_low"] > 0  # significant before allowing for a hidden factor
    verdict = robustness_verdict(results, DisplayNames({"x1": "store size"}))
    assert verdict["verdict"] == "fragile"
    text = render_report(results, display_names={"x1": "store size"})
    top = text[: text.index("In short.")]
    assert 'class="verdict fragile"' in top and "Fragile result." in top
    assert "as strong as store size would be enough to erase the effect" in top
    assert "E-value 2.5" in top and "refutation tests passed 1 of 1" in top  # beside it, not instead of it
    assert summary_lines(results)[1].startswith("FRAGILE: ")


def test_a_large_effect_beside_a_weak_benchmark_is_robust():
    results = _results_with_ovb(_confounded_table(effect=1.0, strength=0.3))
    verdict = robustness_verdict(results)
    assert verdict["verdict"] == "robust" and verdict["strongest_survived"] == 3
    text = render_report(results)
    assert 'class="verdict robust"' in text and "would not be enough to erase the effect" in text
    assert "Fragile" not in text


def test_no_verdict_without_benchmarks():
    results = {"treatment": "t", "outcome": "y", "ate": _ATE, "sensitivity": {"e_value": 2.0}}
    assert robustness_verdict(results) is None
    assert 'class="verdict' not in render_report(results)


def test_planning_terms_for_a_rate_and_for_any_outcome():
    y = np.array([0.10, 0.14, 0.12, 0.2, 0.3, 0.25])
    t = np.array([0, 0, 0, 1, 1, 1])
    groups = pd.DataFrame({"genre": ["a", "b", "a", "a", "b", "b"]})
    base = baseline_block(y, t, groups)
    assert base["control_mean"] == pytest.approx(0.12) and base["is_rate"]
    assert base["by_group"]["genre"] == pytest.approx({"a": 0.11, "b": 0.14})
    assert lift(_ATE, 0.12) == pytest.approx({"estimate": 0.125, "ci_low": 0.011 / 0.12, "ci_high": 0.019 / 0.12})
    words = effect_words(_ATE, 0.12, is_rate=True)
    assert words.startswith("+1.5 percentage points [+1.1, +1.9] on a baseline of 12%") and "lift of +12" in words
    assert "percentage points" not in effect_words(_ATE, 3.0, is_rate=False)
    assert not baseline_block(np.array([1.0, 5.0, 2.0, 3.0]), np.array([0, 0, 1, 1]))["is_rate"]


def test_report_gives_baseline_and_lift_for_the_ate_and_every_cate():
    cate = {"genre": [{"level": "a", "n": 500, **_ATE}, {"level": "b", "n": 500, **_ATE, "estimate": 0.03}]}
    baseline = {"control_mean": 0.12, "is_rate": True, "by_group": {"genre": {"a": 0.10, "b": 0.15}}}
    text = render_report(
        {"treatment": "face_present", "outcome": "take_rate", "ate": _ATE, "cate_by_group": cate, "baseline": baseline}
    )
    assert "+1.5 percentage points" in text and "on a baseline of 12%" in text
    assert ">+15%" in text and ">+20%" in text  # lifts of level a (0.015 / 0.10) and b (0.03 / 0.15)
    assert text.count("baseline (control mean)") == 2  # the effect table and the group table


def test_naive_is_on_all_units_and_the_trimmed_difference_is_labelled():
    naive = {
        "difference_in_means": -8498.0,
        "stderr": 100.0,
        "ci_low": -8700.0,
        "ci_high": -8300.0,
        "n_treated": 8000,
        "n_control": 8177,
    }
    trimmed = {**naive, "difference_in_means": 1136.0, "n_treated": 200, "n_control": 212}
    results = {
        "treatment": "t",
        "outcome": "y",
        "ate": {**_ATE, "estimate": 900.0},
        "naive": naive,
        "naive_trimmed": trimmed,
    }
    text = render_report(results)
    assert "over all 16,177 units would have said -8500" in text
    assert "on the 412 units kept after trimming it is +1140" in text and "Trimming moved" in text
    assert "naive difference, trimmed sample" in text and "what the adjustment removes" not in text


def test_pipeline_naive_uses_all_units_when_trimming_applies(tmp_path):
    from hydra import compose, initialize_config_dir

    from causal.pipeline import run
    from tests.test_estimands import SMALL_RUN

    conf = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "conf")
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*SMALL_RUN, "overlap.threshold=0.2", "estimand=ate_overlap"])
    res = run(cfg, tmp_path)
    assert res["n_used"] < res["n_units"]
    assert res["naive"]["n_treated"] + res["naive"]["n_control"] == res["n_units"]
    assert res["naive_trimmed"]["n_treated"] + res["naive_trimmed"]["n_control"] == res["n_used"]
    assert res["baseline"]["is_rate"] and 0 < res["baseline"]["control_mean"] < 1


def _prose(html_text: str) -> str:
    html_text = re.sub(r"<details>.*?</details>", "", html_text, flags=re.S)
    html_text = re.sub(r"<style>.*?</style>", "", html_text, flags=re.S)
    html_text = re.sub(r"<figcaption>.*?</figcaption>", "", html_text, flags=re.S)  # image file names
    return re.sub(r"<[^>]+>", " ", html_text)


def raw_names_in(text: str, columns) -> list[str]:
    """Column names (with an underscore, so never an ordinary word) that appear in the rendered prose."""
    prose = _prose(text)
    return sorted(c for c in columns if "_" in c and re.search(rf"(?<![\w/]){re.escape(c)}(?![\w.])", prose))


def test_no_raw_column_names_in_the_prose():
    screening = [
        {"feature": f, "test": "pearson", "estimate": 0.1, "effect_r": 0.1, "p_value": 0.01, "p_adjusted": 0.02}
        for f in ("img_hue_150", "img_border_b", "title_popularity", "face_area_mean")
    ]
    results = {
        "treatment": "face_present",
        "outcome": "take_rate",
        "ate": _ATE,
        "screening": screening,
        "overlap": {"smd_raw": {"genre=drama": 0.3, "title_popularity": 0.2}, "smd_weighted": {}, "trimmed": 0},
        "cate_by_group": {"genre": [{"level": "drama", "n": 10, **_ATE}]},
        "mediation": {
            "treatment": "face_count",
            "mediator": "face_area_mean",
            "outcome": "take_rate",
            "total": _ATE,
            "direct": _ATE,
            "indirect": _ATE,
            "verdict": "partial",
        },
    }
    text = render_report(results)
    assert raw_names_in(text, DEFAULT_NAMES) == []
    assert "Does a face in the artwork change take rate?" in text  # the question from the roles
    assert "share of pixels with hue near 150°" in text and "border blueness" in text


def test_assumption_rows_depend_on_the_data():
    art = render_report({"treatment": "face_present", "outcome": "take_rate", "ate": _ATE})
    table = render_report({"treatment": "treated", "outcome": "outcome", "ate": _ATE})
    assert "detector" in art and "artwork" in art
    assert "detector" not in table and "artwork" not in table


def _annotation_folder(root):
    images_dir, faces_dir, pictures = root / "ann" / "images", root / "ann" / "faces", root / "pictures"
    for d in (images_dir, faces_dir, pictures):
        d.mkdir(parents=True)
    rows, faces = [], []
    for k in range(8):
        name = f"p{k}.png"
        Image.new("RGB", (400, 600), (200, 200, 200)).save(pictures / name)
        has_face = k % 2 == 0
        rows.append({"image_id": name, "status": "ok", "face_present": has_face, "face_count": int(has_face)})
        if has_face:
            faces.append({"image_id": name, "x1": 100.0, "y1": 100.0, "x2": 300.0, "y2": 350.0, "prob": 0.93})
    pd.DataFrame(rows).to_parquet(images_dir / "part-000000.parquet")
    pd.DataFrame(faces).to_parquet(faces_dir / "part-000000.parquet")
    return root / "ann", pictures


def test_gallery_embeds_capped_jpeg_thumbnails_with_faces_drawn(tmp_path):
    ann, pictures = _annotation_folder(tmp_path)
    page = gallery_html(ann, input_dir=str(pictures), names=DisplayNames())
    uris = re.findall(r'<img class="thumb" alt="[^"]*" src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(uris) == 8 and f"at most {THUMB_PX} px" in page
    green = 0
    for uri in uris:
        with Image.open(io.BytesIO(base64.b64decode(uri))) as im:
            assert im.format == "JPEG" and max(im.size) <= THUMB_PX
            px = np.asarray(im.convert("RGB")).astype(int)
            green += int(((px[..., 1] > 150) & (px[..., 0] < 110) & (px[..., 2] < 110)).sum() > 50)
    assert green == 4  # the four images with a face have their box drawn, the others none
    assert gallery_html(ann, input_dir=str(tmp_path / "nowhere")) == ""  # no images to read: no gallery


def test_no_lift_on_a_baseline_that_is_not_positive():
    assert lift(_ATE, 0.0) is None and lift(_ATE, -2.0) is None
    assert effect_words(_ATE, -2.0, is_rate=False) == "+0.015 [+0.011, +0.019]"


def test_ovb_contour_marks_a_benchmark_beyond_the_axes_at_the_edge():
    from matplotlib.figure import Figure

    from causal.sensitivity.plots import _contour_grid, _draw_contours

    result = {
        "treatment": "treated",
        "estimate": 0.8,
        "stderr": 0.05,
        "dof": 1500,
        "robustness_value": 0.3,
        "bounds": [
            {"benchmark": "x1", "kd": 1.0, "ky": 1.0, "r2dz_x": 0.2, "r2yz_dx": 1.0, "adjusted_estimate": -0.4},
        ],
    }
    gx, gy, adjusted, lim_x, lim_y = _contour_grid(result, None, None, 21)
    assert lim_y < 1.0  # the bound (R² 1, capped) lies beyond the axis
    ax = Figure().add_subplot()
    _draw_contours(ax, result, (gx, gy, adjusted), (lim_x, lim_y))
    marker = [line for line in ax.lines if line.get_marker() == "D"]
    assert len(marker) == 1 and marker[0].get_ydata()[0] == pytest.approx(lim_y)  # drawn on the edge
    texts = [t.get_text() for t in ax.texts]
    assert any("1x x1 (-0.4; beyond the axes at R² 0.20, 1.00)" in t for t in texts)
    assert any(t.startswith("linear model, no hidden factor") for t in texts)
