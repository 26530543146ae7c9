"""Text in the artwork: text regions from a DB text detector (PP-OCR's detection model, ONNX) and their features.

Model
-----
The detector is PaddleOCR's PP-OCRv4 text *detection* network (Differentiable Binarization; Apache-2.0) as the
ONNX file that the ``rapidocr-onnxruntime`` wheel ships (``rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx``,
version 1.4.4). It is read with OpenCV's dnn module (``cv2.dnn.readNetFromONNX``: a protobuf graph, no pickle, no
onnxruntime needed). The wheel is not a dependency of this project (it requires ``opencv-python``, which clashes
with the ``opencv-python-headless`` used here, and onnxruntime): install only its files with

    pip install --no-deps rapidocr-onnxruntime==1.4.4

or pass ``model_path=`` to any DB-style ONNX detector with the same input and output (a 1 x 3 x H x W image,
normalised with mean 0.5 and sd 0.5; a 1 x 1 x H x W text probability map). Without a model,
:class:`TextDetector` raises a :class:`FileNotFoundError` that says this; it never invents regions. Recognition
(reading the text) is not done.

Post-processing (as PP-OCR's ``DBPostProcess``, axis-aligned): the probability map is thresholded at ``thresh``,
dilated by a 2 x 2 kernel, split into connected regions; a region's score is the mean probability of its pixels
above ``thresh`` and it is kept when at least ``box_thresh``; its bounding box is grown by ``unclip_ratio * area /
perimeter`` on each side (DB predicts a shrunk text kernel) and mapped back to the original pixels.

Features (:func:`text_features`): ``text_area_fraction`` (union of the boxes / image area), ``text_blocks``
(boxes), ``text_position`` of the largest box (``top`` / ``middle`` / ``bottom`` third by its centre; ``none``
without text) and ``text_height`` (the largest box's height / image height, a font-size proxy).
Measured on rendered titles: README, "Text in the artwork".
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

WHEEL = "rapidocr-onnxruntime==1.4.4"
WHEEL_MODEL = ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx")
TEXT_COLUMNS = ("text_area_fraction", "text_blocks", "text_position", "text_height")


def default_model_path() -> Path | None:
    """The detection model inside an installed ``rapidocr_onnxruntime`` package, found without importing it."""
    spec = importlib.util.find_spec(WHEEL_MODEL[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / WHEEL_MODEL[1]
    return path if path.is_file() else None


@dataclass(frozen=True)
class TextBoxes:
    """Text regions of one image: ``boxes`` (n, 4) x1, y1, x2, y2 in the image's pixels, ``scores`` (n,)."""

    boxes: np.ndarray
    scores: np.ndarray


class TextDetector:
    """DB text detection through OpenCV dnn.

    Parameters
    ----------
    model_path : path, optional
        ONNX detection model; default the one the ``rapidocr-onnxruntime`` wheel ships (:func:`default_model_path`).
    max_side : int
        The image is resized so its long side is at most this (a multiple of 32; the network needs one).
    thresh, box_thresh, unclip_ratio : float
        Pixel threshold of the probability map, least mean probability of a kept region, box growth (PP-OCR's
        defaults 0.3, 0.5, 1.6).
    min_size : int
        Smallest side, in network pixels, of a kept region.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        max_side: int = 960,
        thresh: float = 0.3,
        box_thresh: float = 0.5,
        unclip_ratio: float = 1.6,
        min_size: int = 3,
    ) -> None:
        self.model_path = model_path
        self.max_side = max_side
        self.thresh = thresh
        self.box_thresh = box_thresh
        self.unclip_ratio = unclip_ratio
        self.min_size = min_size
        path = Path(model_path) if model_path is not None else default_model_path()
        if path is None or not path.is_file():
            raise FileNotFoundError(
                f"text detection model not found ({'model_path=' + str(model_path) if model_path else 'no model_path'}"
                f"): install the file with `pip install --no-deps {WHEEL}` (PP-OCRv4 det, Apache-2.0) or pass "
                "model_path= to a DB-style ONNX text detector"
            )
        self.model_path_ = path
        self.net_ = cv2.dnn.readNetFromONNX(str(path))

    def probability_map(self, rgb: np.ndarray) -> tuple[np.ndarray, float, float]:
        """The network's text probability map (h, w) and the x, y scale from map to image pixels."""
        height, width = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        h = max(32, int(round(height * scale / 32)) * 32)
        w = max(32, int(round(width * scale / 32)) * 32)
        bgr = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2BGR)  # PP-OCR reads BGR
        blob = cv2.dnn.blobFromImage(bgr, 1 / 127.5, (w, h), mean=(127.5, 127.5, 127.5), swapRB=False)
        self.net_.setInput(blob)
        prob = self.net_.forward()[0, 0]
        return prob, width / w, height / h

    def detect(self, rgb: np.ndarray) -> TextBoxes:
        """Text boxes of an RGB uint8 image (h, w, 3), in its pixels."""
        prob, sx, sy = self.probability_map(rgb)
        boxes, scores = boxes_from_map(prob, self.thresh, self.box_thresh, self.unclip_ratio, self.min_size)
        if len(boxes):
            boxes = boxes * np.array([sx, sy, sx, sy])
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, rgb.shape[1])
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, rgb.shape[0])
        return TextBoxes(boxes, scores)


