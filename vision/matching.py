"""Matching detections to labelled faces and the precision-recall summaries built on the matches.

Matching (COCO): detections of an image in descending score order (stable, so ties keep input order); each takes the
*unmatched* ground truth of highest IoU, if that IoU >= the threshold; otherwise it is a false positive. Because
matching is greedy by score, matching all detections once and then keeping those with ``prob >= t`` gives exactly the
matches of running on the kept detections alone: one matching serves every operating threshold.

AP is the all-point interpolated area under the precision envelope (VOC 2010+). ``interpolation="coco101"`` gives
COCO's 101-recall-point variant, used to check against pycocotools.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from vision.labels import BOX_COLUMNS, validate_detections


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (n, 4) and ``b`` (m, 4), x1y1x2y2 with exclusive x2/y2; returns (n, m)."""
    a = np.asarray(a, dtype=float).reshape(-1, 4)
    b = np.asarray(b, dtype=float).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_detections(labels: pd.DataFrame, detections: pd.DataFrame, iou_threshold: float = 0.5) -> pd.DataFrame:
    """Match detections to ground truth greedily by score (COCO convention).

    Parameters
    ----------
    labels : DataFrame
        ``image_id, x1, y1, x2, y2``; rows with NaN boxes (face-free images) hold no ground truth.
    detections : DataFrame
        ``image_id, x1, y1, x2, y2, prob`` in the same pixel frame as ``labels``.
    iou_threshold : float
        Minimum IoU for a match.

    Returns
    -------
    DataFrame
        One row per detection, in input order: ``image_id, x1, y1, x2, y2, prob``, ``tp`` (bool), ``gt_index``
        (Int64: the index label of the matched row of ``labels``, <NA> for a false positive) and ``iou`` (IoU with
        the matched ground truth; for a false positive the highest IoU with any ground truth of the image, 0 if
        none).
    """
    missing = [c for c in ["image_id", *BOX_COLUMNS] if c not in labels.columns]
    if missing:
        raise ValueError(f"labels: missing column(s) {missing}")
    dets = validate_detections(detections)
    gt = labels.dropna(subset=BOX_COLUMNS)
    tp = np.zeros(len(dets), dtype=bool)
    gt_index = np.full(len(dets), -1, dtype=np.int64)
    ious = np.zeros(len(dets), dtype=float)
    gt_groups = {k: v for k, v in gt.groupby("image_id", sort=False)}
    for image_id, d in dets.groupby("image_id", sort=False):
        g = gt_groups.get(image_id)
        if g is None or len(g) == 0:
            continue
        order = np.argsort(-d["prob"].to_numpy(), kind="mergesort")
        rows = d.index.to_numpy()[order]
        iou = box_iou(d[BOX_COLUMNS].to_numpy()[order], g[BOX_COLUMNS].to_numpy())
        taken = np.zeros(len(g), dtype=bool)
        for k, row in enumerate(rows):
            candidates = np.where(taken, -1.0, iou[k])
            j = int(np.argmax(candidates))
            if candidates[j] >= iou_threshold:
                taken[j] = True
                tp[row], gt_index[row], ious[row] = True, g.index[j], iou[k, j]
            else:
                ious[row] = float(iou[k].max())
    out = dets[["image_id", *BOX_COLUMNS, "prob"]].copy()
    out["tp"] = tp
    out["gt_index"] = pd.Series(gt_index, dtype="Int64").mask(gt_index < 0)
    out["iou"] = ious
    return out


def precision_recall_curve(tp: Sequence[bool], prob: Sequence[float], n_gt: int) -> dict[str, np.ndarray]:
    """Precision and recall after each detection in descending score order.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``thresholds`` (the score of each detection), all (n_detections,).
    """
    tp = np.asarray(tp, dtype=bool)
    prob = np.asarray(prob, dtype=float)
    order = np.argsort(-prob, kind="mergesort")
    ctp = np.cumsum(tp[order])
    cfp = np.cumsum(~tp[order])
    precision = ctp / np.maximum(ctp + cfp, 1)
    recall = ctp / n_gt if n_gt > 0 else np.full(len(ctp), np.nan)
    return {"precision": precision, "recall": recall, "thresholds": prob[order]}


