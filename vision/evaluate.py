"""Detector evaluation on labelled samples: face-level AP and rates, image-level presence errors, error lists.

Conventions (stated once, used everywhere):

- Boxes are ``x1, y1, x2, y2`` in original pixels with x2/y2 exclusive, so a box's area is ``(x2-x1)*(y2-y1)``
  (the COCO convention, no +1). Matching and AP: :mod:`vision.matching`.
- **AP** (``ap50``) is AP at IoU 0.5, all-point interpolated, over the detections given to the evaluation. The
  product evaluates a detector's *operating output* (every face with ``prob`` at or above its cut-off, what an
  annotation run keeps), so the same detector and labels give the same ``ap50`` whether the faces come from an
  annotation run or from running the detector here (:mod:`vision.evaluation_run`). The full-curve figure (cut-off
  lowered to 0), useful to compare detectors apart from their thresholds, is reported as ``ap50_full_curve``.
- Image level (the causal treatment): an image is predicted to hold a face when it has at least one detection with
  ``prob >= score_threshold``; where that detection lies does not matter. Rates carry 95% Wilson intervals
  (``<rate>_ci``), and ``reliability`` says in words when a rate rests on too few images to trust.
- Grouping (e.g. by ``style``): an image's group is the most frequent value among its label rows (the first seen on
  ties). Face-level metrics for group ``g`` count the ground truth of group ``g``; detections matched to ground truth
  of another group are ignored (as COCO ignores "crowd" regions), and unmatched detections count against the
  image's group. Image-level metrics for ``g`` use the images whose group is ``g``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

# Re-exported: the evaluation's public names in one place for scripts and tests.
from vision.evaluate_plots import contact_sheet, plot_pr_curves  # noqa: F401
from vision.labels import BOX_COLUMNS, load_labels, validate_detections, validate_labels  # noqa: F401
from vision.matching import (  # noqa: F401
    average_precision,
    box_iou,
    choose_threshold,
    match_detections,
    precision_recall_curve,
)

log = logging.getLogger(__name__)

COCO_IOU_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)
COUNT_BINS = ["0", "1", "2", "3+"]
MIN_TRUSTED_IMAGES = 30  # fewer images behind a rate than this: the report says it is too few to trust


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> list[float]:
    """Wilson score interval ``[low, high]`` of a binomial proportion; ``[nan, nan]`` when ``n`` is 0.

    Wilson rather than the normal approximation because detector rates sit near 0 or 1 on small sets, where the
    normal interval leaves [0, 1] or collapses to a point (Brown, Cai & DasGupta 2001).
    """
    if n <= 0:
        return [math.nan, math.nan]
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def reliability_notes(image_level: Mapping, min_images: int = MIN_TRUSTED_IMAGES) -> list[str]:
    """Plain sentences for the image-level rates that rest on fewer than ``min_images`` images."""
    notes = []
    for rate, count, kind in (
        ("sensitivity", "n_positive", "images with a face"),
        ("specificity", "n_negative", "face-free images"),
    ):
        n, value, (low, high) = image_level.get(count, 0), image_level.get(rate), image_level.get(f"{rate}_ci")
        if n < min_images and value is not None and not (isinstance(value, float) and math.isnan(value)):
            notes.append(
                f"{rate} {value:.2f} rests on {n} {kind} (95% interval {low:.2f} to {high:.2f}): too few to trust; "
                f"label at least {min_images}"
            )
    return notes


# --------------------------------------------------------------------------------------------------------------------
# The evaluation


def image_groups(labels: pd.DataFrame, column: str) -> pd.Series:
    """Each image's group: the most frequent value of ``column`` among its rows, the first seen on ties."""
    if column not in labels.columns:
        raise ValueError(f"group_by column {column!r} is not in the labels (columns: {list(labels.columns)})")

    def mode_first(s: pd.Series):
        s = s.dropna()
        if s.empty:
            return "(none)"
        counts = s.value_counts(sort=False)  # order of first appearance
        return counts.index[int(np.argmax(counts.to_numpy()))]

    return labels.groupby("image_id", sort=False)[column].agg(mode_first).astype(str)