def boxes_from_map(
    prob: np.ndarray, thresh: float, box_thresh: float, unclip_ratio: float, min_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned boxes (n, 4) in map pixels and their scores from a DB probability map."""
    mask = cv2.dilate((prob > thresh).astype(np.uint8), np.ones((2, 2), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    boxes, scores = [], []
    for k in range(1, n):
        x, y, w, h, area = stats[k]
        if min(w, h) < min_size:
            continue
        region = prob[labels == k]
        score = float(region[region > thresh].mean())  # the kernel's pixels (the dilated rim is not text)
        if score < box_thresh:
            continue
        grow = unclip_ratio * area / (2.0 * (w + h))
        boxes.append([x - grow, y - grow, x + w + grow, y + h + grow])
        scores.append(score)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores, dtype=np.float64)


def text_features(boxes: np.ndarray, width: int, height: int) -> dict[str, Any]:
    """:data:`TEXT_COLUMNS` of one image from its text boxes (n, 4) in its pixels."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return {"text_area_fraction": 0.0, "text_blocks": 0, "text_position": "none", "text_height": 0.0}
    mask = np.zeros((height, width), dtype=bool)
    for x1, y1, x2, y2 in np.round(boxes).astype(int):
        mask[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    largest = boxes[int(np.argmax(areas))]
    centre = (largest[1] + largest[3]) / 2.0 / height
    position = "top" if centre < 1 / 3 else ("middle" if centre < 2 / 3 else "bottom")
    return {
        "text_area_fraction": float(mask.mean()),
        "text_blocks": int(len(boxes)),
        "text_position": position,
        "text_height": float((largest[3] - largest[1]) / height),
    }


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU (len(a), len(b)) of x1, y1, x2, y2 boxes."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def match(detected: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> int:
    """Greedy one-to-one matches at IoU >= ``iou`` (highest IoU first): the true positives."""
    overlaps = box_iou(detected, truth)
    hits = 0
    while overlaps.size and overlaps.max() >= iou:
        i, j = np.unravel_index(int(np.argmax(overlaps)), overlaps.shape)
        hits += 1
        overlaps[i, :] = -1
        overlaps[:, j] = -1
    return hits


TEXT_IMAGE_COLUMNS = ("text_area_fraction", "text_blocks", "text_height", "text_center_y")


class TextImageFeatures:
    """The annotation's text columns of one image (all numbers, as the images table's image-level hook needs):
    ``text_area_fraction``, ``text_blocks``, ``text_height`` and ``text_center_y`` (the largest block's centre /
    height, 0..1; NaN without text). ``causal.bands`` turns ``text_center_y`` into the ``text_position`` band.

    Optionally chained after another image-level feature callable (``then``: the colour features), whose columns
    come first. Picklable (the network is loaded again after unpickling), so Ray actors can carry it.
    """

    def __init__(self, model_path: str | Path | None = None, then: Any = None, **detector_kwargs: Any) -> None:
        self.model_path = model_path
        self.then = then
        self.detector_kwargs = detector_kwargs
        self.detector_ = TextDetector(model_path, **detector_kwargs)

    def __call__(self, pixels: np.ndarray) -> dict[str, float]:
        row = dict(self.then(pixels)) if self.then is not None else {}
        height, width = pixels.shape[:2]
        boxes = self.detector_.detect(pixels).boxes
        feats = text_features(boxes, width, height)
        centre = float("nan")
        if len(boxes):
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            largest = boxes[int(np.argmax(areas))]
            centre = float((largest[1] + largest[3]) / 2.0 / height)
        row.update(
            {
                "text_area_fraction": feats["text_area_fraction"],
                "text_blocks": float(feats["text_blocks"]),
                "text_height": feats["text_height"],
                "text_center_y": centre,
            }
        )
        return row

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "detector_"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.detector_ = TextDetector(self.model_path, **self.detector_kwargs)
