"""The artwork in the report: thumbnails with and without the treatment, detected faces drawn with their
probabilities, and the detector's worst false alarms and misses when labels were given.

Thumbnails are JPEG ``data:`` URIs of at most :data:`THUMB_PX` pixels on the long side (quality
:data:`JPEG_QUALITY`), at most :data:`PER_ARM` per arm and :data:`PER_ERROR_KIND` per error kind, so the page stays
self-contained and small (about 10 kB per thumbnail). Images are read from the annotation run's input folder; a
file that cannot be read is left out (logged).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

THUMB_PX = 180
JPEG_QUALITY = 70
PER_ARM = 6
PER_ERROR_KIND = 4
BOX_COLUMNS = ["x1", "y1", "x2", "y2"]
FACE_COLOUR, FALSE_ALARM_COLOUR, MISS_COLOUR = (40, 200, 60), (230, 30, 30), (30, 90, 230)


def thumbnail_uri(path: Path, boxes: Iterable[tuple[tuple[float, ...], str, tuple[int, int, int]]] = ()) -> str:
    """A JPEG ``data:`` URI of the upright image at most :data:`THUMB_PX` px long, ``boxes`` (x1, y1, x2, y2 in
    the upright original's pixels, a caption, an RGB colour) drawn on it."""
    from PIL import Image, ImageDraw, ImageOps

    with Image.open(path) as im:
        image = ImageOps.exif_transpose(im).convert("RGB")
    scale = THUMB_PX / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    else:
        scale = 1.0
    draw = ImageDraw.Draw(image)
    for box, caption, colour in boxes:
        x1, y1, x2, y2 = (float(v) * scale for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
        if caption:
            draw.rectangle([x1, max(0, y1 - 11), x1 + 6 * len(caption) + 2, max(11, y1)], fill=colour)
            draw.text((x1 + 1, max(0, y1 - 11)), caption, fill=(255, 255, 255))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def input_root(annotations: Path, configured: str | None) -> Path | None:
    """The folder the annotation run read: ``input=`` when given, else the one in ``annotate_complete.json``."""
    if configured and Path(configured).is_dir():
        return Path(configured)
    marker = annotations / "annotate_complete.json"
    if marker.is_file():
        recorded = json.loads(marker.read_text()).get("input")
        if recorded and Path(recorded).is_dir():
            return Path(recorded)
    return None


def _figure(uri: str, caption: str) -> str:
    return (
        f'<figure><img class="thumb" alt="{html.escape(caption)}" src="{uri}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _face_boxes(faces: pd.DataFrame, image_id: str) -> list:
    rows = faces[faces["image_id"] == image_id]
    return [(tuple(r[c] for c in BOX_COLUMNS), f"{r['prob']:.2f}", FACE_COLOUR) for _, r in rows.iterrows()]


def _arm_examples(images: pd.DataFrame, faces: pd.DataFrame, root: Path, column: str, names: Callable) -> list[str]:
    out = []
    ok = images[images["status"] == "ok"] if "status" in images else images
    treated = pd.to_numeric(ok[column].astype("Float64"), errors="coerce").fillna(0).to_numpy() > 0
    for value, word in ((True, "with"), (False, "without")):
        arm = ok[treated == value].head(PER_ARM)
        for image_id in arm["image_id"]:
            uri = _safe_thumb(root / image_id, _face_boxes(faces, image_id))
            if uri:
                out.append(_figure(uri, f"{word} {names(column)}: {image_id}"))
    return out


def _safe_thumb(path: Path, boxes: list) -> str | None:
    try:
        return thumbnail_uri(path, boxes)
    except Exception as err:  # one unreadable file must not cost the report
        log.warning("gallery: cannot draw %s: %s", path, err)
        return None


def _error_examples(errors: pd.DataFrame, faces: pd.DataFrame, root: Path) -> list[str]:
    """The most confident false alarms (red) and the largest missed faces (blue), other detections green."""
    out = []
    false_alarms = errors[errors["kind"] == "FP"].sort_values("prob", ascending=False).head(PER_ERROR_KIND)
    misses = errors[errors["kind"] == "FN"].assign(area=lambda d: (d.x2 - d.x1) * (d.y2 - d.y1))
    misses = misses.sort_values("area", ascending=False).head(PER_ERROR_KIND)
    for kind, rows, colour in (("false alarm", false_alarms, FALSE_ALARM_COLOUR), ("missed face", misses, MISS_COLOUR)):
        for _, r in rows.iterrows():
            caption = f"{r['prob']:.2f}" if kind == "false alarm" else "missed"
            boxes = [
                b
                for b in _face_boxes(faces, r["image_id"])
                if kind != "false alarm" or b[0] != tuple(r[c] for c in BOX_COLUMNS)
            ]
            uri = _safe_thumb(root / r["image_id"], [*boxes, (tuple(r[c] for c in BOX_COLUMNS), caption, colour)])
            if uri:
                out.append(_figure(uri, f"{kind}: {r['image_id']}"))
    return out


def gallery_html(
    annotations: str | Path | None,
    *,
    input_dir: str | None = None,
    treatment: str = "face_present",
    errors_csv: str | Path | None = None,
    analysed_ids: Iterable[str] | None = None,
    names: Callable[[Any], str] = str,
) -> str:
    """The gallery section's HTML, or '' without a readable annotation folder and its images."""
    if annotations is None or not (Path(annotations) / "images").is_dir():
        return ""
    annotations = Path(annotations)
    root = input_root(annotations, input_dir)
    if root is None:
        return ""
    images = pd.read_parquet(annotations / "images")
    faces = (
        pd.read_parquet(annotations / "faces")
        if (annotations / "faces").is_dir()
        else pd.DataFrame(columns=["image_id", *BOX_COLUMNS, "prob"])
    )
    ids = set(analysed_ids or ()) & set(images["image_id"])
    if ids:
        images = images[images["image_id"].isin(ids)]
    column = treatment if treatment in images.columns else "face_present"
    parts = []
    if column in images.columns:
        arms = _arm_examples(images, faces, root, column, names)
        if arms:
            parts += [
                f"<h3>Examples with and without {html.escape(names(column))}</h3>",
                '<div class="gallery">',
                *arms,
                "</div>",
            ]
    if errors_csv is not None and Path(errors_csv).is_file():
        errs = _error_examples(pd.read_csv(errors_csv), faces, root)
        if errs:
            parts += ["<h3>The detector's worst false alarms and misses</h3>", '<div class="gallery">', *errs, "</div>"]
    if not parts:
        return ""
    cap = (
        f'<p class="muted">Detected faces in green with the detector\'s probability; false alarms red, missed faces '
        f"blue. Thumbnails are embedded JPEGs of at most {THUMB_PX} px on the long side, at most {PER_ARM} per arm "
        f"and {PER_ERROR_KIND} per error kind.</p>"
    )
    return "".join([cap, *parts])


def analysed_image_ids(unit_effects: Path) -> set[str]:
    """The ``image_id`` values of a run's ``unit_effects.parquet`` (empty when it has none)."""
    if not unit_effects.is_file():
        return set()
    frame = pd.read_parquet(unit_effects)
    return set(frame["image_id"].astype(str)) if "image_id" in frame.columns else set()


__all__ = ["Mapping", "analysed_image_ids", "gallery_html", "thumbnail_uri"]
