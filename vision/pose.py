"""Head orientation (yaw, pitch, roll) from a face detector's five landmarks, and a ``frontal`` flag.

Geometric model
---------------
A generic 3D face (:data:`FACE_MODEL`, adult mean proportions in units of the distance between the eye centres,
from the 3D head-pose model common to OpenCV pose tutorials): eye centres at ``(-0.5, 0, 0)`` and ``(0.5, 0, 0)``,
nose tip at ``(0, 0.54, 0.43)``, mouth corners at ``(-0.40, 1.02, 0.03)`` and ``(0.40, 1.02, 0.03)``; x to the
image right, y down, z towards the camera (a right-handed frame rotated so the face looks at the viewer).

Camera: scaled orthographic (weak perspective), ``p = s R[:2] X + t``: adequate when the face's depth is small
against its distance from the camera, which holds for artwork faces. The 2 x 3 matrix ``M = s R[:2]`` is fitted to
the five centred landmarks by least squares (ten equations, six unknowns), then projected onto the nearest scaled
pair of orthonormal rows (SVD: ``M = U S V^T -> U V^T``); the third row is their cross product. The angles are the
Euler decomposition ``R = Rz(roll) Rx(pitch) Ry(yaw)``:

* ``yaw`` (degrees): turn left/right, positive when the nose points to the image's right;
* ``pitch``: nod, positive when the face tilts up (nose moves up the image);
* ``roll``: in-plane tilt, positive clockwise on screen (the eye on the image's right lower).

A face is ``frontal`` when ``|yaw| <= FRONTAL_YAW`` and ``|pitch| <= FRONTAL_PITCH`` (degrees). The landmarks must
be in the order of ``docs/ARCHITECTURE.md`` (eye with the smaller x, other eye, nose tip, mouth corner with the
smaller x, other); a face whose landmarks are missing or degenerate gets nulls.

Accuracy is measured by :func:`synthetic_poses` / ``tests/test_pose.py`` on projections of perturbed 3D faces with
known angles (README, "Figure orientation").
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Generic 3D landmarks (eye, eye, nose tip, mouth corner, mouth corner) in inter-ocular units; x right, y down.
FACE_MODEL = np.array(
    [
        [-0.50, 0.00, 0.00],
        [0.50, 0.00, 0.00],
        [0.00, 0.54, 0.43],
        [-0.40, 1.02, 0.03],
        [0.40, 1.02, 0.03],
    ]
)
FRONTAL_YAW = 20.0
FRONTAL_PITCH = 20.0
POSE_COLUMNS = ("yaw", "pitch", "roll", "frontal")
IMAGE_POSE_COLUMNS = ("largest_face_yaw", "largest_face_pitch", "largest_face_roll", "largest_face_frontal")

_MODEL_CENTRED = FACE_MODEL - FACE_MODEL.mean(axis=0)
_MODEL_PINV = np.linalg.pinv(_MODEL_CENTRED)  # (3, 5)


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``Rz(roll) Rx(pitch) Ry(yaw)`` from angles in degrees (the module's convention)."""
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def angles(rot: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation matrix, inverse of :func:`rotation`."""
    pitch = np.arcsin(np.clip(rot[2, 1], -1.0, 1.0))
    yaw = np.arctan2(-rot[2, 0], rot[2, 2])
    roll = np.arctan2(-rot[0, 1], rot[1, 1])
    return float(np.degrees(yaw)), float(np.degrees(pitch)), float(np.degrees(roll))


def head_pose(landmarks: np.ndarray) -> dict[str, Any]:
    """Yaw, pitch, roll (degrees) and ``frontal`` of one face from its five landmarks ``(5, 2)`` or ``(10,)``.

    Returns nulls when the landmarks are missing (NaN) or degenerate (the eyes on one point).
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    if not np.isfinite(points).all() or np.linalg.norm(points[1] - points[0]) < 1e-6:
        return dict.fromkeys(POSE_COLUMNS)
    centred = points - points.mean(axis=0)
    m = centred.T @ _MODEL_PINV.T  # (2, 3): least squares of centred = model @ m.T
    u, _, vt = np.linalg.svd(m, full_matrices=False)
    rows = u @ vt  # nearest pair of orthonormal rows
    rot = np.vstack([rows, np.cross(rows[0], rows[1])])
    yaw, pitch, roll = angles(rot)
    frontal = bool(abs(yaw) <= FRONTAL_YAW and abs(pitch) <= FRONTAL_PITCH)
    return {"yaw": yaw, "pitch": pitch, "roll": roll, "frontal": frontal}


def face_poses(landmarks: np.ndarray) -> list[dict[str, Any]]:
    """:func:`head_pose` of every face: ``landmarks`` of shape (n, 5, 2) or (n, 10)."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    return [head_pose(points) for points in lm]


def largest_face_pose(boxes: np.ndarray, landmarks: np.ndarray) -> dict[str, Any]:
    """The images-table columns :data:`IMAGE_POSE_COLUMNS`: the pose of the face with the largest box (nulls
    when there is no face)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return dict.fromkeys(IMAGE_POSE_COLUMNS)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    pose = head_pose(np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)[int(np.argmax(areas))])
    return {f"largest_face_{k}": v for k, v in pose.items()}


