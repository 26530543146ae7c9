"""Pictures of a detector evaluation: precision-recall curves and a contact sheet of hits, misses and false alarms."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from vision.labels import BOX_COLUMNS, validate_detections, validate_labels
from vision.matching import match_detections

log = logging.getLogger(__name__)


def plot_pr_curves(curves: Mapping[str, Mapping], path: str | Path, *, title: str = "Face detection PR (IoU 0.5)"):
    """Save precision-recall curves to a PNG.

    Parameters
    ----------
    curves : mapping name -> dict
        Each with ``recall`` and ``precision`` sequences (a ``face_level["pr_curve"]``) and optionally ``ap``.
    path : path-like
        Output PNG.

    Returns
    -------
    pathlib.Path
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=120)
    for name, c in curves.items():
        recall, precision = np.asarray(c["recall"], float), np.asarray(c["precision"], float)
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        label = name if c.get("ap") is None or np.isnan(c["ap"]) else f"{name} (AP {c['ap']:.3f})"
        ax.step(np.concatenate([[0], recall]), np.concatenate([envelope[:1], envelope]), where="pre", label=label)
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision (interpolated)", title=title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def contact_sheet(
    labels: pd.DataFrame,
    faces: pd.DataFrame,
    load: Callable[[str], np.ndarray],
    path: str | Path,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float | None = None,
    image_ids: Sequence[str] | None = None,
    tile: int = 256,
    columns: int = 6,
    max_images: int = 60,
):
    """Save a grid of thumbnails with boxes drawn: TP green, FP red, FN (missed ground truth) blue.

    Images with errors come first. ``load(image_id)`` returns the image as (h, w, 3) uint8 RGB in the frame of
    the boxes; an image that fails to load is drawn as a grey tile with its id.

    Returns
    -------
    pathlib.Path
    """
    from PIL import Image, ImageDraw

    labels = validate_labels(labels)
    thr = -math.inf if score_threshold is None else float(score_threshold)
    ids = list(image_ids) if image_ids is not None else list(labels["image_id"].unique())
    dets = validate_detections(faces, source="faces")
    dets = dets[dets["image_id"].isin(ids) & (dets["prob"] >= thr)].reset_index(drop=True)
    gt = labels[labels["image_id"].isin(ids)].dropna(subset=BOX_COLUMNS)
    m = match_detections(gt, dets, iou_threshold=iou_threshold)
    matched = set(m["gt_index"].dropna().astype(int))
    n_err = {i: 0 for i in ids}
    for i in m.loc[~m["tp"], "image_id"]:
        n_err[i] += 1
    for i in gt.loc[~gt.index.isin(matched), "image_id"]:
        n_err[i] += 1
    ids = sorted(ids, key=lambda i: (-n_err[i], i))[:max_images]

    label_h = 14
    rows = max(1, math.ceil(len(ids) / columns))
    sheet = Image.new("RGB", (columns * tile, rows * (tile + label_h)), (255, 255, 255))
    draw_sheet = ImageDraw.Draw(sheet)
    for k, image_id in enumerate(ids):
        ox, oy = (k % columns) * tile, (k // columns) * (tile + label_h)
        try:
            img = Image.fromarray(np.asarray(load(image_id), dtype=np.uint8)).convert("RGB")
        except Exception as err:  # a broken file must not sink the whole sheet
            log.warning("contact sheet: cannot load %s: %s", image_id, err)
            img = Image.new("RGB", (tile, tile), (128, 128, 128))
            scale = 1.0
        else:
            scale = tile / max(img.size)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
        draw = ImageDraw.Draw(img)
        width = max(2, tile // 128)

        def rect(box, colour, draw=draw, scale=scale, width=width):
            draw.rectangle([v * scale for v in box], outline=colour, width=width)

        for r in gt[gt["image_id"] == image_id].itertuples():
            if r.Index not in matched:
                rect((r.x1, r.y1, r.x2, r.y2), (0, 90, 255))
        for r in m[m["image_id"] == image_id].itertuples():
            rect((r.x1, r.y1, r.x2, r.y2), (0, 200, 0) if r.tp else (255, 0, 0))
        sheet.paste(img, (ox + (tile - img.width) // 2, oy + (tile - img.height) // 2))
        text = image_id if len(image_id) <= 40 else "..." + image_id[-37:]
        draw_sheet.text((ox + 2, oy + tile + 1), f"{text} ({n_err[image_id]} err)", fill=(0, 0, 0))
    path = Path(path)
    sheet.save(path)
    return path
