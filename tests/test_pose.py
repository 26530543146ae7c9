"""vision.pose: head yaw / pitch / roll from five landmarks, against projections with known angles."""

from __future__ import annotations

import numpy as np
import pytest

from vision.pose import (
    FACE_MODEL,
    IMAGE_POSE_COLUMNS,
    angles,
    face_poses,
    head_pose,
    largest_face_pose,
    project,
    rotation,
    synthetic_poses,
)


@pytest.mark.parametrize("pose", [(0, 0, 0), (35, 0, 0), (-50, 12, -8), (10, -25, 28), (-20, 28, 15)])
def test_exact_under_weak_perspective(pose):
    """The model's own face seen from far away (orthographic): the angles come back exactly."""
    got = head_pose(project(*pose, focal=1e7) * 80 + [300, 200])  # any scale and offset, as in pixels
    assert (got["yaw"], got["pitch"], got["roll"]) == pytest.approx(pose, abs=1e-3)


def test_rotation_round_trip_and_frontal_flag():
    for pose in [(5, -7, 3), (-59, 29, -29)]:
        assert angles(rotation(*pose)) == pytest.approx(pose)
    assert head_pose(project(10, 5, 30))["frontal"] is True  # roll does not count
    assert head_pose(project(35, 0, 0))["frontal"] is False
    assert head_pose(project(0, -25, 0))["frontal"] is False


def test_mirror_image_negates_yaw_and_roll():
    """A horizontally mirrored face (landmarks reordered: smaller x first) has the opposite yaw and roll."""
    points = project(25, 10, 12) + np.random.default_rng(0).normal(scale=0.01, size=(5, 2))
    mirrored = points * [-1, 1]
    mirrored = mirrored[[1, 0, 2, 4, 3]]
    a, b = head_pose(points), head_pose(mirrored)
    assert b["yaw"] == pytest.approx(-a["yaw"], abs=1e-6) and b["roll"] == pytest.approx(-a["roll"], abs=1e-6)
    assert b["pitch"] == pytest.approx(a["pitch"], abs=1e-6)


def test_error_on_noisy_perspective_projections():
    """Perturbed faces (shape sd 0.05, landmark sd 0.02 inter-ocular units), perspective at 10 inter-ocular units:
    the figures in the README."""
    err = synthetic_poses(1000, seed=1)
    assert err["yaw_mae"] < 8 and err["pitch_mae"] < 8 and err["roll_mae"] < 4
    assert err["frontal_accuracy"] > 0.8
    exact = synthetic_poses(300, seed=1, shape_sd=0.0, pixel_sd=0.0)
    assert exact["yaw_mae"] < 2 and exact["pitch_mae"] < 2 and exact["roll_mae"] < 1  # perspective only


def test_missing_landmarks_and_image_columns():
    assert head_pose(np.full(10, np.nan)) == {"yaw": None, "pitch": None, "roll": None, "frontal": None}
    assert head_pose(np.zeros((5, 2)))["yaw"] is None
    assert largest_face_pose(np.zeros((0, 4)), np.zeros((0, 5, 2))) == dict.fromkeys(IMAGE_POSE_COLUMNS)
    small, large = project(40, 0, 0) * 10 + 50, project(-10, 0, 0) * 40 + 300
    boxes = np.array([[40, 40, 60, 65], [250, 250, 350, 380]])
    pose = largest_face_pose(boxes, np.stack([small, large]))
    assert pose["largest_face_yaw"] == pytest.approx(-10, abs=1.5) and pose["largest_face_frontal"] is True
    assert len(face_poses(np.stack([small, large]).reshape(2, 10))) == 2
    assert FACE_MODEL.shape == (5, 3)
