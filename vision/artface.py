"""Artwork face detector: YuNet proposals re-scored and re-boxed by an O-net fine-tuned on artwork faces.

Why this design. On paintings YuNet at a low cut-off already proposes nearly every face (on the held-out part of
paintings_dev, 97% of faces have a proposal scoring >= 0.1 within IoU 0.4 of the label rescaled to YuNet's box
size), but it ranks many painted faces below its false positives and places some boxes loosely. A second stage
that looks at each proposal again fixes both at little cost, as MTCNN's O-net does for its own proposals:

1. YuNet runs once per image (the default detector's pass, optionally with a greyscale pass) at ``proposal_min_prob``
   and keeps the ``proposal_top_k`` best boxes after NMS.
2. Each proposal is made square about its centre, enlarged by ``context``, cropped (zero outside the image) and
   resized to 48x48: the input of MTCNN's O-net (:class:`ArtNet`, same layers), whose weights were fine-tuned on
   artwork (``scripts/train_face_detector.py``; model card ``vision/weights/artface_onet.md``).
3. The face score is ``sigmoid(O-net logit + a * logit(YuNet score) + b)``: the YuNet score stays an input, so a
   face YuNet is sure of stays high, and the network decides the doubtful ones. The box moves ``box_step`` of the
   way from YuNet's box to the O-net's regression (offsets relative to the crop's side, as in MTCNN). Landmarks
   are YuNet's.
4. Greedy NMS at ``nms_threshold`` on the new scores and boxes.
5. Optionally (``rotations``) the whole detector also runs on the image turned by 90-degree steps.
6. Optionally (``cascade``) a second proposer, MTCNN's P-net and R-net fine-tuned on stylised, stretched and tilted
   artwork faces (:mod:`vision.cascade`), adds the faces YuNet never proposes (cartoon and line-drawn faces). Its
   boxes that overlap no YuNet proposal (IoU < ``cascade_overlap``) join the proposals with the YuNet-score input
   set to ``cascade_prior`` and take the network's box in full; the O-net decides as for the others.

Weights are a NumPy ``.npz`` read with ``allow_pickle=False`` (no pickle), about 1.5 MB.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from vision.detector_base import FaceDetections, FaceDetector, check_probability, weights_file
from vision.evaluate import box_iou
from vision.yunet import YuNetDetector, nms

log = logging.getLogger(__name__)

CROP = 48
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "artface_onet.npz"


class ArtNet(nn.Module):
    """MTCNN's O-net (the layers and names of ``facenet_pytorch.models.mtcnn.ONet``) plus the YuNet-score stack.

    ``forward(crops, yunet_logit)`` takes (n, 3, 48, 48) crops scaled as MTCNN's ((x - 127.5) / 128, RGB) and
    (n,) logits of the YuNet scores; returns the face logit (n,) and the box regression (n, 4).
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        # a, b of the score stack; starts as "O-net alone" plus a little of YuNet.
        self.stack = nn.Parameter(torch.tensor([0.5, 0.0]))

    def forward(self, x: torch.Tensor, yunet_logit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        # O-net's dense layer was trained on width-major (transposed Caffe) activations.
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        two = self.dense6_1(x)
        logit = two[:, 1] - two[:, 0] + self.stack[0] * yunet_logit + self.stack[1]
        return logit, self.dense6_2(x)


def save_weights(net: ArtNet, path: str | Path, meta: dict) -> Path:
    """Write ``net``'s parameters and ``meta`` (JSON) to an ``.npz`` that loads without pickle."""
    arrays = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def load_weights(path: str | Path) -> tuple[ArtNet, dict]:
    """An :class:`ArtNet` in eval mode and its metadata from an ``.npz`` written by :func:`save_weights`."""
    with np.load(Path(path), allow_pickle=False) as data:
        meta = json.loads(bytes(data["__meta__"]).decode())
        state = {k: torch.from_numpy(data[k].copy()) for k in data.files if k != "__meta__"}
    net = ArtNet()
    net.load_state_dict(state)
    return net.eval(), meta


def square_boxes(boxes: np.ndarray, context: float) -> np.ndarray:
    """Boxes (n, 4) made square about their centres, side = ``context`` x the longer side."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * context / 2
    return np.column_stack([cx - half, cy - half, cx + half, cy + half])


def crop_squares(image: np.ndarray, squares: np.ndarray, size: int = CROP) -> np.ndarray:
    """(n, size, size, 3) uint8 crops of square boxes from ``image``; zero where a box leaves the image.

    Each crop is the clipped region area-resized into its share of the output (no stretching), so a face at the
    border keeps its proportions as it would have inside the image.
    """
    h, w = image.shape[:2]
    out = np.zeros((len(squares), size, size, 3), dtype=np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(squares, dtype=np.float64)):
        side = max(x2 - x1, 1e-6)
        cx1, cy1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
        cx2, cy2 = min(int(np.ceil(x2)), w), min(int(np.ceil(y2)), h)
        if cx2 <= cx1 or cy2 <= cy1:
            continue
        f = size / side
        ox1, oy1 = max(0, int(round((cx1 - x1) * f))), max(0, int(round((cy1 - y1) * f)))
        ox2, oy2 = min(size, int(round((cx2 - x1) * f))), min(size, int(round((cy2 - y1) * f)))
        if ox2 <= ox1 or oy2 <= oy1:
            continue
        region = image[cy1:cy2, cx1:cx2]
        interp = cv2.INTER_AREA if region.shape[1] > ox2 - ox1 else cv2.INTER_LINEAR
        out[k, oy1:oy2, ox1:ox2] = cv2.resize(region, (ox2 - ox1, oy2 - oy1), interpolation=interp)
    return out


def to_input(crops: np.ndarray) -> torch.Tensor:
    """uint8 (n, 48, 48, 3) RGB crops as MTCNN's network input (n, 3, 48, 48), (x - 127.5) / 128."""
    return (torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() - 127.5) * 0.0078125


def score_logit(p: np.ndarray) -> np.ndarray:
    """logit of YuNet scores, clipped away from 0 and 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def apply_regression(squares: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """MTCNN's box regression: each corner moves by its offset times the square's side."""
    side = (squares[:, 2] - squares[:, 0])[:, None]
    return squares + reg * side


def unrotate(dets: FaceDetections, degrees: int, shape: tuple[int, int]) -> FaceDetections:
    """Faces found on ``np.rot90(image, degrees // 90)`` mapped back to the pixels of ``image`` (shape (H, W))."""
    if degrees % 360 == 0 or len(dets.probs) == 0:
        return dets
    h, w = shape
    b = np.asarray(dets.boxes, dtype=np.float64)
    p = np.asarray(dets.landmarks, dtype=np.float64)
    k = (degrees // 90) % 4
    if k == 1:  # rotated (x', y') came from original (w - y', x')
        boxes = np.column_stack([w - b[:, 3], b[:, 0], w - b[:, 1], b[:, 2]])
        points = np.stack([w - p[..., 1], p[..., 0]], axis=-1)
    elif k == 2:  # from (w - x', h - y')
        boxes = np.column_stack([w - b[:, 2], h - b[:, 3], w - b[:, 0], h - b[:, 1]])
        points = np.stack([w - p[..., 0], h - p[..., 1]], axis=-1)
    else:  # k == 3: from (y', h - x')
        boxes = np.column_stack([b[:, 1], h - b[:, 2], b[:, 3], h - b[:, 0]])
        points = np.stack([p[..., 1], h - p[..., 0]], axis=-1)
    return FaceDetections(boxes.astype(np.float32), np.asarray(dets.probs), points.astype(np.float32))


def merge_proposals(
    proposals: FaceDetections, extra: FaceDetections, prior: float, overlap: float, top_k: int
) -> tuple[FaceDetections, int]:
    """YuNet's ``proposals`` followed by at most ``top_k`` of the cascade's ``extra`` boxes that overlap none of
    them (IoU < ``overlap``), those scored ``prior`` with template landmarks; returns them and how many were added."""
    from vision.cascade import template_landmarks

    boxes = np.asarray(extra.boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) and len(proposals.probs):
        boxes = boxes[box_iou(boxes, np.asarray(proposals.boxes, np.float64)).max(axis=1) < overlap]
    boxes = boxes[:top_k]
    if not len(boxes):
        return proposals, 0
    merged = FaceDetections(
        boxes=np.concatenate([np.asarray(proposals.boxes, np.float32), boxes.astype(np.float32)]),
        probs=np.concatenate([np.asarray(proposals.probs, np.float32), np.full(len(boxes), prior, np.float32)]),
        landmarks=np.concatenate([np.asarray(proposals.landmarks, np.float32), template_landmarks(boxes)]),
    )
    return merged, len(boxes)


class ArtFaceDetector(FaceDetector):
    """YuNet proposals re-scored and re-boxed by :class:`ArtNet` (see the module docstring).

    Parameters
    ----------
    detection_size : int
        Long side each image is resized to for YuNet (as ``vision/detector=yunet``).
    grey : bool
        Also propose from a greyscale YuNet pass (2x YuNet's time).
    rotations : sequence of int
        Degrees counter-clockwise (multiples of 90) the image is also turned by; each turn runs the whole detector
        (proposals and re-scoring, so the network sees the face upright) and the faces, mapped back, are merged by
        NMS. ``[0, 90, 270]`` finds faces lying on their side; each turn adds one detector's time.
    proposal_min_prob : float
        YuNet score above which a box is a proposal.
    proposal_top_k : int
        Most proposals per image re-scored (highest YuNet scores first).
    min_prob : float
        Cut-off on the final score.
    nms_threshold : float
        IoU for the final NMS (and for YuNet's own).
    max_faces : int, optional
        Most faces kept per image.
    box_step : float
        Fraction of the network's box regression applied to YuNet's box: 0 keeps YuNet's box, 1 takes the
        network's. On paintings_dev's held-out part 0.5 placed boxes best (AP@0.5 against rescaled labels 0.912,
        against 0.893 at 1 and 0.856 at 0, with the first weights; chosen on that part, so optimistic).
    weights_path : str or Path, optional
        The ``.npz`` weights; None uses ``vision/weights/artface_onet.npz``.
    cascade : bool
        Also propose with the fine-tuned P-net/R-net cascade (:class:`vision.cascade.CascadeProposer`).
    cascade_size : int
        Long side each image is shrunk to for the cascade's P-net pyramid (its time grows with the square).
    cascade_min_face : int
        Smallest face the cascade looks for, in pixels of that shrunk image.
    cascade_pnet_prob : float
        P-net score above which a pyramid window goes on to R-net (the cascade's time is mostly R-net's crops).
    cascade_min_prob : float
        R-net score above which a cascade box is a proposal.
    cascade_prior : float
        The YuNet score a cascade proposal is given in the stacked score (YuNet did not propose it).
    cascade_overlap : float
        A cascade box with IoU >= this with a YuNet proposal is dropped (YuNet's box and landmarks are kept).
    cascade_weights : str or Path, optional
        The cascade's ``.npz``; None uses ``vision/weights/artface_cascade.npz``.
    device : str
        Accepted for the common interface; the re-scoring runs on the CPU (a few crops per image).
    """

    def __init__(
        self,
        *,
        detection_size: int = 640,
        grey: bool = False,
        rotations: Sequence[int] = (0,),
        proposal_min_prob: float = 0.05,
        proposal_top_k: int = 20,
        min_prob: float = 0.5,
        nms_threshold: float = 0.3,
        max_faces: int | None = 100,
        box_step: float = 0.5,
        weights_path: str | Path | None = None,
        cascade: bool = False,
        cascade_size: int = 400,
        cascade_min_face: int = 20,
        cascade_pnet_prob: float = 0.8,
        cascade_min_prob: float = 0.8,
        cascade_prior: float = 0.02,
        cascade_overlap: float = 0.5,
        cascade_weights: str | Path | None = None,
        device: Any = "auto",
    ):
        self.detection_size = detection_size
        self.grey = grey
        self.rotations = rotations
        self.proposal_min_prob = proposal_min_prob
        self.proposal_top_k = proposal_top_k
        self.min_prob = min_prob
        self.nms_threshold = nms_threshold
        self.max_faces = max_faces
        self.box_step = box_step
        self.weights_path = weights_path
        self.cascade = cascade
        self.cascade_size = cascade_size
        self.cascade_min_face = cascade_min_face
        self.cascade_pnet_prob = cascade_pnet_prob
        self.cascade_min_prob = cascade_min_prob
        self.cascade_prior = cascade_prior
        self.cascade_overlap = cascade_overlap
        self.cascade_weights = cascade_weights
        self.device = device

    def _check_params(self) -> None:
        check_probability(self.min_prob, "min_prob")
        if not 0.0 <= self.proposal_min_prob < 1.0:
            raise ValueError(f"vision.detector.proposal_min_prob must be in [0, 1), got {self.proposal_min_prob!r}")
        rotations = [int(r) % 360 for r in self.rotations]
        if not rotations or any(r % 90 for r in rotations):
            raise ValueError(f"vision.detector.rotations must be multiples of 90 degrees, got {self.rotations!r}")
        if self.cascade:
            for name in ("cascade_pnet_prob", "cascade_min_prob", "cascade_prior", "cascade_overlap"):
                check_probability(getattr(self, name), name)

    def _build(self) -> None:
        if getattr(self, "net_", None) is not None:
            return
        path = weights_file(self.weights_path, DEFAULT_WEIGHTS, "weights_path", "artface")
        self.net_, self.meta_ = load_weights(path)
        self.yunet_ = YuNetDetector(
            detection_size=self.detection_size,
            grey=self.grey,
            min_prob=self.proposal_min_prob,
            nms_threshold=self.nms_threshold,
            max_faces=int(self.proposal_top_k),
        )
        self.cascade_ = None
        if self.cascade:
            from vision.cascade import CascadeProposer

            self.cascade_ = CascadeProposer(
                detection_size=int(self.cascade_size),
                min_face_size=int(self.cascade_min_face),
                thresholds=(float(self.cascade_pnet_prob), 0.5),
                min_prob=float(self.cascade_min_prob),
                weights_path=self.cascade_weights,
                device="cpu",
            )
        log.info("artface: YuNet proposals + %s (%s)", path.name, self.meta_.get("data", "?"))

    def _detect_batch(self, images: list[np.ndarray], shapes: list[tuple[int, int]]) -> list[FaceDetections]:
        rotations = [int(r) % 360 for r in self.rotations]
        per_rotation = []
        for r in dict.fromkeys(rotations):
            turned = [np.ascontiguousarray(np.rot90(img, r // 90)) for img in images]
            proposals = self.yunet_.detect(turned)
            if self.cascade_ is not None:
                extra = self.cascade_.detect(turned)
                found = [self._refine_merged(img, p, e) for img, p, e in zip(turned, proposals, extra, strict=True)]
            else:
                found = [self.refine(img, p) for img, p in zip(turned, proposals, strict=True)]
            per_rotation.append([unrotate(f, r, img.shape[:2]) for f, img in zip(found, images, strict=True)])
        if len(per_rotation) == 1:
            return per_rotation[0]
        return [self._merge(dets) for dets in zip(*per_rotation, strict=True)]

    def _merge(self, dets: Sequence[FaceDetections]) -> FaceDetections:
        boxes = np.concatenate([d.boxes for d in dets])
        probs = np.concatenate([d.probs for d in dets])
        points = np.concatenate([d.landmarks for d in dets])
        keep = nms(boxes, probs, float(self.nms_threshold))
        if self.max_faces is not None:
            keep = keep[: int(self.max_faces)]
        return FaceDetections(boxes=boxes[keep], probs=probs[keep], landmarks=points[keep])

    def _refine_merged(self, image: np.ndarray, proposals: FaceDetections, extra: FaceDetections) -> FaceDetections:
        """YuNet's proposals plus the cascade's that overlap none of them, re-scored together."""
        merged, n_extra = merge_proposals(
            proposals, extra, float(self.cascade_prior), float(self.cascade_overlap), int(self.proposal_top_k)
        )
        if n_extra == 0:
            return self.refine(image, proposals)
        steps = np.concatenate([np.full(len(proposals.probs), float(self.box_step)), np.ones(n_extra)])
        return self.refine(image, merged, steps)

    @torch.inference_mode()
    def refine(self, image: np.ndarray, proposals: FaceDetections, steps: np.ndarray | None = None) -> FaceDetections:
        """Re-score and re-box one image's proposals (``steps``: a ``box_step`` per proposal; default the
        parameter)."""
        self._build()
        if len(proposals.probs) == 0:
            return FaceDetections.empty()
        start = np.asarray(proposals.boxes, dtype=np.float64)
        squares = square_boxes(start, float(self.meta_["context"]))
        yunet_logit = torch.from_numpy(score_logit(proposals.probs)).float()
        logit, reg = self.net_(to_input(crop_squares(image, squares)), yunet_logit)
        scores = torch.sigmoid(logit).double().numpy()
        # Move each box only part of the way the network says: its regression is noisy on one crop.
        step = float(self.box_step) if steps is None else np.asarray(steps, dtype=np.float64)[:, None]
        boxes = start + step * (apply_regression(squares, reg.double().numpy()) - start)
        h, w = image.shape[:2]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        ok = np.flatnonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & (scores >= self.min_prob))
        keep = ok[nms(boxes[ok], scores[ok], float(self.nms_threshold))] if len(ok) else ok
        if self.max_faces is not None:
            keep = keep[: int(self.max_faces)]
        return FaceDetections(
            boxes=boxes[keep].astype(np.float32),
            probs=scores[keep].astype(np.float32),
            landmarks=np.asarray(proposals.landmarks, dtype=np.float32)[keep],
        )