def _safe_div(a: float, b: float) -> float:
    return float(a / b) if b else math.nan


def _face_metrics(matches: pd.DataFrame, n_gt: int, score_threshold: float) -> dict:
    kept = matches["prob"] >= score_threshold
    tp = int((matches["tp"] & kept).sum())
    fp = int((~matches["tp"] & kept).sum())
    fn = int(n_gt - tp)
    precision, recall = _safe_div(tp, tp + fp), _safe_div(tp, n_gt)
    f1 = _safe_div(2 * precision * recall, precision + recall) if tp else (0.0 if n_gt else math.nan)
    return {
        "n_gt": int(n_gt),
        "n_detections": int(len(matches)),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "precision_ci": wilson_interval(tp, tp + fp),
        "recall_ci": wilson_interval(tp, n_gt),
    }


def _image_metrics(true_count: pd.Series, pred_count: pd.Series) -> dict:
    truth, pred = true_count > 0, pred_count > 0
    tp, fp = int((truth & pred).sum()), int((~truth & pred).sum())
    tn, fn = int((~truth & ~pred).sum()), int((truth & ~pred).sum())
    n = tp + fp + tn + fn

    def bin_of(c: pd.Series) -> np.ndarray:
        return np.minimum(c.to_numpy(dtype=int), len(COUNT_BINS) - 1)

    confusion = np.zeros((len(COUNT_BINS), len(COUNT_BINS)), dtype=int)
    np.add.at(confusion, (bin_of(true_count), bin_of(pred_count)), 1)
    return {
        "n_images": n,
        "n_positive": tp + fn,
        "n_negative": tn + fp,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "precision": _safe_div(tp, tp + fp),
        "recall": _safe_div(tp, tp + fn),
        "sensitivity": _safe_div(tp, tp + fn),
        "specificity": _safe_div(tn, tn + fp),
        "accuracy": _safe_div(tp + tn, n),
        "sensitivity_ci": wilson_interval(tp, tp + fn),
        "specificity_ci": wilson_interval(tn, tn + fp),
        "precision_ci": wilson_interval(tp, tp + fp),
        "count_exact_accuracy": _safe_div(int((true_count == pred_count).sum()), n),
        "count_mae": float(np.abs(true_count - pred_count).mean()) if n else math.nan,
        "count_confusion": {"labels": COUNT_BINS, "rows": "true", "columns": "predicted", "matrix": confusion.tolist()},
    }


def _restrict_to_group(
    m: pd.DataFrame, gt_in: pd.Index, det_group: pd.Series | None, group: str | None
) -> pd.DataFrame:
    """Matches that count for ``group``: those matched to its ground truth, and unmatched ones on its images."""
    if group is None:
        return m
    mine = m["gt_index"].isin(gt_in).to_numpy(dtype=bool)
    own_fp = m["gt_index"].isna().to_numpy() & (det_group == group).to_numpy()
    return m[mine | own_fp]


def _face_block(
    all_matches: Mapping[float, pd.DataFrame],
    gt: pd.DataFrame,
    *,
    iou_threshold: float,
    score_threshold: float,
    column: str | None = None,
    group: str | None = None,
    det_group: pd.Series | None = None,
) -> dict:
    """Face-level metrics for one group (every face when ``group`` is None) from the matches at each IoU."""
    gt_in = gt.index if group is None else gt.index[gt[column].astype(str).to_numpy() == group]
    n_gt = len(gt_in)
    aps: dict[float, float] = {}
    matches = {thr: _restrict_to_group(m, gt_in, det_group, group) for thr, m in all_matches.items()}
    for thr in COCO_IOU_THRESHOLDS.tolist():
        aps[thr] = average_precision(matches[thr]["tp"], matches[thr]["prob"], n_gt)
    m50, m_op = matches[0.5], matches[float(iou_threshold)]
    ap50_coco = average_precision(m50["tp"], m50["prob"], n_gt, interpolation="coco101")
    out = _face_metrics(m_op, n_gt, score_threshold)
    out.update(ap50=aps[0.5], ap50_95=float(np.mean(list(aps.values()))) if n_gt else math.nan)
    out["ap50_coco101"] = ap50_coco
    curve = precision_recall_curve(m50["tp"], m50["prob"], n_gt)
    out["pr_curve"] = {k: v.tolist() for k, v in curve.items()}
    return out


