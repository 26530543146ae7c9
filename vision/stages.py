"""The vision stages of an experiment run, callable from a config node: annotate a folder, evaluate the detector.

``scripts/run_experiment.py`` imports this module lazily (only when the ``annotate`` or ``evaluate`` step runs), so a
causal-only run never imports torch. Both functions take plain arguments and return plain dicts; they never import
``causal`` (docs/ARCHITECTURE.md: one direction of flow).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

_COMPLETE = "annotate_complete.json"


def _input_listing(input_dir: Path, extensions: Sequence[str]) -> list[list[Any]]:
    # file_fingerprint never raises: a dangling or looping symlink is listed (and becomes an error row), not a crash.
    from vision.io import file_fingerprint, find_images, image_id_for

    return [[image_id_for(p, input_dir), *file_fingerprint(p)] for p in find_images(input_dir, extensions)]


def annotate_stage(
    vision_cfg: Any,
    input_dir: str | Path,
    output_dir: str | Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Annotate ``input_dir`` into ``output_dir`` unless a completed run over the same files is already there.

    Completion is recorded in ``output_dir/annotate_complete.json`` with the input listing (image id, size,
    mtime) and the row-shaping vision settings; when both match, the models are not even loaded. Otherwise the
    annotator resumes (:mod:`vision.store`): unchanged images are skipped, changed ones annotated again, rows of
    deleted files removed; other vision settings stop it with an error rather than mix rows.

    Parameters
    ----------
    vision_cfg : DictConfig
        The ``vision`` config node (conf/vision/).
    input_dir, output_dir : path
        Artwork folder (searched recursively) and annotation output folder (``images/``, ``faces/`` Parquet).
    progress : callable ``(n_images, n_faces)``, optional
        Called after every batch.

    Returns
    -------
    dict
        ``{"output": str, "reused": bool, "ok": int, "errors": int, "faces": int, "seconds": float}``.
    """
    from vision.annotate import annotate_from_config, annotation_spec

    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"config key input: {input_dir} is not a folder")
    listing = _input_listing(input_dir, list(vision_cfg.extensions))
    spec = annotation_spec(vision_cfg)
    marker = output_dir / _COMPLETE
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done.get("listing") == listing and done.get("spec") == spec:
            log.info("annotations in %s are complete for %s: reused", output_dir, input_dir)
            return {**done["summary"], "output": str(output_dir), "reused": True}
        marker.unlink()  # the folder changed or the settings did: the annotator brings the tables up to date
    from vision.store import AnnotationError

    try:
        summary = annotate_from_config(vision_cfg, input_dir, output_dir, progress=progress)
    except AnnotationError as err:  # an empty or locked folder: a ValueError to the experiment runner, no traceback
        raise ValueError(f"step annotate: {err}") from err
    images = pd.read_parquet(output_dir / "images", columns=["status", "face_count"])
    result = {
        "ok": int((images["status"] == "ok").sum()),
        "errors": int((images["status"] != "ok").sum()),
        "faces": int(images["face_count"].fillna(0).sum()),
        "seconds": float(summary.seconds),
    }
    marker.write_text(json.dumps({"input": str(input_dir), "listing": listing, "spec": spec, "summary": result}))
    return {**result, "output": str(output_dir), "reused": False}


def evaluate_stage(
    labels_path: str | Path,
    annotations_dir: str | Path,
    out_dir: str | Path,
    *,
    images_dir: str | Path | None = None,
    iou_threshold: float = 0.5,
    score_threshold: float | None = None,
    group_by: Sequence[str] = (),
) -> dict[str, Any]:
    """Evaluate an annotation run's faces against labelled boxes (:func:`vision.evaluation_run.evaluate_run`).

    Parameters
    ----------
    labels_path : path
        ``labels.csv`` (``image_id,x1,y1,x2,y2`` per face; a face-free image once with empty boxes).
    annotations_dir : path
        Annotation output folder (``images/`` and ``faces/``) over the labelled images' folder.
    out_dir : path
        Receives ``metrics.json``, ``errors.csv``, ``pr_curve.png`` and, with ``images_dir``, ``contact_sheet.png``.
    images_dir : path, optional
        The annotated folder, for the contact sheet.
    iou_threshold, score_threshold : float
        Matching IoU and operating threshold on ``prob`` (None: every detection the run kept).
    group_by : sequence of str
        Label columns to break the metrics down by (absent ones are skipped).

    Returns
    -------
    dict
        The metrics as written to ``metrics.json``.
    """
    from vision.evaluation_run import evaluate_run

    return evaluate_run(
        labels_path,
        out_dir,
        annotations=annotations_dir,
        images=images_dir,
        operating_threshold=score_threshold,
        iou_threshold=iou_threshold,
        group_by=group_by,
    )


def evaluate_from_config(cfg: Any, out_dir: str | Path) -> dict[str, Any]:
    """The evaluation ``conf/evaluate.yaml`` describes (script and ``creative-insights evaluate``).

    Without ``annotations`` the detector of ``cfg.vision`` runs on ``images``; with ``full_curve`` its cut-off
    (``min_prob``) is lowered to 0 so ``ap50_full_curve`` covers the whole PR curve, while the headline metrics keep
    the configured cut-off as the operating threshold (unless ``score_threshold`` is given).
    """
    from vision.evaluation_run import ContactSheetOptions, evaluate_run

    threshold = cfg.score_threshold
    annotator, full, decode = None, False, None
    if not cfg.annotations:  # the detector runs here; reading an annotation run needs no vision settings
        vision = cfg.vision
        annotator, full, own_cutoff = _evaluation_annotator(vision, bool(cfg.full_curve))
        threshold = own_cutoff if threshold is None and full else threshold
        decode = {"batch_size": vision.batch_size, "max_pixels": vision.max_pixels}
        decode["max_long_side"] = vision.get("max_long_side")
    return evaluate_run(
        cfg.labels,
        out_dir,
        annotations=cfg.annotations or None,
        images=cfg.images or None,
        annotator=annotator,
        operating_threshold=threshold,
        full_curve=full,
        iou_threshold=cfg.iou_threshold,
        group_by=list(cfg.group_by),
        box_scale_by=cfg.get("box_scale_by"),
        target_precision=cfg.target_precision,
        sheet=ContactSheetOptions(**dict(cfg.contact_sheet)),
        decode=decode,
    )


def _evaluation_annotator(vision: Any, full_curve: bool) -> tuple[Any, bool, float | None]:
    """The annotator for an evaluation run: ``(annotator, full_curve applied, the detector's own cut-off)``."""
    from hydra.utils import instantiate

    from vision.annotate import BatchAnnotator
    from vision.device import configure_threads, resolve_device

    configure_threads(vision.get("num_threads"))
    overrides: dict[str, Any] = {"device": str(resolve_device(vision.get("device", "auto")))}
    cutoff = vision.detector.get("min_prob")
    full = full_curve and cutoff is not None
    if full:
        overrides["min_prob"] = 0.0
    return BatchAnnotator(detector=instantiate(vision.detector, **overrides)), full, cutoff
