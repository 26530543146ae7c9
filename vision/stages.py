"""The vision stages of an experiment run, callable from a config node: annotate a folder, evaluate the detector.

``scripts/run_experiment.py`` imports this module lazily (only when the ``annotate`` or ``evaluate`` step runs), so a
causal-only run never imports torch. Both functions take plain arguments and return plain dicts; they never import
``causal`` (docs/ARCHITECTURE.md: one direction of flow).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
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
    iou_threshold: float = 0.5,
    score_threshold: float | None = None,
    group_by: Sequence[str] = (),
) -> dict[str, Any]:
    """Evaluate an annotation run's faces against labelled boxes: ``metrics.json``, ``pr_curve.png``, ``errors.csv``.

    Parameters
    ----------
    labels_path : path
        ``labels.csv`` (``image_id,x1,y1,x2,y2`` per face; a face-free image once with empty boxes).
    annotations_dir : path
        Annotation output folder (``images/`` and ``faces/``) over the labelled images' folder.
    out_dir : path
        Receives the three files.
    iou_threshold, score_threshold : float
        Matching IoU and operating threshold on ``prob`` (None: every detection the run kept).
    group_by : sequence of str
        Label columns to break the metrics down by (absent ones are skipped).

    Returns
    -------
    dict
        The metrics (``vision.evaluate.evaluate_detections`` output plus ``labels`` and ``not_evaluated``).
    """
    from vision.evaluate import (
        BOX_COLUMNS,
        error_table,
        evaluate_detections,
        load_labels,
        plot_pr_curves,
        to_jsonable,
    )

    annotations_dir, out_dir = Path(annotations_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = load_labels(labels_path)
    if not (annotations_dir / "images").is_dir() or not (annotations_dir / "faces").is_dir():
        raise FileNotFoundError(f"{annotations_dir}: expected images/ and faces/ of an annotation run")
    images = pd.read_parquet(annotations_dir / "images", columns=["image_id", "status"])
    ok = set(images.loc[images["status"] == "ok", "image_id"])
    faces = pd.read_parquet(annotations_dir / "faces", columns=["image_id", *BOX_COLUMNS, "prob"])
    label_ids = list(labels["image_id"].unique())
    evaluated = [i for i in label_ids if i in ok]
    missing = [i for i in label_ids if i not in ok]
    if not evaluated:
        raise ValueError(f"labels {labels_path}: none of its images is in {annotations_dir} (wrong input folder?)")
    groups = [c for c in group_by if c in labels.columns]
    result = evaluate_detections(
        labels,
        faces,
        image_ids=evaluated,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        group_by=groups,
    )
    result.update({"labels": str(labels_path), "source": f"annotations {annotations_dir}", "not_evaluated": missing})
    (out_dir / "metrics.json").write_text(json.dumps(to_jsonable(result), indent=2, allow_nan=False))
    extra = [c for c in labels.columns if c not in ("image_id", *BOX_COLUMNS)]
    error_table(
        labels[labels["image_id"].isin(evaluated)],
        faces,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        extra_columns=extra,
    ).to_csv(out_dir / "errors.csv", index=False)
    plot_pr_curves({"all": {**result["face_level"]["pr_curve"], "ap": result["ap50"]}}, out_dir / "pr_curve.png")
    return to_jsonable(result)


def metrics_summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The headline detector numbers of an :func:`evaluate_stage` result."""
    il = metrics.get("image_level") or {}
    return {
        "ap50": metrics.get("ap50"),
        "sensitivity": il.get("sensitivity"),
        "specificity": il.get("specificity"),
        "n_images": metrics.get("n_images"),
    }
