"""Several face detectors as one: their boxes merged by weighted box fusion (WBF) or by NMS across detectors.

Weighted box fusion (Solovyev, Wang & Gabruseva, "Weighted boxes fusion", Image and Vision Computing 2021) is
written out here (:func:`weighted_box_fusion`, about 40 lines) rather than taken from the ``ensemble-boxes`` package
because the landmarks of each fused face must come from one of its member boxes, and ``ensemble-boxes`` does not
say which boxes went into which cluster. The clustering and the box average follow ``ensemble-boxes`` 1.0.9
exactly, and the score its ``conf_type="absent_model_aware_avg"`` (a test checks both against it):

- all member boxes with their member's weight ``w``, sorted by ``w * score`` (descending);
- each box joins the fused box it overlaps most if that IoU is > ``iou_threshold``, else starts a new one;
- a fused box is the ``w * score``-weighted mean of its boxes' coordinates;
- its score is the weighted mean of its boxes' scores in which every member with no box in the cluster counts as
  one score of 0: ``sum(w_b * s_b) / (sum(w_b) + sum(w_m for absent members m))``. With two members of equal
  weight, a face both find at 0.9 and 0.8 scores 0.85, a face only one finds at 0.9 scores 0.45: agreement ranks
  first, and a lone detection needs a high score to pass ``min_prob``.

NMS fusion pools the members' boxes with scores ``w * score / max(w)`` and keeps the highest of each overlapping
group; a kept box keeps its own landmarks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vision.detector_base import FaceDetections, FaceDetector
from vision.yunet import nms

log = logging.getLogger(__name__)

FUSIONS = ("wbf", "nms")


class EnsembleDetector(FaceDetector):
    """Run several face detectors on the same images and merge their faces.

    Parameters
    ----------
    detectors : sequence
        The members: detector objects with ``detect(images) -> list[FaceDetections]``, or configs (mappings with a
        Hydra ``_target_``) that are instantiated on the first :meth:`detect` with ``device`` added (and
        ``detection_size``, when given here). Each member's own ``min_prob`` is its threshold before fusion.
    fusion : {"wbf", "nms"}
        Weighted box fusion or NMS across members (see the module docstring for the scores).
    iou_threshold : float
        IoU above which boxes of different members are taken for the same face.
    weights : sequence of float, optional
        One positive weight per member (default: all 1).
    min_prob : float
        Cut-off on the fused score in [0, 1].
    detection_size : int, optional
        Long side that every member built from a config detects at (overrides theirs); also the decode size that
        ``vision.max_long_side`` reads. None leaves the members' own sizes.
    device : str
        Passed to members built from configs.

    Attributes
    ----------
    detectors_ : list
        The member detector objects (built on the first :meth:`detect`).
    """

    def __init__(
        self,
        detectors: Sequence[Any],
        *,
        fusion: str = "wbf",
        iou_threshold: float = 0.55,
        weights: Sequence[float] | None = None,
        min_prob: float = 0.5,
        detection_size: int | None = None,
        device: Any = "auto",
    ):
        self.detectors = detectors
        self.fusion = fusion
        self.iou_threshold = iou_threshold
        self.weights = weights
        self.min_prob = min_prob
        self.detection_size = detection_size
        self.device = device

    def _detect_batch(self, images: list[np.ndarray], shapes: list[tuple[int, int]]) -> list[FaceDetections]:
        """Every member's faces fused per image: scores descending and at least ``min_prob``."""
        weights = self._weights()
        per_member = [member.detect(images) for member in self.detectors_]
        fuse = weighted_box_fusion if self.fusion == "wbf" else nms_fusion
        out = []
        for dets in zip(*per_member, strict=True):
            fused = fuse(dets, weights=weights, iou_threshold=float(self.iou_threshold))
            keep = fused.probs >= self.min_prob
            out.append(FaceDetections(fused.boxes[keep], fused.probs[keep], fused.landmarks[keep]))
        return out

    def _weights(self) -> np.ndarray:
        n = len(self.detectors)
        return np.ones(n) if self.weights is None else np.asarray(list(self.weights), dtype=float)

    def _check_params(self) -> None:
        key = "vision.detector"
        if isinstance(self.detectors, (str, bytes, Mapping)) or len(self.detectors) < 1:
            raise ValueError(f"{key}.detectors must be a non-empty list of detectors or detector configs")
        if self.fusion not in FUSIONS:
            raise ValueError(f"{key}.fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if not 0.0 < self.iou_threshold < 1.0:
            raise ValueError(f"{key}.iou_threshold must be in (0, 1), got {self.iou_threshold!r}")
        if not 0.0 <= self.min_prob <= 1.0:
            raise ValueError(f"{key}.min_prob must be in [0, 1], got {self.min_prob!r}")
        n = len(self.detectors)
        weights = self._weights()
        if weights.shape != (n,) or not np.all(weights > 0):
            raise ValueError(f"{key}.weights must be {n} positive numbers (one per detector), got {self.weights!r}")

    def _build(self) -> None:
        if getattr(self, "detectors_", None) is not None:
            return
        members = []
        for k, spec in enumerate(self.detectors):
            if hasattr(spec, "detect"):
                members.append(spec)
                continue
            if not (isinstance(spec, Mapping) or hasattr(spec, "keys")) or "_target_" not in spec:
                raise ValueError(f"vision.detector.detectors[{k}] is neither a detector nor a config with _target_")
            from hydra.utils import instantiate

            overrides: dict[str, Any] = {"device": spec.get("device", self.device)}
            if self.detection_size is not None:
                overrides["detection_size"] = int(self.detection_size)
            members.append(instantiate(spec, **overrides))
        self.detectors_ = members
        log.info("ensemble of %s (%s fusion)", [type(m).__name__ for m in members], self.fusion)


# --------------------------------------------------------------------------------------------------------------------
# Fusion of one image's detections


def _pool(detections: Sequence[FaceDetections], weights: np.ndarray):
    """All members' boxes as flat arrays: boxes (n, 4), scores (n,), landmarks (n, 5, 2), member (n,), weight (n,)."""
    boxes = np.concatenate([np.asarray(d.boxes, dtype=np.float64).reshape(-1, 4) for d in detections])
    scores = np.concatenate([np.asarray(d.probs, dtype=np.float64).reshape(-1) for d in detections])
    points = np.concatenate([np.asarray(d.landmarks, dtype=np.float64).reshape(-1, 5, 2) for d in detections])
    member = np.concatenate([np.full(len(d), m) for m, d in enumerate(detections)]).astype(np.int64)
    return boxes, scores, points, member, weights[member]


def weighted_box_fusion(
    detections: Sequence[FaceDetections], *, weights: Sequence[float] | None = None, iou_threshold: float = 0.55
) -> FaceDetections:
    """Fuse one image's faces from several detectors by weighted box fusion (scores as in the module docstring).

    Parameters
    ----------
    detections : sequence of FaceDetections
        One per member, all in the same image's pixels.
    weights : sequence of float, optional
        One per member (default 1 each).
    iou_threshold : float
        A box joins the fused box it overlaps most when their IoU is > this.

    Returns
    -------
    FaceDetections
        Fused boxes (n, 4), scores (n,) in descending order, and for each the landmarks (5, 2) of its
        highest-weighted-score member box.
    """
    w_member = np.ones(len(detections)) if weights is None else np.asarray(weights, dtype=float)
    boxes, scores, points, member, w = _pool(detections, w_member)
    if len(scores) == 0:
        return FaceDetections.empty()
    # Stable sort on w*s so that ties keep member order (ensemble-boxes' argsort()[::-1] reverses ties).
    order = np.argsort(-(w * scores), kind="stable")
    fused: list[np.ndarray] = []  # running fused box per cluster
    clusters: list[list[int]] = []
    for i in order:
        if fused:
            iou = _iou(np.asarray(fused), boxes[i])
            best = int(np.argmax(iou))
            if iou[best] > iou_threshold:
                clusters[best].append(int(i))
                c = clusters[best]
                ws = w[c] * scores[c]
                fused[best] = (ws[:, None] * boxes[c]).sum(0) / ws.sum() if ws.sum() > 0 else boxes[c].mean(0)
                continue
        clusters.append([int(i)])
        fused.append(boxes[i].copy())
    out_scores = np.empty(len(clusters))
    for k, c in enumerate(clusters):
        absent = np.setdiff1d(np.arange(len(w_member)), member[c])
        out_scores[k] = (w[c] * scores[c]).sum() / (w[c].sum() + w_member[absent].sum())
    head = np.array([c[0] for c in clusters])  # the cluster's first box has the highest w * score
    rank = np.argsort(-out_scores, kind="stable")
    return FaceDetections(
        boxes=np.asarray(fused)[rank].astype(np.float32),
        probs=np.clip(out_scores[rank], 0.0, 1.0).astype(np.float32),
        landmarks=points[head[rank]].astype(np.float32),
    )


def nms_fusion(
    detections: Sequence[FaceDetections], *, weights: Sequence[float] | None = None, iou_threshold: float = 0.55
) -> FaceDetections:
    """Fuse one image's faces from several detectors by greedy NMS on ``w * score / max(w)``.

    Parameters and return value as :func:`weighted_box_fusion`; each kept face keeps its own box and landmarks.
    """
    w_member = np.ones(len(detections)) if weights is None else np.asarray(weights, dtype=float)
    boxes, scores, points, _, w = _pool(detections, w_member)
    if len(scores) == 0:
        return FaceDetections.empty()
    scores = w * scores / w_member.max()
    keep = nms(boxes, scores, iou_threshold)
    return FaceDetections(
        boxes=boxes[keep].astype(np.float32),
        probs=np.clip(scores[keep], 0.0, 1.0).astype(np.float32),
        landmarks=points[keep].astype(np.float32),
    )


def _iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    iw = np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0])
    ih = np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + (box[2] - box[0]) * (box[3] - box[1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