def evaluate_detections(
    labels: pd.DataFrame,
    faces: pd.DataFrame,
    *,
    image_ids: Iterable[str] | None = None,
    iou_threshold: float = 0.5,
    score_threshold: float | None = None,
    group_by: str | Sequence[str] | None = None,
) -> dict:
    """Face-level and image-level detection metrics on labeled images.

    Parameters
    ----------
    labels : DataFrame
        From :func:`load_labels`.
    faces : DataFrame
        The annotation faces table (``image_id, x1, y1, x2, y2, prob``; other columns ignored), original pixels.
    image_ids : iterable of str, optional
        The images that were evaluated (default: every image in ``labels``). Each must be in ``labels``;
        detections on other images are ignored.
    iou_threshold : float
        IoU for the operating-point face metrics (``ap50`` is always at 0.5, ``ap50_95`` over .5:.05:.95).
    score_threshold : float, optional
        Operating threshold: detections with ``prob >= score_threshold`` count for precision/recall/F1 and the
        image-level metrics. None keeps every detection given (the detector's own cut-off). AP always uses all.
    group_by : str or list of str, optional
        Label columns to break the metrics down by (e.g. ``"style"``).

    Returns
    -------
    dict
        ``n_images``, ``iou_threshold``, ``score_threshold``, ``ap50`` (a top-level copy), ``face_level``
        (``n_gt``, ``n_detections``, ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``, ``ap50``,
        ``ap50_95``, ``ap50_coco101``, ``pr_curve`` with ``precision``/``recall``/``thresholds`` lists),
        ``image_level`` (``n_images``, ``n_positive``, ``n_negative``, ``tp``, ``fp``, ``tn``, ``fn``,
        ``precision``, ``recall``, ``sensitivity`` (= recall), ``specificity``, ``accuracy``,
        ``count_exact_accuracy``, ``count_mae``, ``count_confusion``), and for each grouping column ``by_<column>``:
        ``{group: {"face_level": ..., "image_level": ...}}``. Metrics without data are NaN.
    """
    labels = validate_labels(labels)
    faces = validate_detections(faces, source="faces")
    all_ids = pd.Index(labels["image_id"].unique())
    if image_ids is None:
        ids = all_ids
    else:
        ids = pd.Index(pd.unique(pd.Series(list(image_ids), dtype=str)))
        unknown = ids.difference(all_ids)
        if len(unknown):
            raise ValueError(f"image_ids not in the labels: {list(unknown[:5])} ({len(unknown)} in all)")
    labels = labels[labels["image_id"].isin(ids)].reset_index(drop=True)
    dropped = int((~faces["image_id"].isin(ids)).sum())
    if dropped:
        log.debug("ignoring %d detections on images outside the evaluated set", dropped)
    dets = faces[faces["image_id"].isin(ids)].reset_index(drop=True)
    thr = -math.inf if score_threshold is None else float(score_threshold)
    gt = labels.dropna(subset=BOX_COLUMNS)

    # Matching ignores groups, so one matching per IoU threshold serves the whole set and every group.
    all_matches = {
        t: match_detections(gt, dets, iou_threshold=t) for t in {*COCO_IOU_THRESHOLDS.tolist(), float(iou_threshold)}
    }
    face = _face_block(all_matches, gt, iou_threshold=iou_threshold, score_threshold=thr)
    true_count = gt.groupby("image_id").size().reindex(ids, fill_value=0)
    pred_count = dets[dets["prob"] >= thr].groupby("image_id").size().reindex(ids, fill_value=0)
    result: dict = {
        "n_images": int(len(ids)),
        "iou_threshold": float(iou_threshold),
        "score_threshold": None if score_threshold is None else float(score_threshold),
        "ap50": face["ap50"],
        "face_level": face,
        "image_level": _image_metrics(true_count, pred_count),
    }
    result["reliability"] = reliability_notes(result["image_level"])
    columns = [group_by] if isinstance(group_by, str) else list(group_by or [])
    for column in columns:
        groups = image_groups(labels, column)
        det_group = dets["image_id"].map(groups)
        per: dict = {}
        for g in sorted(groups.unique()):
            gface = _face_block(
                all_matches,
                gt,
                iou_threshold=iou_threshold,
                score_threshold=thr,
                column=column,
                group=g,
                det_group=det_group,
            )
            in_g = groups.index[groups == g]
            per[g] = {"face_level": gface, "image_level": _image_metrics(true_count[in_g], pred_count[in_g])}
        result[f"by_{column}"] = per
    return result


