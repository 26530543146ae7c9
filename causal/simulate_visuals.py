"""The simulator's visual columns: drawn parametrically, or copied from a real annotation images table (image-level
columns from any row, face columns from rows with a face)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from causal.tables import DataError

# Brightness shift by genre (parametric mode): img_brightness goes with take rate only through genre.
_BRIGHTNESS_SHIFT = {"horror": -0.15, "documentary": -0.05, "animation": 0.10, "comedy": 0.08}

_FACE_COLUMNS = ("face_prob_max", "largest_face_cx", "largest_face_cy", "face_embedding_mean")
# Columns of a real images table that are not image-level features: ids, status, and the face columns (which the
# simulator draws from face rows or generates). Every other column (colour features, image_embedding, width, ...)
# is copied as an image-level covariate, whatever the vision stage names it.
_NOT_IMAGE_LEVEL = frozenset(
    {
        "image_id",
        "status",
        "error",
        "face_present",
        "face_count",
        "face_area_mean",
        "face_area_max",
        "face_area_total",
        *_FACE_COLUMNS,
        # Head pose of the largest face (vision.pose): not drawn by the simulator.
        *("largest_face_yaw", "largest_face_pitch", "largest_face_roll", "largest_face_frontal"),
    }
)


def _face_rows(features: pd.DataFrame, max_faces: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Usable rows of a real images table, and those with a face (count capped at ``max_faces``)."""
    rows = features
    if "status" in rows.columns:
        rows = rows.loc[rows["status"].astype(str).str.lower() != "error"]
    if "face_count" in rows.columns:
        count = pd.to_numeric(rows["face_count"], errors="coerce").fillna(0)
    elif "face_present" in rows.columns:
        count = rows["face_present"].astype(bool).astype(int)
    else:
        raise DataError("features: the images table needs a 'face_count' or 'face_present' column")
    if len(rows) == 0:
        raise DataError("features: the images table has no row with status ok")
    faces = rows.loc[count >= 1].copy()
    if len(faces) == 0:
        raise DataError("features: no image in the table has a face; cannot sample face features from it")
    faces["face_count"] = np.minimum(count[count >= 1].astype(int), max_faces)
    return rows.reset_index(drop=True), faces.reset_index(drop=True)


def _parametric_visuals(data, treated, rng, embedding_dim, genre_names, g_idx) -> None:
    n_genres = len(genre_names)
    n = len(data)
    prob = 0.9 + 0.1 * rng.beta(5.0, 1.0, size=n)
    cx = rng.beta(5.0, 5.0, size=n)
    cy = rng.beta(4.0, 6.0, size=n)
    data["face_prob_max"] = np.where(treated, prob, np.nan)
    data["largest_face_cx"] = np.where(treated, cx, np.nan)
    data["largest_face_cy"] = np.where(treated, cy, np.nan)
    shift = np.array([_BRIGHTNESS_SHIFT.get(g, 0.0) for g in genre_names])[g_idx]
    data["img_brightness"] = np.clip(0.5 + shift + 0.1 * rng.standard_normal(n), 0.0, 1.0)
    data["img_colourfulness"] = rng.gamma(4.0, 0.08, size=n)
    if embedding_dim > 0:
        centres = rng.standard_normal((n_genres, embedding_dim))
        image_emb = (centres[g_idx] + rng.standard_normal((n, embedding_dim))).astype(np.float32)
        face_emb = rng.standard_normal((n, embedding_dim)).astype(np.float32)
        data["image_embedding"] = list(image_emb)
        data["face_embedding_mean"] = [face_emb[i] if treated[i] else None for i in range(n)]


def _copy_real_visuals(data, all_rows, face_rows, face_pick, treated, rng) -> None:
    n = len(data)
    pick = rng.integers(0, len(all_rows), size=n)
    image_cols = [c for c in all_rows.columns if c not in _NOT_IMAGE_LEVEL and c not in data.columns]
    for col in image_cols:
        data[col] = all_rows[col].to_numpy()[pick]
    if "image_id" in all_rows.columns:
        data["source_image_id"] = all_rows["image_id"].astype(str).to_numpy()[pick]
    for col in _FACE_COLUMNS:
        if col in face_rows.columns:
            values = face_rows[col].to_numpy()[face_pick]
            if col == "face_embedding_mean":
                data[col] = [values[i] if treated[i] else None for i in range(n)]
            else:
                data[col] = np.where(treated, pd.to_numeric(pd.Series(values), errors="coerce"), np.nan)
    if "image_id" in face_rows.columns:
        data["source_face_image_id"] = np.where(treated, face_rows["image_id"].astype(str).to_numpy()[face_pick], None)


# ------------------------------------------------------------------------------------------------------ from config
