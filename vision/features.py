"""Per-image aggregates of the detected faces: the treatment and mediator columns of the images table.

The column names here are the data contract of ``docs/ARCHITECTURE.md`` ("Images table" and
"Faces table"); the causal stage reads them by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FACE_AGGREGATE_COLUMNS: tuple[str, ...] = (
    "face_present",
    "face_count",
    "face_area_mean",
    "face_area_max",
    "face_area_total",
    "face_prob_max",
    "largest_face_cx",
    "largest_face_cy",
)


def box_area_fractions(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area of each box as a fraction of the image area.

    Parameters
    ----------
    boxes : np.ndarray
        (n, 4) x1, y1, x2, y2 in original pixels.
    width, height : int
        Original image size in pixels.

    Returns
    -------
    np.ndarray
        (n,) float64 in [0, 1].
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
    h = np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    return np.clip(w * h / float(width * height), 0.0, 1.0)


def face_aggregates(boxes: np.ndarray, probs: np.ndarray, width: int, height: int) -> dict[str, Any]:
    """Presence, count, size, probability and position of an image's faces.

    Parameters
    ----------
    boxes : np.ndarray
        (n, 4) face boxes in original pixels; n may be 0.
    probs : np.ndarray
        (n,) detection probabilities.
    width, height : int
        Original image size in pixels.

    Returns
    -------
    dict
        ``face_present`` (bool), ``face_count`` (int), ``face_area_mean``/``_max``/``_total`` (fractions of the
        image area; 0 when there is no face; the total can exceed the union area when faces overlap),
        ``face_prob_max`` (null when no face), ``largest_face_cx``/``_cy`` (the largest face's centre relative to
        the image, 0..1; null when no face).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    n = len(boxes)
    if n == 0:
        return {
            "face_present": False,
            "face_count": 0,
            "face_area_mean": 0.0,
            "face_area_max": 0.0,
            "face_area_total": 0.0,
            "face_prob_max": None,
            "largest_face_cx": None,
            "largest_face_cy": None,
        }
    areas = box_area_fractions(boxes, width, height)
    largest = boxes[int(np.argmax(areas))]
    return {
        "face_present": True,
        "face_count": n,
        "face_area_mean": float(areas.mean()),
        "face_area_max": float(areas.max()),
        "face_area_total": float(areas.sum()),
        "face_prob_max": float(probs.max()),
        "largest_face_cx": float(np.clip((largest[0] + largest[2]) / 2.0 / width, 0.0, 1.0)),
        "largest_face_cy": float(np.clip((largest[1] + largest[3]) / 2.0 / height, 0.0, 1.0)),
    }


def mean_embedding(embeddings: np.ndarray | None) -> np.ndarray | None:
    """The L2-normalised mean of an image's face embeddings, or None when there are none.

    Parameters
    ----------
    embeddings : np.ndarray or None
        (n, d) L2-normalised face embeddings.

    Returns
    -------
    np.ndarray or None
        (d,) float32. Renormalised so that images with one face and with many faces live on the same sphere.
    """
    if embeddings is None or len(embeddings) == 0:
        return None
    mean = np.asarray(embeddings, dtype=np.float64).mean(axis=0)
    norm = np.linalg.norm(mean)
    return (mean / norm if norm > 0 else mean).astype(np.float32)
