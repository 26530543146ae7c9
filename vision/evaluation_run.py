"""One detector evaluation, whoever asks: the experiment's evaluate step, ``creative-insights evaluate`` and
``scripts/evaluate_detector.py`` all run :func:`evaluate_run`, so the same labels and detector give the same
``metrics.json`` everywhere.

The faces come from an annotation run (``annotations=``) or from running a detector here over the labelled images
(``images=``). Either way the headline ``ap50`` is AP@0.5 of the detector's operating output (every face at or above
its cut-off, what an annotation keeps); when the detector runs here with its cut-off lowered to 0
(``full_curve``), ``ap50_full_curve`` adds the whole curve's figure and the threshold chooser sees every score.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vision.box_convention import image_level_by_group, rescale_fitted, strip_curves
from vision.evaluate import (
    BOX_COLUMNS,
    choose_threshold,
    error_table,
    evaluate_detections,
    match_detections,
    to_jsonable,
)
from vision.evaluate_plots import contact_sheet, plot_pr_curves

log = logging.getLogger(__name__)

FACE_COLUMNS = ["image_id", *BOX_COLUMNS, "prob"]


@dataclass(frozen=True)
class ContactSheetOptions:
    """The contact sheet of an evaluation: images with errors first, TP green, FP red, missed faces blue."""

    enabled: bool = True
    max_images: int = 60
    tile: int = 256
    columns: int = 6


def annotation_faces(folder: str | Path, image_ids: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """The faces table of an annotation run, and the labelled images it did not annotate successfully.

    Raises
    ------
    FileNotFoundError
        When ``folder`` lacks the ``images/`` and ``faces/`` tables of an annotation run.
    """
    folder = Path(folder)
    if not (folder / "images").is_dir() or not (folder / "faces").is_dir():
        raise FileNotFoundError(f"annotations={folder}: expected the folders images/ and faces/ of an annotation run")
    images = pd.read_parquet(folder / "images", columns=["image_id", "status"])
    ok = set(images.loc[images["status"] == "ok", "image_id"])
    faces = pd.read_parquet(folder / "faces", columns=FACE_COLUMNS)
    return faces, [i for i in image_ids if i not in ok]


def detect_faces(
    annotator: Any,
    images_root: str | Path,
    image_ids: Sequence[str],
    *,
    batch_size: int = 8,
    max_pixels: int | None = None,
    max_long_side: int | None = None,
) -> tuple[pd.DataFrame, list[str], float]:
    """Decode the labelled images as an annotation run does and detect faces in batches.

    Parameters
    ----------
    annotator : vision.annotate.BatchAnnotator
        Wraps the detector; its ``annotate_batch(ids, images)`` returns ``(image_rows, face_rows)``.
    images_root : path
        Folder the label ``image_id`` values are relative to.

    Returns
    -------
    (DataFrame, list of str, float)
        Faces (``image_id, x1, y1, x2, y2, prob`` and the annotator's other face columns), the ids that could not be
        decoded (logged with the reason), and the seconds spent in the annotator.
    """
    from vision.io import DEFAULT_MAX_PIXELS, ImageDecodeError, load_image

    root = Path(images_root)
    faces: list[dict] = []
    failed: list[str] = []
    seconds = 0.0
    batch_ids: list[str] = []
    batch: list[Any] = []
    for k, image_id in enumerate(image_ids):
        try:
            batch.append(
                load_image(root / image_id, max_pixels=max_pixels or DEFAULT_MAX_PIXELS, max_long_side=max_long_side)
            )
            batch_ids.append(image_id)
        except ImageDecodeError as err:
            log.warning("cannot evaluate %s: %s", image_id, err.reason)
            failed.append(image_id)
        if batch and (len(batch) >= batch_size or k == len(image_ids) - 1):
            start = time.perf_counter()
            faces.extend(annotator.annotate_batch(batch_ids, batch)[1])
            seconds += time.perf_counter() - start
            batch_ids, batch = [], []
    table = pd.DataFrame(faces) if faces else pd.DataFrame(columns=FACE_COLUMNS)
    return table, failed, seconds


def evaluate_faces(
    labels: pd.DataFrame,
    faces: pd.DataFrame,
    image_ids: Sequence[str],
    *,
    operating_threshold: float | None = None,
    full_curve: bool = False,
    iou_threshold: float = 0.5,
    group_by: Sequence[str] = (),
    box_scale_by: str | None = None,
    target_precision: float = 0.95,
) -> dict:
    """Every figure of ``metrics.json`` for ``faces`` on the labelled ``image_ids``.

    Parameters
    ----------
    labels : DataFrame
        From :func:`vision.evaluate.load_labels`.
    faces : DataFrame
        ``image_id, x1, y1, x2, y2, prob`` in original pixels.
    operating_threshold : float, optional
        The detector's cut-off on ``prob``: the headline metrics use the faces at or above it (None: every face).
    full_curve : bool
        ``faces`` hold every score the detector produced (its cut-off lowered to 0): ``ap50_full_curve`` is added.
    iou_threshold, group_by, target_precision :
        Matching IoU, label columns to break the metrics down by, and the threshold chooser's target precision.
    box_scale_by : str, optional
        Fit the box-convention rescaling per value of this label column (default: one fit).

    Returns
    -------
    dict
        :func:`vision.evaluate.evaluate_detections`'s result plus ``threshold_choice``, ``rescaled`` (the same
        evaluation against label boxes rescaled to the detector's box size), ``image_level_by`` and, with
        ``full_curve``, ``ap50_full_curve``.
    """
    kept = faces if operating_threshold is None else faces[faces["prob"] >= operating_threshold]
    scored = labels[labels["image_id"].isin(set(image_ids))]
    options = {"image_ids": image_ids, "iou_threshold": iou_threshold, "group_by": list(group_by)}
    result = evaluate_detections(labels, kept, score_threshold=operating_threshold, **options)
    result["ap_definition"] = "AP@0.5, all-point interpolated, over the faces at or above the operating threshold"
    if full_curve:
        # Only the overall AP is kept, so the per-group blocks are not computed a second time.
        result["ap50_full_curve"] = evaluate_detections(labels, faces, **{**options, "group_by": []})["ap50"]
    gt = scored.dropna(subset=BOX_COLUMNS)
    matches = match_detections(gt, faces[faces["image_id"].isin(set(image_ids))], iou_threshold=iou_threshold)
    result["threshold_choice"] = choose_threshold(matches, len(gt), target_precision)
    rescaled_labels, fits = rescale_fitted(scored, kept, by=box_scale_by, score_threshold=operating_threshold)
    rescaled = evaluate_detections(rescaled_labels, kept, score_threshold=operating_threshold, **options)
    result["rescaled"] = {"box_scale": fits, **strip_curves(rescaled)}
    result["image_level_by"] = image_level_by_group(result, list(group_by))
    return result


def write_evaluation(
    out_dir: str | Path,
    result: dict,
    labels: pd.DataFrame,
    faces: pd.DataFrame,
    *,
    images_root: str | Path | None = None,
    sheet: ContactSheetOptions | None = None,
) -> list[str]:
    """Write ``metrics.json``, ``errors.csv``, ``pr_curve.png`` and (with ``images_root``) ``contact_sheet.png``.

    Returns
    -------
    list of str
        The names of the files written, relative to ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sheet = sheet or ContactSheetOptions()
    threshold, iou = result["score_threshold"], result["iou_threshold"]
    evaluated = [i for i in labels["image_id"].unique() if i not in set(result.get("not_evaluated", []))]
    scored = labels[labels["image_id"].isin(set(evaluated))]
    (out / "metrics.json").write_text(json.dumps(to_jsonable(result), indent=2, allow_nan=False))
    extra = [c for c in labels.columns if c not in ("image_id", *BOX_COLUMNS)]
    error_table(scored, faces, iou_threshold=iou, score_threshold=threshold, extra_columns=extra).to_csv(
        out / "errors.csv", index=False
    )
    curves = {"all": {**result["face_level"]["pr_curve"], "ap": result["ap50"]}}
    for column in [k[3:] for k in result if k.startswith("by_")][-1:]:  # the last grouping keeps the plot readable
        for g, block in result[f"by_{column}"].items():
            curves[f"{column}={g}"] = {**block["face_level"]["pr_curve"], "ap": block["face_level"]["ap50"]}
    plot_pr_curves(curves, out / "pr_curve.png")
    written = ["metrics.json", "errors.csv", "pr_curve.png"]
    if sheet.enabled and images_root is not None and Path(images_root).is_dir():
        from vision.io import load_image

        root = Path(images_root)
        contact_sheet(
            scored,
            faces,
            lambda image_id: load_image(root / image_id).pixels,
            out / "contact_sheet.png",
            iou_threshold=iou,
            score_threshold=threshold,
            image_ids=evaluated,
            tile=sheet.tile,
            columns=sheet.columns,
            max_images=sheet.max_images,
        )
        written.append("contact_sheet.png")
    return written


def evaluate_run(
    labels_path: str | Path,
    out_dir: str | Path,
    *,
    annotations: str | Path | None = None,
    images: str | Path | None = None,
    annotator: Any = None,
    operating_threshold: float | None = None,
    full_curve: bool = False,
    iou_threshold: float = 0.5,
    group_by: Sequence[str] = (),
    box_scale_by: str | None = None,
    target_precision: float = 0.95,
    sheet: ContactSheetOptions | None = None,
    decode: dict | None = None,
) -> dict:
    """Evaluate a detector on labelled images and write the evaluation's files into ``out_dir``.

    Parameters
    ----------
    labels_path : path
        ``labels.csv`` (``image_id,x1,y1,x2,y2`` per face; a face-free image once with empty boxes; extra columns
        such as ``style`` or ``domain`` kept for ``group_by``).
    out_dir : path
        Receives ``metrics.json``, ``errors.csv``, ``pr_curve.png`` and, when ``images`` is given,
        ``contact_sheet.png`` (and ``detections.csv`` when the detector ran here).
    annotations : path, optional
        An annotation run over the labelled images: its faces are evaluated and no detector runs.
    images : path, optional
        The labelled images' folder: the detector runs on it (without ``annotations``) and the contact sheet is drawn.
    annotator : vision.annotate.BatchAnnotator, optional
        Runs the detector when ``annotations`` is not given.
    operating_threshold, full_curve, iou_threshold, group_by, box_scale_by, target_precision :
        See :func:`evaluate_faces`. Label columns in ``group_by`` that the labels lack are skipped with a warning.
    sheet : ContactSheetOptions, optional
    decode : dict, optional
        ``batch_size``, ``max_pixels``, ``max_long_side`` for decoding when the detector runs here.

    Returns
    -------
    dict
        The metrics as written to ``metrics.json`` (strict JSON values), plus ``source`` and ``not_evaluated``.
    """
    from vision.evaluate import load_labels

    labels = load_labels(labels_path)
    label_ids = list(labels["image_id"].unique())
    timing = None
    if annotations is not None:
        faces, missing = annotation_faces(annotations, label_ids)
        source = f"annotations {annotations}"
    elif images is not None and annotator is not None:
        if not Path(images).is_dir():
            raise FileNotFoundError(f"images={images}: not a folder")
        faces, missing, seconds = detect_faces(annotator, images, label_ids, **(decode or {}))
        n_ok = len(label_ids) - len(missing)
        timing = {"detect_seconds": seconds, "images_per_second": n_ok / seconds if seconds > 0 else None}
        source = f"detector on {images}"
    else:
        raise ValueError("give images=<folder> (to run the detector) or annotations=<annotation output folder>")
    evaluated = [i for i in label_ids if i not in set(missing)]
    if not evaluated:
        raise ValueError(f"labels {labels_path}: none of its images could be evaluated (wrong folder?)")
    groups = [c for c in group_by if c in labels.columns]
    for column in sorted(set(group_by) - set(groups)):
        log.warning("group_by: the labels have no column %r; skipped", column)
    result = evaluate_faces(
        labels,
        faces,
        evaluated,
        operating_threshold=operating_threshold,
        full_curve=full_curve and annotations is None,
        iou_threshold=iou_threshold,
        group_by=groups,
        box_scale_by=box_scale_by,
        target_precision=target_precision,
    )
    result.update(source=source, labels=str(labels_path), n_not_evaluated=len(missing), not_evaluated=missing)
    if timing is not None:
        result["timing"] = timing
    kept = faces if operating_threshold is None else faces[faces["prob"] >= operating_threshold]
    write_evaluation(out_dir, result, labels, kept, images_root=images, sheet=sheet)
    if annotations is None:
        faces.to_csv(Path(out_dir) / "detections.csv", index=False)
    return to_jsonable(result)
