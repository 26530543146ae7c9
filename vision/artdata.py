"""Labelled face sets for developing artwork face detectors: readers, the domain column, a fixed split.

The sets live outside the project (``../shared/data/paintings_dev``) or are the bundled sample; their images are
never copied into the project, only lists of image ids (``vision/splits/``). Every reader returns a labels table in
the format of :func:`vision.evaluate.load_labels` (``image_id, x1, y1, x2, y2``, original pixels, x2/y2 exclusive)
plus a ``domain`` column with one of :data:`DOMAINS`, so evaluation can break AP and image-level rates down by domain.

The split is by file content, not by name or order: an image goes to ``heldout`` when the first 8 bytes of
``sha256(seed + sha256(file))`` as an integer, modulo 1000, are below ``1000 * heldout_fraction``. Renaming or
re-ordering files does not move them between parts, and a duplicate file under two names lands in the same part.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pandas as pd

from vision.evaluate import validate_labels

log = logging.getLogger(__name__)

DOMAINS = ("photo", "painting", "drawing", "cartoon")
SPLITS_DIR = Path(__file__).resolve().parent / "splits"
# assets_sample's domain column -> ours.
_SAMPLE_DOMAIN = {"photographic": "photo", "drawn": "drawing"}


def file_digest(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_of(digest: str, *, seed: int = 0, heldout_fraction: float = 0.25) -> str:
    """``"heldout"`` or ``"train"`` for a file with SHA-256 ``digest`` (see the module docstring)."""
    key = hashlib.sha256(f"{seed}:{digest}".encode()).digest()
    return "heldout" if int.from_bytes(key[:8], "big") % 1000 < round(1000 * heldout_fraction) else "train"


def make_split(images_root: str | Path, image_ids: list[str], *, seed: int = 0, heldout_fraction: float = 0.25):
    """The split of ``image_ids`` under ``images_root`` as a table ``image_id, sha256, split``, sorted by id."""
    root = Path(images_root)
    rows = []
    for image_id in sorted(set(image_ids)):
        digest = file_digest(root / image_id)
        rows.append((image_id, digest, split_of(digest, seed=seed, heldout_fraction=heldout_fraction)))
    return pd.DataFrame(rows, columns=["image_id", "sha256", "split"])


def read_split(name: str = "paintings_dev") -> pd.DataFrame:
    """The committed split ``vision/splits/<name>.csv`` (``image_id, sha256, split``)."""
    path = SPLITS_DIR / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no committed split {path}; make it with scripts/train_face_detector.py split=true")
    return pd.read_csv(path, dtype=str)


def split_ids(name: str, part: str) -> list[str]:
    """The image ids of one part (``train`` or ``heldout``) of a committed split."""
    table = read_split(name)
    if part not in set(table["split"]):
        raise ValueError(f"split {name}: no part {part!r} (parts: {sorted(set(table['split']))})")
    return table.loc[table["split"] == part, "image_id"].tolist()


def read_paintings_dev(root: str | Path) -> pd.DataFrame:
    """paintings_dev (whole-head boxes, every image has a face) as a labels table with ``domain="painting"``."""
    root = Path(root)
    boxes = pd.read_csv(root / "boxes.csv", dtype={"image_id": str})
    listed = (root / "images.txt").read_text().split() if (root / "images.txt").is_file() else []
    free = sorted(set(listed) - set(boxes["image_id"]))
    if free:  # the set says every image has a face; keep a face-free one as such if that ever changes
        boxes = pd.concat([boxes, pd.DataFrame({"image_id": free})], ignore_index=True)
    boxes["domain"] = "painting"
    return validate_labels(boxes, source=str(root / "boxes.csv"))


def read_sample_labels(path: str | Path) -> pd.DataFrame:
    """assets_sample/labels.csv with its ``domain`` mapped to ours (photographic -> photo, drawn -> drawing)."""
    labels = pd.read_csv(path, dtype={"image_id": str})
    labels["domain"] = labels["domain"].map(_SAMPLE_DOMAIN).fillna(labels["domain"])
    return validate_labels(labels, source=str(path))
