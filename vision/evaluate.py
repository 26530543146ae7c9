"""Detector evaluation on labeled samples: matching, average precision, image-level presence errors, plots.

Conventions (stated once, used everywhere):

- Boxes are ``x1, y1, x2, y2`` in original pixels with x2/y2 exclusive, so a box's area is ``(x2-x1)*(y2-y1)``
  (the COCO convention, no +1).
- Matching (COCO): detections of an image in descending score order (stable, so ties keep input order); each takes
  the *unmatched* ground truth of highest IoU, if that IoU >= the threshold; otherwise it is a false positive.
  Because matching is greedy by score, matching all detections once and then keeping those with
  ``prob >= t`` gives exactly the matches of running on the kept detections alone: one matching serves every
  operating threshold.
- AP is the all-point interpolated area under the precision envelope (VOC 2010+). ``interpolation="coco101"``
  gives COCO's 101-recall-point variant, used to check against pycocotools.
- Image level (the causal treatment): an image is predicted to hold a face when it has at least one detection with
  ``prob >= score_threshold``; where that detection lies does not matter.
- Grouping (e.g. by ``style``): an image's group is the most frequent value among its label rows (the first seen on
  ties). Face-level metrics for group ``g`` count the ground truth of group ``g``; detections matched to ground truth
  of another group are ignored (as COCO ignores "crowd" regions), and unmatched detections count against the
  image's group. Image-level metrics for ``g`` use the images whose group is ``g``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

BOX_COLUMNS = ["x1", "y1", "x2", "y2"]
COCO_IOU_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)
COUNT_BINS = ["0", "1", "2", "3+"]


# --------------------------------------------------------------------------------------------------------------------
# Reading and validating


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


# --------------------------------------------------------------------------------------------------------------------
# Matching and AP


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
# Plots


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
