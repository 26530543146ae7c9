"""Evaluate the face detector on labeled samples: AP, image-level presence errors, PR curve, error list.

    python scripts/evaluate_detector.py labels=assets_sample/labels.csv images=assets_sample/images
    python scripts/evaluate_detector.py labels=assets_sample/labels.csv images=assets_sample/images \
        vision.detector.detection_size=960 score_threshold=0.95
    python scripts/evaluate_detector.py labels=assets_sample/labels.csv annotations=out/annotations \
        images=assets_sample/images

Prints the metrics table and writes metrics.json, pr_curve.png, errors.csv, contact_sheet.png and detections.csv
into the Hydra run directory. metrics.json's ``image_level`` block (sensitivity, specificity, tp/fp/tn/fn) is what
the causal stage's misclassification correction reads; ``image_level_by`` has the same rates per label group
(e.g. per ``domain`` or ``style``) for a differential correction. ``rescaled`` repeats the evaluation against label
boxes rescaled to the detector's box size (one factor per axis, fitted on matched pairs; ``+box_scale_by=<column>``
fits one pair per group), so a detector is not scored down for drawing smaller or larger boxes than the annotators;
with a ``domain`` label column the script prints AP@0.5 per domain both ways.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from vision.box_convention import domain_ap_table, image_level_by_group, rescale_fitted, strip_curves
from vision.evaluate import (
    BOX_COLUMNS,
    choose_threshold,
    contact_sheet,
    error_table,
    evaluate_detections,
    load_labels,
    match_detections,
    plot_pr_curves,
    summary_table,
    to_jsonable,
)

log = logging.getLogger("evaluate_detector")


def run_detector(cfg: DictConfig, images_root: Path, image_ids: list[str]) -> tuple[pd.DataFrame, list[str], dict]:
    """Decode the labeled images as `annotate` does and run the configured detector; returns faces, failures, timing."""
    from hydra.utils import instantiate

    from vision.annotate import BatchAnnotator
    from vision.device import configure_threads, resolve_device
    from vision.io import ImageDecodeError, load_image

    vision = cfg.vision
    configure_threads(vision.get("num_threads"))
    device = str(resolve_device(vision.get("device", "auto")))
    overrides = {"device": device}
    if cfg.full_curve and "min_prob" in vision.detector:
        # Keep every face the detector's networks pass, so AP covers the whole PR curve; the configured min_prob
        # becomes the operating threshold instead (see main).
        overrides["min_prob"] = 0.0
    annotator = BatchAnnotator(detector=instantiate(vision.detector, **overrides))
    faces, failed, seconds = [], [], 0.0
    batch_ids, batch = [], []

    def flush() -> None:
        nonlocal seconds
        if batch:
            start = time.perf_counter()
            _, rows = annotator.annotate_batch(batch_ids, batch)
            seconds += time.perf_counter() - start
            faces.extend(rows)
            batch_ids.clear()
            batch.clear()

    for image_id in image_ids:
        try:
            decoded = load_image(
                images_root / image_id, max_pixels=vision.max_pixels, max_long_side=vision.get("max_long_side")
            )
        except ImageDecodeError as err:
            print(f"cannot evaluate {image_id}: {err.reason}", file=sys.stderr)
            failed.append(image_id)
            continue
        batch_ids.append(image_id)
        batch.append(decoded)
        if len(batch) >= vision.batch_size:
            flush()
    flush()
    n_ok = len(image_ids) - len(failed)
    timing = {
        "device": device,
        "detector": OmegaConf.to_container(vision.detector, resolve=True),
        "max_long_side": vision.get("max_long_side"),
        "detect_seconds": seconds,
        "images_per_second": n_ok / seconds if seconds > 0 else None,
    }
    table = pd.DataFrame(faces, columns=None if faces else ["image_id", *BOX_COLUMNS, "prob"])
    return table, failed, timing


def read_annotations(folder: Path, image_ids: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The faces table of an annotation run, and the labeled images it did not annotate successfully."""
    images_dir, faces_dir = folder / "images", folder / "faces"
    if not images_dir.is_dir() or not faces_dir.is_dir():
        sys.exit(f"annotations={folder}: expected the folders images/ and faces/ of an annotation run")
    images = pd.read_parquet(images_dir, columns=["image_id", "status"])
    ok = set(images.loc[images["status"] == "ok", "image_id"])
    faces = pd.read_parquet(faces_dir, columns=["image_id", *BOX_COLUMNS, "prob"])
    return faces, [i for i in image_ids if i not in ok]


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        labels = load_labels(cfg.labels)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"labels: {err}")
    images_root = Path(cfg.images) if cfg.images else None
    if images_root is not None and not images_root.is_dir():
        sys.exit(f"images={images_root}: not a folder")
    label_ids = list(labels["image_id"].unique())

    timing = None
    if cfg.annotations:
        faces, missing = read_annotations(Path(cfg.annotations), label_ids)
        source = f"annotations {cfg.annotations}"
    elif images_root is not None:
        faces, missing, timing = run_detector(cfg, images_root, label_ids)
        source = f"detector {cfg.vision.detector.get('_target_')} on {images_root}"
    else:
        sys.exit("give images=<folder> (to run the detector) or annotations=<annotation output folder>")
    if missing:
        print(f"{len(missing)} labeled image(s) not evaluated (missing or failed): {missing[:5]}", file=sys.stderr)
    evaluated = [i for i in label_ids if i not in set(missing)]
    if not evaluated:
        sys.exit("no labeled image could be evaluated")

    score_threshold = cfg.score_threshold
    if score_threshold is None and timing is not None and cfg.full_curve:
        score_threshold = cfg.vision.detector.get("min_prob")
    group_by = [c for c in cfg.group_by if c in labels.columns]
    for c in set(cfg.group_by) - set(group_by):
        print(f"group_by: labels have no column {c!r}; skipped", file=sys.stderr)
    result = evaluate_detections(
        labels,
        faces,
        image_ids=evaluated,
        iou_threshold=cfg.iou_threshold,
        score_threshold=score_threshold,
        group_by=group_by,
    )
    gt = labels[labels["image_id"].isin(evaluated)].dropna(subset=BOX_COLUMNS)
    matches = match_detections(gt, faces[faces["image_id"].isin(evaluated)], iou_threshold=cfg.iou_threshold)
    result["threshold_choice"] = choose_threshold(matches, len(gt), cfg.target_precision)
    # The same evaluation against label boxes rescaled to the detector's box size (one factor per axis, fitted on
    # matched pairs): the box-convention-fair figure. `+box_scale_by=<column>` fits one pair per label group.
    rescaled_labels, fits = rescale_fitted(
        labels[labels["image_id"].isin(evaluated)],
        faces,
        by=cfg.get("box_scale_by"),
        score_threshold=score_threshold,
    )
    rescaled = evaluate_detections(
        rescaled_labels,
        faces,
        image_ids=evaluated,
        iou_threshold=cfg.iou_threshold,
        score_threshold=score_threshold,
        group_by=group_by,
    )
    result["rescaled"] = {"box_scale": fits, **strip_curves(rescaled)}
    result["image_level_by"] = image_level_by_group(result, group_by)
    result["source"] = source
    result["labels"] = str(cfg.labels)
    result["n_not_evaluated"] = len(missing)
    result["not_evaluated"] = missing
    if timing is not None:
        result["timing"] = timing

    (out / "metrics.json").write_text(json.dumps(to_jsonable(result), indent=2, allow_nan=False))
    faces.to_csv(out / "detections.csv", index=False)
    extra = [c for c in labels.columns if c not in ("image_id", *BOX_COLUMNS)]
    errors = error_table(
        labels[labels["image_id"].isin(evaluated)],
        faces,
        iou_threshold=cfg.iou_threshold,
        score_threshold=score_threshold,
        extra_columns=extra,
    )
    errors.to_csv(out / "errors.csv", index=False)
    curves = {"all": {**result["face_level"]["pr_curve"], "ap": result["ap50"]}}
    for column in group_by[-1:]:  # the coarsest grouping keeps the plot readable
        for g, block in result[f"by_{column}"].items():
            curves[f"{column}={g}"] = {**block["face_level"]["pr_curve"], "ap": block["face_level"]["ap50"]}
    plot_pr_curves(curves, out / "pr_curve.png")
    if cfg.contact_sheet.enabled and images_root is not None:
        from vision.io import load_image

        contact_sheet(
            labels,
            faces,
            lambda image_id: load_image(images_root / image_id).pixels,
            out / "contact_sheet.png",
            iou_threshold=cfg.iou_threshold,
            score_threshold=score_threshold,
            image_ids=evaluated,
            tile=cfg.contact_sheet.tile,
            columns=cfg.contact_sheet.columns,
            max_images=cfg.contact_sheet.max_images,
        )

    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        print(f"source: {source}; {len(evaluated)} images, score threshold {score_threshold}")
        print(summary_table(result).to_string(index=False))
        if "domain" in group_by:
            both = {"as_drawn": result, "rescaled": rescaled}
            print(f"\nAP@0.5 by domain, boxes as drawn and rescaled by {fits}:")
            print(domain_ap_table(both).to_string(index=False))
    tc = result["threshold_choice"]
    if tc["reached"]:
        print(f"precision >= {tc['target_precision']}: threshold {tc['threshold']:.4f}, recall {tc['recall']:.3f}")
    else:
        print(f"precision {tc['target_precision']} not reached at any threshold (best {tc.get('best_precision')})")
    if timing is not None and timing["images_per_second"]:
        print(f"detector: {timing['images_per_second']:.2f} images/s on {timing['device']}")
    print(f"wrote metrics.json, pr_curve.png, errors.csv ({len(errors)} rows), contact_sheet.png to {out}")


if __name__ == "__main__":
    main()
