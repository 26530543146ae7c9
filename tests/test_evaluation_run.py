"""One evaluation for every caller: the same AP from an annotation run and from running the detector, Wilson
intervals, and a plain note when a rate rests on too few images."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vision.evaluate import evaluate_detections, reliability_notes, wilson_interval
from vision.evaluation_run import evaluate_run

# (image_id, x1, y1, x2, y2, prob): two faces found confidently, one low-score hit, one low-score false alarm.
_FACES = [
    ("a.png", 10, 10, 40, 40, 0.95),
    ("a.png", 60, 10, 90, 40, 0.30),
    ("b.png", 5, 5, 30, 30, 0.90),
    ("c.png", 50, 50, 80, 80, 0.40),
]
_LABELS = "image_id,x1,y1,x2,y2\na.png,10,10,40,40\na.png,60,10,90,40\nb.png,5,5,30,30\nc.png,,,,\n"


class _ReplayAnnotator:
    """Stands in for BatchAnnotator: returns fixed face rows for the images it is given (no model involved)."""

    def annotate_batch(self, ids, images):
        rows = [dict(zip(["image_id", "x1", "y1", "x2", "y2", "prob"], f)) for f in _FACES if f[0] in set(ids)]
        return [], rows


def _folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (100, 100), (120, 80, 60)).save(images / name)
    labels = tmp_path / "labels.csv"
    labels.write_text(_LABELS)
    return images, labels


def _annotation_run(tmp_path, cutoff):
    """An annotation run's tables: the faces at or above the detector's cut-off, as annotate keeps them."""
    ann = tmp_path / "ann"
    (ann / "images").mkdir(parents=True)
    (ann / "faces").mkdir()
    pd.DataFrame({"image_id": ["a.png", "b.png", "c.png"], "status": "ok"}).to_parquet(ann / "images" / "p.parquet")
    faces = pd.DataFrame(_FACES, columns=["image_id", "x1", "y1", "x2", "y2", "prob"])
    faces[faces["prob"] >= cutoff].to_parquet(ann / "faces" / "p.parquet")
    return ann


def test_annotation_run_and_detector_run_report_the_same_ap(tmp_path):
    images, labels = _folder(tmp_path)
    cutoff = 0.5
    from_run = evaluate_run(labels, tmp_path / "e1", annotations=_annotation_run(tmp_path, cutoff))
    from_detector = evaluate_run(
        labels,
        tmp_path / "e2",
        images=images,
        annotator=_ReplayAnnotator(),
        operating_threshold=cutoff,
        full_curve=True,
    )
    assert from_run["ap50"] == from_detector["ap50"] == pytest.approx(2 / 3)  # two of three faces, no false alarm
    assert from_run["image_level"] == from_detector["image_level"]
    # The full curve ranks 0.95 hit, 0.90 hit, 0.40 false alarm, 0.30 hit: precision 1 up to recall 2/3, then 3/4.
    assert from_detector["ap50_full_curve"] == pytest.approx(2 / 3 + 1 / 3 * 3 / 4)
    assert "ap50_full_curve" not in from_run
    written = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert written["ap50"] == from_detector["ap50"] and written["ap_definition"].startswith("AP@0.5")
    assert (tmp_path / "e2" / "contact_sheet.png").stat().st_size > 0
    assert not (tmp_path / "e1" / "contact_sheet.png").exists()  # no images folder given


def test_wilson_interval_matches_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    for k, n in [(8, 8), (0, 8), (37, 40), (1, 3), (250, 1000)]:
        low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert wilson_interval(k, n) == pytest.approx([low, high], abs=1e-12)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_small_sets_get_a_reliability_note_and_large_ones_none():
    rng = np.random.default_rng(0)
    labels = pd.DataFrame({"image_id": [f"i{k}.png" for k in range(8)], "x1": np.nan, "y1": np.nan, "x2": np.nan,
                           "y2": np.nan})  # fmt: skip
    faces = pd.DataFrame(columns=["image_id", "x1", "y1", "x2", "y2", "prob"])
    result = evaluate_detections(labels, faces)
    image = result["image_level"]
    assert image["specificity"] == 1.0 and image["specificity_ci"][0] == pytest.approx(0.6756, abs=1e-4)
    assert len(result["reliability"]) == 1 and "rests on 8 face-free images" in result["reliability"][0]
    many = {"n_positive": 200, "n_negative": 150, "sensitivity": rng.uniform(), "specificity": 0.9,
            "sensitivity_ci": [0.1, 0.2], "specificity_ci": [0.85, 0.94]}  # fmt: skip
    assert reliability_notes(many) == []
