"""Per-image aggregates of face boxes."""

from __future__ import annotations

import numpy as np
import pytest

from vision.features import box_area_fractions, face_aggregates, mean_embedding


def test_no_face_is_explicit_zero_not_none() -> None:
    agg = face_aggregates(np.zeros((0, 4)), np.zeros(0), 640, 480)
    assert agg["face_present"] is False and agg["face_count"] == 0
    assert agg["face_area_mean"] == agg["face_area_max"] == agg["face_area_total"] == 0.0
    assert agg["face_prob_max"] is None and agg["largest_face_cx"] is None and agg["largest_face_cy"] is None


def test_aggregates_by_hand() -> None:
    # 100 x 200 image (area 20000): a 10 x 20 box (1%) and a 40 x 50 box (10%) centred at (50, 75).
    boxes = np.array([[0, 0, 10, 20], [30, 50, 70, 100]], dtype=np.float32)
    agg = face_aggregates(boxes, np.array([0.99, 0.95]), 100, 200)
    assert agg["face_present"] is True and agg["face_count"] == 2
    assert agg["face_area_max"] == pytest.approx(0.10)
    assert agg["face_area_mean"] == pytest.approx(0.055)
    assert agg["face_area_total"] == pytest.approx(0.11)
    assert agg["face_prob_max"] == pytest.approx(0.99)
    assert (agg["largest_face_cx"], agg["largest_face_cy"]) == (pytest.approx(0.5), pytest.approx(0.375))


def test_area_fractions_clip_degenerate_boxes() -> None:
    fr = box_area_fractions(np.array([[10, 10, 5, 30], [0, 0, 200, 200]]), 100, 100)
    np.testing.assert_allclose(fr, [0.0, 1.0])


def test_mean_embedding_is_unit_norm_and_none_without_faces() -> None:
    assert mean_embedding(None) is None
    assert mean_embedding(np.zeros((0, 128), np.float32)) is None
    e = np.eye(4, dtype=np.float32)[:2]
    m = mean_embedding(e)
    assert m.dtype == np.float32 and m.shape == (4,)
    np.testing.assert_allclose(m, [2**-0.5, 2**-0.5, 0, 0], rtol=1e-6)
