"""Box-convention-fair evaluation, the per-group image-level rates, and the dev-set readers and split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vision.artdata import read_sample_labels, read_split, split_of
from vision.box_convention import (
    domain_ap_table,
    evaluate_both,
    fit_box_scale,
    image_level_by_group,
    rescale_labels,
)


def whole_head_case(n: int = 12, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labels drawn 1.6x wide and 1.4x tall around each detected face (IoU about 0.45: a miss at 0.5)."""
    rng = np.random.default_rng(seed)
    rows, dets = [], []
    for i in range(n):
        cx, cy, w, h = rng.uniform(100, 300), rng.uniform(100, 300), rng.uniform(30, 60), rng.uniform(40, 70)
        dets.append((f"im{i}", cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, 0.9))
        rows.append((f"im{i}", cx - 0.8 * w, cy - 0.7 * h, cx + 0.8 * w, cy + 0.7 * h, "painting"))
    rows.append(("empty", np.nan, np.nan, np.nan, np.nan, "painting"))
    labels = pd.DataFrame(rows, columns=["image_id", "x1", "y1", "x2", "y2", "domain"])
    faces = pd.DataFrame(dets, columns=["image_id", "x1", "y1", "x2", "y2", "prob"])
    return labels, faces


def test_fit_recovers_the_scale_and_rescaling_makes_the_boxes_match():
    labels, faces = whole_head_case()
    fit = fit_box_scale(labels, faces)
    assert fit["fitted"] and fit["n_pairs"] == 12
    assert fit["sx"] == pytest.approx(1 / 1.6) and fit["sy"] == pytest.approx(1 / 1.4)
    both = evaluate_both(labels, faces, group_by=["domain"])
    assert both["as_drawn"]["ap50"] == 0.0  # every face found, every box "wrong" at IoU 0.5
    assert both["rescaled"]["ap50"] == pytest.approx(1.0)
    table = domain_ap_table(both)
    assert list(table["set"]) == ["all", "painting"]
    assert table.loc[0, "AP50_rescaled"] == pytest.approx(1.0) and table.loc[0, "AP50_drawn"] == 0.0


def test_too_few_pairs_leave_the_labels_unscaled():
    labels, faces = whole_head_case(n=3)
    fit = fit_box_scale(labels, faces)
    assert not fit["fitted"] and (fit["sx"], fit["sy"]) == (1.0, 1.0)


def test_rescale_keeps_centres():
    labels = pd.DataFrame({"image_id": ["a"], "x1": [10.0], "y1": [20.0], "x2": [30.0], "y2": [60.0]})
    out = rescale_labels(labels, 0.5, 2.0)
    assert out.iloc[0][["x1", "y1", "x2", "y2"]].tolist() == [15.0, 0.0, 25.0, 80.0]


def test_image_level_by_group_is_compact():
    labels, faces = whole_head_case()
    both = evaluate_both(labels, faces, group_by=["domain"], score_threshold=0.5)
    rates = image_level_by_group(both["as_drawn"], ["domain"])
    assert rates["domain"]["painting"]["sensitivity"] == 1.0
    assert rates["domain"]["painting"]["specificity"] == 1.0 and rates["domain"]["painting"]["n_negative"] == 1


def test_split_is_by_content_and_the_committed_split_matches_its_digests():
    assert split_of("ab" * 32) == split_of("ab" * 32)
    parts = [split_of(f"{k:064x}") for k in range(4000)]
    assert 0.22 < parts.count("heldout") / len(parts) < 0.28
    split = read_split("paintings_dev")
    assert len(split) == 572 and split["image_id"].is_unique
    assert (split["sha256"].map(split_of) == split["split"]).all()


def test_sample_labels_get_our_domains(repo_root):
    labels = read_sample_labels(repo_root / "assets_sample" / "labels.csv")
    assert set(labels["domain"]) == {"photo", "drawing"}