def project(
    yaw: float, pitch: float, roll: float, *, model: np.ndarray = FACE_MODEL, focal: float = 10.0
) -> np.ndarray:
    """The five landmarks (5, 2) of ``model`` rotated by the angles and seen by a pinhole camera ``focal``
    inter-ocular units in front of the face (perspective, unlike the estimator's weak perspective)."""
    rotated = (rotation(yaw, pitch, roll) @ (model - model.mean(axis=0)).T).T
    depth = focal - rotated[:, 2]  # z points to the camera
    return rotated[:, :2] * (focal / depth)[:, None]


def synthetic_poses(
    n: int = 2000, *, seed: int = 0, shape_sd: float = 0.05, pixel_sd: float = 0.02, focal: float = 10.0
) -> dict[str, Any]:
    """Pose error on projections of perturbed faces with known angles.

    Each face: the model's 3D landmarks plus Gaussian shape noise (``shape_sd`` inter-ocular units: other faces'
    proportions), rotated by yaw ~ U(-60, 60), pitch ~ U(-30, 30), roll ~ U(-30, 30) degrees, projected with
    perspective at ``focal`` inter-ocular units, plus landmark noise (``pixel_sd`` inter-ocular units: a detector's
    landmark error). Returns the mean and 90th-percentile absolute error per angle, and the frontal flag's accuracy.
    """
    rng = np.random.default_rng(seed)
    true = np.column_stack([rng.uniform(-60, 60, n), rng.uniform(-30, 30, n), rng.uniform(-30, 30, n)])
    est = np.empty_like(true)
    for k, (yaw, pitch, roll) in enumerate(true):
        model = FACE_MODEL + rng.normal(scale=shape_sd, size=FACE_MODEL.shape)
        points = project(yaw, pitch, roll, model=model, focal=focal) + rng.normal(scale=pixel_sd, size=(5, 2))
        pose = head_pose(points)
        est[k] = pose["yaw"], pose["pitch"], pose["roll"]
    err = np.abs(est - true)
    frontal_true = (np.abs(true[:, 0]) <= FRONTAL_YAW) & (np.abs(true[:, 1]) <= FRONTAL_PITCH)
    frontal_est = (np.abs(est[:, 0]) <= FRONTAL_YAW) & (np.abs(est[:, 1]) <= FRONTAL_PITCH)
    out: dict[str, Any] = {"n": n, "shape_sd": shape_sd, "pixel_sd": pixel_sd, "focal": focal}
    for j, name in enumerate(("yaw", "pitch", "roll")):
        out[f"{name}_mae"] = float(err[:, j].mean())
        out[f"{name}_p90"] = float(np.quantile(err[:, j], 0.9))
    out["frontal_accuracy"] = float(np.mean(frontal_true == frontal_est))
    return out