def average_precision(tp: Sequence[bool], prob: Sequence[float], n_gt: int, interpolation: str = "all") -> float:
    """Average precision of scored detections against ``n_gt`` ground-truth boxes.

    Parameters
    ----------
    tp : (n,) bool
        Whether each detection is a true positive (from :func:`match_detections`).
    prob : (n,) float
        Detection scores.
    n_gt : int
        Number of ground-truth boxes (missed ones included).
    interpolation : {"all", "coco101"}
        ``all``: area under the precision envelope at every recall step (VOC 2010+ "all-point").
        ``coco101``: mean of the envelope at recall 0, 0.01, ..., 1 (pycocotools).

    Returns
    -------
    float
        AP in [0, 1]; NaN when ``n_gt == 0`` (undefined: there is nothing to recall).
    """
    if n_gt <= 0:
        return math.nan
    curve = precision_recall_curve(tp, prob, n_gt)
    precision, recall = curve["precision"], curve["recall"]
    if len(precision) == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    if interpolation == "all":
        recall_steps = np.diff(np.concatenate([[0.0], recall]))
        return float(np.sum(recall_steps * envelope))
    if interpolation == "coco101":
        points = np.linspace(0.0, 1.0, 101)
        idx = np.searchsorted(recall, points, side="left")
        values = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0.0)
        return float(values.mean())
    raise ValueError(f"interpolation must be 'all' or 'coco101', got {interpolation!r}")


def choose_threshold(matches: pd.DataFrame, n_gt: int, target_precision: float) -> dict:
    """The lowest score threshold whose kept detections reach ``target_precision``, and the recall there.

    Thresholds are the distinct detection scores; keeping ``prob >= t`` keeps tied scores together. Recall can only
    fall as the threshold rises, so the lowest qualifying threshold has the highest recall among them.

    Parameters
    ----------
    matches : DataFrame
        Output of :func:`match_detections` (``prob``, ``tp``).
    n_gt : int
        Number of ground-truth boxes.
    target_precision : float
        In (0, 1].

    Returns
    -------
    dict
        ``target_precision``, ``reached`` (bool), ``threshold`` (None when not reached), ``precision``, ``recall``,
        ``n_kept`` at that threshold; when not reached, ``best_precision`` and the threshold that gives it.
    """
    if not 0 < target_precision <= 1:
        raise ValueError(f"target_precision must be in (0, 1], got {target_precision}")
    prob = matches["prob"].to_numpy(dtype=float)
    tp = matches["tp"].to_numpy(dtype=bool)
    thresholds = np.unique(prob)[::-1]  # descending
    kept = (prob[None, :] >= thresholds[:, None]).sum(axis=1)
    tps = ((prob[None, :] >= thresholds[:, None]) & tp[None, :]).sum(axis=1)
    precision = tps / np.maximum(kept, 1)
    recall = tps / n_gt if n_gt > 0 else np.zeros_like(precision)
    ok = np.flatnonzero(precision >= target_precision - 1e-12)
    result: dict = {"target_precision": float(target_precision), "reached": bool(len(ok))}
    if len(ok):
        i = int(ok.max())  # thresholds descend: the largest index is the lowest threshold
        result.update(threshold=float(thresholds[i]), precision=float(precision[i]), recall=float(recall[i]))
        result["n_kept"] = int(kept[i])
    else:
        result.update(threshold=None, precision=None, recall=None, n_kept=0)
        if len(thresholds):
            i = int(np.argmax(precision))
            result.update(best_precision=float(precision[i]), best_threshold=float(thresholds[i]))
    return result
