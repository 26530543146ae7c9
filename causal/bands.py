"""Ready-made banded treatments from the annotation columns: people-count bands and face-size bands.

* ``people_band`` from ``face_count`` (faces detected = people shown): ``"0"``, ``"1"``, ``"2-3"``, ``"4+"``;
* ``face_size_band`` from ``face_area_max`` (the largest face's area as a fraction of the image): ``"none"``
  (no face), ``"small"`` (below 2%), ``"medium"`` (2% to 10%), ``"large"`` (10% and more);
* ``text_position`` from ``text_center_y`` (annotations with ``vision.image_features.text=true``): the third of
  the image holding the largest text block's centre, ``"none"`` without text;
* ``facing_band`` from ``largest_face_yaw`` (head yaw of the largest face, :mod:`vision.pose`): where the head
  turns in image coordinates, ``"left"`` (yaw < -20 degrees), ``"camera"`` (within 20 degrees, the pose module's
  frontal yaw), ``"right"`` (yaw > 20), ``"none"`` without a face. Head orientation, not eye gaze: five landmarks
  give the eye centres, not the pupils.

A band is a categorical column: the funnel (:mod:`causal.discover`) tests each band against the most frequent one;
a single band against another is a binary treatment for the other experiments after a ``data.query`` keeping the
two (e.g. ``data.query="people_band in ['1', '4+']"`` and a 0/1 column). Existing columns of the same name are
kept (the simulator's components, a user's own bands).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PEOPLE_BANDS = ("0", "1", "2-3", "4+")
FACE_SIZE_BANDS = ("none", "small", "medium", "large")
FACE_SIZE_EDGES = (0.02, 0.10)  # area fraction of the largest face: small < 2% <= medium < 10% <= large
FACING_BANDS = ("none", "left", "camera", "right")
FACING_YAW = 20.0  # degrees; vision.pose.FRONTAL_YAW (kept equal by tests/test_discover.py)


def people_band(count: pd.Series) -> pd.Series:
    """``"0"``, ``"1"``, ``"2-3"``, ``"4+"`` from a face count; missing stays missing."""
    values = pd.to_numeric(count, errors="coerce")
    if (values.dropna() < 0).any():
        raise ValueError(f"column {count.name!r}: negative face counts")
    bands = np.select([values < 1, values < 2, values < 4], PEOPLE_BANDS[:3], PEOPLE_BANDS[3])
    return pd.Series(bands, index=count.index, dtype=object).where(values.notna(), None)


def face_size_band(area: pd.Series, count: pd.Series | None = None) -> pd.Series:
    """``"none"`` / ``"small"`` / ``"medium"`` / ``"large"`` from the largest face's area fraction.

    ``"none"`` where ``count`` is 0 (or, without counts, where the area is missing or 0).
    """
    values = pd.to_numeric(area, errors="coerce")
    no_face = values.isna() | (values <= 0)
    if count is not None:
        no_face = pd.to_numeric(count, errors="coerce").fillna(0).to_numpy() < 1
    small, medium = FACE_SIZE_EDGES
    bands = np.select([no_face, values < small, values < medium], FACE_SIZE_BANDS[:3], FACE_SIZE_BANDS[3])
    return pd.Series(bands, index=area.index, dtype=object)


def add_bands(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``people_band`` (from ``face_count``) and ``face_size_band`` (from ``face_area_max``) added
    where their source column exists and the band column does not."""
    out = frame.copy()
    if "face_count" in out and "people_band" not in out:
        out["people_band"] = people_band(out["face_count"])
    if "face_area_max" in out and "face_size_band" not in out:
        out["face_size_band"] = face_size_band(out["face_area_max"], out.get("face_count"))
    if "text_center_y" in out and "text_position" not in out:
        out["text_position"] = text_position(out["text_center_y"], out.get("text_blocks"))
    if "largest_face_yaw" in out and "facing_band" not in out:
        out["facing_band"] = facing_band(out["largest_face_yaw"])
    return out


def facing_band(yaw: pd.Series) -> pd.Series:
    """``"left"`` / ``"camera"`` / ``"right"`` from the largest face's yaw in degrees (+: the nose turns toward the
    image's right); ``"none"`` where there is no face (missing yaw)."""
    values = pd.to_numeric(yaw, errors="coerce")
    none = values.isna().to_numpy(dtype=bool)
    bands = np.select([none, values < -FACING_YAW, values <= FACING_YAW], FACING_BANDS[:3], FACING_BANDS[3])
    return pd.Series(bands, index=yaw.index, dtype=object)


def text_position(center_y: pd.Series, blocks: pd.Series | None = None) -> pd.Series:
    """``"top"`` / ``"middle"`` / ``"bottom"`` third of the largest text block's centre; ``"none"`` without text."""
    values = pd.to_numeric(center_y, errors="coerce")
    none = values.isna().to_numpy(dtype=bool)
    if blocks is not None:
        none = none | (pd.to_numeric(blocks, errors="coerce").fillna(0).to_numpy() < 1)
    bands = np.select([none, values < 1 / 3, values < 2 / 3], ["none", "top", "middle"], "bottom")
    return pd.Series(bands, index=center_y.index, dtype=object)
