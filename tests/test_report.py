"""causal.report_html: self-contained HTML, sections present only for steps that ran, plots embedded as PNG."""

from __future__ import annotations

import base64
import re

import pytest

from causal import report
from causal.report_html import png_data_uri, render_report, write_report

_EFFECT = {"estimate": 0.015, "stderr": 0.002, "ci_low": 0.011, "ci_high": 0.019}


def _results(**extra):
    base = {
        "n_units": 1000,
        "n_used": 990,
        "treatment": "face_present",
        "outcome": "take_rate",
        "naive": {"difference_in_means": 0.03, "stderr": 0.002, "ci_low": 0.026, "ci_high": 0.034},
        "ate": {**_EFFECT, "method": "causal_forest"},
        "steps": ["screening", "overlap", "dml"],
    }
    base.update(extra)
    return base


def _images(text):
    return re.findall(r'<img alt="([^"]*)" src="([^"]*)"', text)


def _assert_all_images_are_pngs(text):
    for alt, src in _images(text):
        assert src.startswith("data:image/png;base64,"), alt
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n"), alt


def test_minimal_results_give_effect_section_and_omit_the_rest():
    text = render_report(_results())
    assert text.startswith("<!DOCTYPE html>") and "</html>" in text
    assert "In short." in text and "<h2>Effect</h2>" in text
    for missing in ("Screening", "Overlap and balance", "Mediation", "Sensitivity", "Face detector"):
        assert f"<h2>{missing}" not in text
    for assumption in ("Consistency", "Positivity", "SUTVA", "Unconfoundedness"):
        assert assumption in text
    assert len(_images(text)) == 1  # the effect-vs-naive plot, drawn by the report itself
    _assert_all_images_are_pngs(text)
    assert "<script" not in text and "http://" not in text and "https://" not in text  # nothing fetched


def test_plain_summary_reads_the_interval():
    sure = render_report(_results())
    assert "excludes zero" in sure and "raises" in sure
    unsure = render_report(_results(ate={**_EFFECT, "estimate": -0.001, "ci_low": -0.01, "ci_high": 0.008}))
    assert "includes zero" in unsure and "lowers" in unsure


def test_summary_warns_when_the_ate_extrapolates_to_many_clipped_units():
    # The record aipw() writes: 120 of 1,000 units clipped at the shipped bound.
    many = render_report(
        _results(
            ate={
                **_EFFECT,
                "estimand": "ate",
                "n": 1000,
                "n_units": 1000,
                "n_clipped": 120,
                "clip": 0.01,
                "population": "all units",
            }
        )
    )
    assert "Caution: 12% of the units (120 of 1,000)" in many and "estimand=ate_overlap" in many
    few = render_report(
        _results(
            ate={
                **_EFFECT,
                "estimand": "ate",
                "n": 1000,
                "n_units": 1000,
                "n_clipped": 20,
                "clip": 0.01,
                "population": "all units",
            }
        )
    )
    assert "Caution:" not in few  # 2% is below EXTRAPOLATED_SHARE


def test_every_section_with_run_plots_embedded(tmp_path):
    hist = {"edges": [i / 10 for i in range(11)], "treated": [0, 1, 3, 5, 8, 9, 7, 4, 2, 1], "control": [2] * 10}
    report.plot_propensity(hist, tmp_path / "propensity_overlap.png", threshold=0.05)
    cate = {"genre": [{"level": "drama", "n": 10, **_EFFECT}, {"level": "comedy", "n": 12, **_EFFECT}]}
    report.plot_cate_by_group(cate, tmp_path / "cate_by_group.png", ate=_EFFECT)
    results = _results(
        screening=[{"feature": "<b>x</b>", "test": "pearson", "estimate": 0.3, "p_value": 1e-4, "p_adjusted": 2e-4}],
        overlap={
            "trimmed": 3,
            "rule": "fixed",
            "smd_raw": {"a": 0.4},
            "smd_weighted": {"a": 0.01},
            "max_abs_smd": {"raw": 0.4, "weighted": 0.01},
        },
        cate_by_group=cate,
        mediation={
            "treatment": "face_count",
            "mediator": "face_area_mean",
            "outcome": "take_rate",
            "total": _EFFECT,
            "direct": _EFFECT,
            "indirect": _EFFECT,
            "proportion_mediated": 0.5,
            "verdict": "partial",
            "methods": {"linear": {"path_a": _EFFECT, "path_b": _EFFECT}},
        },
        sensitivity={
            "e_value": 2.0,
            "e_value_ci": 1.5,
            "refutations": [
                {"name": "placebo_treatment", "estimate": 0.0, "ci_low": -0.01, "ci_high": 0.01, "passed": True}
            ],
        },
        plots={"propensity": "propensity_overlap.png", "cate_by_group": "cate_by_group.png"},
    )
    evaluation = {
        "ap50": 0.8,
        "n_images": 45,
        "image_level": {
            "sensitivity": 0.9,
            "specificity": 1.0,
            "specificity_ci": [0.6756, 1.0],
            "fp": 0,
            "fn": 3,
        },
        "reliability": ["specificity 1.00 rests on 8 face-free images (95% interval 0.68 to 1.00): too few to trust"],
    }
    path = write_report(results, tmp_path, evaluation=evaluation, config_yaml="seed: 0\n")
    text = path.read_text()
    # Detector rates carry their interval, and a rate resting on few images is said to be untrustworthy.
    assert "0.68 to 1.00" in text and "too few to trust" in text
    for section in ("Screening", "Overlap and balance", "Effect by group", "Mediation", "Sensitivity", "Face detector"):
        assert f"<h2>{section}" in text, section
    # propensity, effect, CATE, mediation diagram (no pr_curve.png given, no OVB contour in plots)
    assert len(_images(text)) == 4
    _assert_all_images_are_pngs(text)
    assert "&lt;b&gt;x&lt;/b&gt;" in text and "<b>x</b>" not in text  # table cells are escaped
    assert "partial" in text and "seed: 0" in text and "econml" in text


def test_non_png_plot_is_left_out(tmp_path):
    (tmp_path / "propensity_overlap.png").write_bytes(b"not a png")
    text = render_report(
        _results(overlap={"trimmed": 0, "rule": "none"}, plots={"propensity": "propensity_overlap.png"}),
        plots_dir=tmp_path,
    )
    assert "propensity overlap" not in [alt for alt, _ in _images(text)]
    with pytest.raises(ValueError, match="not a PNG"):
        png_data_uri(b"GIF89a")