def error_table(
    labels: pd.DataFrame,
    faces: pd.DataFrame,
    *,
    iou_threshold: float = 0.5,
    score_threshold: float | None = None,
    extra_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Every false positive and false negative at the operating point.

    Returns
    -------
    DataFrame
        ``kind`` (``FP`` or ``FN``), ``image_id``, ``x1, y1, x2, y2``, ``prob`` (NaN for FN), ``iou`` (FP: best IoU
        with any ground truth; FN: best IoU with any kept detection), plus ``extra_columns`` from the labels (for
        an FP, the image's first label row), sorted by image then kind.
    """
    labels = validate_labels(labels)
    thr = -math.inf if score_threshold is None else float(score_threshold)
    dets = validate_detections(faces, source="faces")
    dets = dets[dets["image_id"].isin(labels["image_id"]) & (dets["prob"] >= thr)].reset_index(drop=True)
    gt = labels.dropna(subset=BOX_COLUMNS)
    m = match_detections(gt, dets, iou_threshold=iou_threshold)
    first = labels.drop_duplicates("image_id").set_index("image_id")
    fp = m[~m["tp"]].assign(kind="FP")
    for c in extra_columns:
        fp[c] = fp["image_id"].map(first[c])
    missed = gt[~gt.index.isin(m["gt_index"].dropna().astype(int))]
    fn_iou = []
    for row in missed.itertuples():
        d = dets[dets["image_id"] == row.image_id]
        fn_iou.append(float(box_iou([[row.x1, row.y1, row.x2, row.y2]], d[BOX_COLUMNS].to_numpy()).max(initial=0.0)))
    fn = missed[["image_id", *BOX_COLUMNS, *extra_columns]].assign(kind="FN", prob=np.nan, iou=fn_iou)
    cols = ["kind", "image_id", *BOX_COLUMNS, "prob", "iou", *extra_columns]
    out = pd.concat([fp[cols], fn[cols]], ignore_index=True) if len(fp) or len(fn) else pd.DataFrame(columns=cols)
    return out.sort_values(["image_id", "kind"], kind="mergesort").reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------------------
# Reporting


def summary_table(result: Mapping) -> pd.DataFrame:
    """One row per evaluated set (``all`` and every group of every ``by_<column>``) with the headline metrics."""

    def row(name: str, block: Mapping) -> dict:
        face, image = block["face_level"], block["image_level"]
        return {
            "set": name,
            "images": image["n_images"],
            "faces": face["n_gt"],
            "AP50": face["ap50"],
            "AP50:95": face["ap50_95"],
            "P": face["precision"],
            "R": face["recall"],
            "F1": face["f1"],
            "TP": face["tp"],
            "FP": face["fp"],
            "FN": face["fn"],
            "img_P": image["precision"],
            "img_sens": image["sensitivity"],
            "img_spec": image["specificity"],
            "img_acc": image["accuracy"],
            "count_acc": image["count_exact_accuracy"],
            "count_MAE": image["count_mae"],
        }

    rows = [row("all", result)]
    for key, groups in result.items():
        if key.startswith("by_"):
            rows += [row(f"{key[3:]}={g}", block) for g, block in groups.items()]
    return pd.DataFrame(rows)


def to_jsonable(obj):
    """Replace NaN/inf by None and numpy scalars/arrays by Python values, recursively, for strict JSON."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
