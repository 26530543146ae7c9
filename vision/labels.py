"""Labelled face boxes and detections as tables: reading, checking and normalising them.

A labels CSV has one row per face box (``image_id, x1, y1, x2, y2`` in original pixels, x2/y2 exclusive) and a
face-free image once with empty box fields; extra columns (``style``, ``domain``) are kept. Errors name the file,
the column and the data row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

BOX_COLUMNS = ["x1", "y1", "x2", "y2"]


def load_labels(path: str | Path) -> pd.DataFrame:
    """Read a labels CSV: one row per face box, an image without faces once with empty box fields.

    Parameters
    ----------
    path : path-like
        CSV with at least the columns ``image_id, x1, y1, x2, y2`` (original pixels, x2/y2 exclusive). Other
        columns (e.g. ``style``) are kept.

    Returns
    -------
    pandas.DataFrame
        ``image_id`` (str) and float box columns; NaN boxes for face-free images; a fresh RangeIndex (the
        ``gt_index`` that :func:`match_detections` refers to).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        Naming the file and the column or row when a column is missing, a box is partly empty, not numeric, or
        has ``x2 <= x1`` or ``y2 <= y1``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    try:
        df = pd.read_csv(path, dtype={"image_id": str}, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV labels file ({err})") from None
    return validate_labels(df, source=str(path))


def validate_labels(df: pd.DataFrame, *, source: str = "labels") -> pd.DataFrame:
    """Check and normalise a labels table (see :func:`load_labels`); ``source`` names it in error messages."""
    missing = [c for c in ["image_id", *BOX_COLUMNS] if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; expected image_id,x1,y1,x2,y2 (+ optional extras)")
    df = df.copy().reset_index(drop=True)
    if df["image_id"].isna().any():
        row = int(np.flatnonzero(df["image_id"].isna().to_numpy())[0])
        raise ValueError(f"{source}: empty image_id in data row {row + 1}")
    df["image_id"] = df["image_id"].astype(str)
    for c in BOX_COLUMNS:
        values = pd.to_numeric(df[c], errors="coerce")
        bad = values.isna() & df[c].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{source}: column {c!r} is not numeric in data row {row + 1}: {df[c].iloc[row]!r}")
        df[c] = values.astype(float)
    empty = df[BOX_COLUMNS].isna()
    partial = empty.any(axis=1) & ~empty.all(axis=1)
    if partial.any():
        row = int(np.flatnonzero(partial.to_numpy())[0])
        raise ValueError(f"{source}: data row {row + 1} ({df['image_id'].iloc[row]}) has some box fields empty")
    box = ~empty.all(axis=1)
    degenerate = box & ((df["x2"] <= df["x1"]) | (df["y2"] <= df["y1"]))
    if degenerate.any():
        row = int(np.flatnonzero(degenerate.to_numpy())[0])
        raise ValueError(f"{source}: data row {row + 1} ({df['image_id'].iloc[row]}) has x2 <= x1 or y2 <= y1")
    mixed = df.loc[~box, "image_id"].isin(df.loc[box, "image_id"])
    if mixed.any():
        image_id = df.loc[~box, "image_id"][mixed].iloc[0]
        raise ValueError(f"{source}: image {image_id!r} has both face boxes and an empty (face-free) row")
    return df


def validate_detections(df: pd.DataFrame, *, source: str = "detections") -> pd.DataFrame:
    """Check a detections table (``image_id, x1, y1, x2, y2, prob``); return a copy with a fresh RangeIndex."""
    missing = [c for c in ["image_id", *BOX_COLUMNS, "prob"] if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; expected image_id,x1,y1,x2,y2,prob")
    df = df.copy().reset_index(drop=True)
    df["image_id"] = df["image_id"].astype(str)
    for c in [*BOX_COLUMNS, "prob"]:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
        if df[c].isna().any():
            row = int(np.flatnonzero(df[c].isna().to_numpy())[0])
            raise ValueError(f"{source}: column {c!r} is missing or not numeric in row {row}")
    return df
