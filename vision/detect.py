"""Face detection: facenet-pytorch's MTCNN (P/R/O-net weights shipped in its wheel) on batches of any-size images.

What differs from calling ``facenet_pytorch.MTCNN.detect`` on full-resolution images, and why:

- Each image is first resized so its long side is ``detection_size`` (only downscaled unless ``upscale``). The
  P-net image pyramid, whose large scales dominate MTCNN's CPU time, is then a fixed, small amount of work per
  image whatever the file's resolution. Boxes and landmarks are mapped back to the pixels of the array given.
- facenet-pytorch resizes every pyramid level and every R-net/O-net crop with ``interpolate(mode="area")``, which runs
  as an adaptive average pool and took about half of naive MTCNN's CPU time on 2000 px posters. Here pyramid levels
  come from torch's antialiased bilinear uint8 kernel and crops from OpenCV's ``INTER_AREA`` (same averaging
  footprint, a fraction of the time), and P-net runs on channels-last tensors (faster oneDNN convolutions).
- Images of different sizes share a batch: at every pyramid scale each image is resized on its own and pasted into a
  common zero canvas. P-net is fully convolutional; the canvas changes its output only where a receptive field
  crosses the padding, so the conv1 activations outside each image are set to a large negative value before the
  2x2 ceil-mode max pool (exactly what a partial pool window sees without padding) and P-net scores outside each
  image's own output map are discarded. Each image gets the pyramid scales it would get alone. R-net and O-net crop
  from each image's own pixels, clipped to its own size. A batched result therefore equals the one-image result up
  to floating-point summation order.
- No face gives :meth:`FaceDetections.empty`, never ``None``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vision.detector_base import FaceDetections, FaceDetector
from vision.device import host_to_device, resolve_device

log = logging.getLogger(__name__)

# MTCNN's fixed input sizes (P-net's window, R-net's and O-net's crops) and its NMS overlaps (facenet-pytorch).
_PNET_CELL = 12
_RNET_SIZE = 24
_ONET_SIZE = 48
_NMS_PER_SCALE = 0.5
_NMS_PER_IMAGE = 0.7
# Written into conv1 activations outside an image so a 2x2 max-pool window never takes them; finite so the masked
# region (discarded later) stays free of inf/nan through conv2/conv3.
_MASKED = -1.0e9
# R-net/O-net crops per forward pass: bounds memory on many proposals (facenet-pytorch PR #105 used 512).
_CROP_CHUNK = 512


class MTCNNDetector(FaceDetector):
    """facenet-pytorch MTCNN on batches of upright RGB images of any sizes.

    Parameters
    ----------
    detection_size : int
        Long side, in pixels, that each image is resized to before detection.
    upscale : bool
        Also enlarge images whose long side is below ``detection_size``. False processes them at their own size.
    min_face_size : float
        Smallest face searched for, in pixels of the resized image (MTCNN's ``minsize``; the first pyramid scale is
        ``12 / min_face_size``). Relative to the image this is ``min_face_size / detection_size`` of the long side.
    thresholds : sequence of 3 floats
        P-net, R-net and O-net score thresholds in [0, 1].
    factor : float
        Scale step of the image pyramid, in (0, 1).
    min_prob : float
        Final cut-off on the O-net probability; faces below it are dropped.
    batch_size : int
        Images per P-net batch (images of similar shape are grouped to keep the canvas padding small).
    device : {"auto", "cpu", "cuda", "cuda:N", "mps"}
        Where the networks run; ``"auto"`` picks cuda, then mps, then cpu (:func:`vision.device.resolve_device`).

    Attributes
    ----------
    device_ : torch.device
        The resolved device (set on the first :meth:`detect`).
    mtcnn_ : facenet_pytorch.MTCNN
        The networks (an ``nn.Module`` in eval mode on ``device_``), built once on the first :meth:`detect`.
    """

    def __init__(
        self,
        *,
        detection_size: int = 640,
        upscale: bool = False,
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        min_prob: float = 0.9,
        batch_size: int = 8,
        device: str = "auto",
    ):
        self.detection_size = detection_size
        self.upscale = upscale
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.factor = factor
        self.min_prob = min_prob
        self.batch_size = batch_size
        self.device = device

    def _detect_batch(self, images: list[np.ndarray], shapes: list[tuple[int, int]]) -> list[FaceDetections]:
        results: list[FaceDetections | None] = [None] * len(shapes)
        targets = [self._target_size(h, w) for h, w in shapes]
        # Group images of the same orientation and similar size so the shared canvas wastes little.
        order = sorted(range(len(shapes)), key=lambda k: (targets[k][0] >= targets[k][1], targets[k]))
        with torch.inference_mode():
            for start in range(0, len(order), int(self.batch_size)):
                chunk = order[start : start + int(self.batch_size)]
                arrays = [_resize(images[k], targets[k]) for k in chunk]
                for k, (boxes, points) in zip(chunk, self._detect_arrays(arrays), strict=True):
                    results[k] = self._to_detections(boxes, points, shapes[k], targets[k])
        return [r if r is not None else FaceDetections.empty() for r in results]

    # ----------------------------------------------------------------------------------------------------------------
    # Set-up and checks
    # ----------------------------------------------------------------------------------------------------------------

    def _check_params(self) -> None:
        key = "vision.detector"
        if not isinstance(self.detection_size, (int, np.integer)) or self.detection_size < _PNET_CELL:
            raise ValueError(f"{key}.detection_size must be an integer >= {_PNET_CELL}, got {self.detection_size!r}")
        if not self.min_face_size or self.min_face_size <= 0:
            raise ValueError(f"{key}.min_face_size must be > 0 (pixels), got {self.min_face_size!r}")
        thr = tuple(self.thresholds)
        if len(thr) != 3 or not all(0.0 <= float(t) <= 1.0 for t in thr):
            raise ValueError(f"{key}.thresholds must be three numbers in [0, 1], got {self.thresholds!r}")
        if not 0.0 < self.factor < 1.0:
            raise ValueError(f"{key}.factor must be in (0, 1), got {self.factor!r}")
        if not 0.0 <= self.min_prob <= 1.0:
            raise ValueError(f"{key}.min_prob must be in [0, 1], got {self.min_prob!r}")
        if not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1:
            raise ValueError(f"{key}.batch_size must be an integer >= 1, got {self.batch_size!r}")

    def _build(self) -> None:
        if getattr(self, "mtcnn_", None) is not None:
            return
        from facenet_pytorch import MTCNN

        self.device_ = resolve_device(self.device)
        # The wheel ships pnet.pt/rnet.pt/onet.pt; MTCNN loads them from its package folder (no download).
        self.mtcnn_ = MTCNN(device=self.device_, keep_all=True).eval()
        log.info(
            "MTCNN on %s (detection_size=%s, min_face_size=%s)", self.device_, self.detection_size, self.min_face_size
        )

    def _target_size(self, h: int, w: int) -> tuple[int, int]:
        ratio = self.detection_size / max(h, w)
        if ratio >= 1.0 and not self.upscale:
            return h, w
        return max(1, round(h * ratio)), max(1, round(w * ratio))

    # ----------------------------------------------------------------------------------------------------------------
    # The three MTCNN stages on (h, w, 3) uint8 arrays; results in those arrays' pixels. Pyramid levels and crops are
    # made on the CPU (cheap next to the networks, and the same inputs on every device); the networks run on device_.
    # ----------------------------------------------------------------------------------------------------------------

    def _detect_arrays(self, imgs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        dev = self.device_
        sizes = [(int(a.shape[0]), int(a.shape[1])) for a in imgs]
        boxes, inds = self._pnet_stage(imgs, sizes)
        thr = [float(t) for t in self.thresholds]
        points = torch.zeros(0, 5, 2, device=dev)
        if len(boxes):
            boxes, inds, _ = self._refine(imgs, sizes, boxes, inds, _RNET_SIZE, self.mtcnn_.rnet, thr[1])
        if len(boxes):
            boxes, inds, points = self._refine(imgs, sizes, boxes, inds, _ONET_SIZE, self.mtcnn_.onet, thr[2])
        boxes_np = boxes.cpu().numpy()
        points_np = points.cpu().numpy()
        inds_np = inds.cpu().numpy()
        return [(boxes_np[inds_np == i], points_np[inds_np == i]) for i in range(len(imgs))]

    def _scales(self, h: int, w: int) -> list[float]:
        # facenet-pytorch's pyramid, computed the same way (iterated products) so the scales are bit-identical.
        m = _PNET_CELL / float(self.min_face_size)
        minl = min(h, w) * m
        scale, scales = m, []
        while minl >= _PNET_CELL:
            scales.append(scale)
            scale *= self.factor
            minl *= self.factor
        return scales

    def _pnet_stage(self, imgs: list[np.ndarray], sizes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.device_
        pnet = self.mtcnn_.pnet
        per_image = [self._scales(h, w) for h, w in sizes]
        n_levels = max((len(s) for s in per_image), default=0)
        all_boxes, all_inds = [], []
        for level in range(n_levels):
            members = [i for i, s in enumerate(per_image) if len(s) > level]
            scale = per_image[members[0]][level]
            level_sizes = [(int(sizes[i][0] * scale + 1), int(sizes[i][1] * scale + 1)) for i in members]
            canvas_h = max(s[0] for s in level_sizes)
            canvas_w = max(s[1] for s in level_sizes)
            canvas = np.zeros((len(members), canvas_h, canvas_w, 3), dtype=np.uint8)
            for j, (i, (h, w)) in enumerate(zip(members, level_sizes, strict=True)):
                canvas[j, :h, :w] = _resize(imgs[i], (h, w))
            # NHWC memory seen as NCHW is channels-last, the layout in which oneDNN runs P-net's convolutions
            # about 1.5-2x faster on the CPU.
            batch = host_to_device(torch.from_numpy(canvas), dev).permute(0, 3, 1, 2)
            batch = batch.float().sub_(127.5).mul_(0.0078125)
            reg, prob = _pnet_forward(pnet, batch, level_sizes)
            boxes, inds = _generate_boxes(reg, prob, scale, float(self.thresholds[0]))
            if len(boxes) == 0:
                continue
            inds = torch.as_tensor(members, device=dev)[inds]
            keep = batched_nms(boxes[:, :4], boxes[:, 4], inds, _NMS_PER_SCALE)
            all_boxes.append(boxes[keep])
            all_inds.append(inds[keep])
        if not all_boxes:
            return torch.zeros((0, 5), device=dev), torch.zeros((0,), dtype=torch.long, device=dev)
        boxes = torch.cat(all_boxes)
        inds = torch.cat(all_inds)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], inds, _NMS_PER_IMAGE)
        boxes, inds = boxes[keep], inds[keep]
        # P-net's box regression, then square boxes (facenet-pytorch's detect_face, first stage).
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        boxes = torch.stack(
            [
                boxes[:, 0] + boxes[:, 5] * regw,
                boxes[:, 1] + boxes[:, 6] * regh,
                boxes[:, 2] + boxes[:, 7] * regw,
                boxes[:, 3] + boxes[:, 8] * regh,
                boxes[:, 4],
            ],
            dim=1,
        )
        return _rerec(boxes), inds

    def _refine(
        self,
        imgs: list[np.ndarray],
        sizes: list[tuple[int, int]],
        boxes: torch.Tensor,
        inds: torch.Tensor,
        crop_size: int,
        net: torch.nn.Module,
        threshold: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """R-net (``crop_size`` 24) or O-net (48) on crops of each box from its own image."""
        dev = self.device_
        crops, boxes, inds = _crop_boxes(imgs, sizes, boxes, inds, crop_size)
        if len(boxes) == 0:
            return boxes, inds, torch.zeros(0, 5, 2, device=dev)
        crops = (crops - 127.5) * 0.0078125
        outs = [net(crops[i : i + _CROP_CHUNK]) for i in range(0, len(crops), _CROP_CHUNK)]
        outs = [torch.cat(v, dim=0) for v in zip(*outs, strict=True)]
        reg, score = outs[0], outs[-1][:, 1]
        keep = score > threshold
        boxes = torch.cat([boxes[keep, :4], score[keep, None]], dim=1)
        inds, reg = inds[keep], reg[keep]
        if crop_size == _RNET_SIZE:
            pick = batched_nms(boxes[:, :4], boxes[:, 4], inds, _NMS_PER_IMAGE)
            boxes = _rerec(_bbreg(boxes[pick], reg[pick]))
            return boxes, inds[pick], torch.zeros(0, 5, 2, device=dev)
        # O-net also gives landmarks, relative to the box (facenet-pytorch's third stage).
        pts = outs[1][keep]
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        points = torch.stack(
            [w[:, None] * pts[:, :5] + boxes[:, 0:1] - 1, h[:, None] * pts[:, 5:] + boxes[:, 1:2] - 1], dim=2
        )
        boxes = _bbreg(boxes, reg)
        pick = _nms_min(boxes, inds, _NMS_PER_IMAGE)
        return boxes[pick], inds[pick], points[pick]

    def _to_detections(
        self, boxes: np.ndarray, points: np.ndarray, shape: tuple[int, int], target: tuple[int, int]
    ) -> FaceDetections:
        keep = boxes[:, 4] >= self.min_prob
        boxes, points = boxes[keep], points[keep]
        if len(boxes) == 0:
            return FaceDetections.empty()
        order = np.argsort(-boxes[:, 4], kind="stable")
        boxes, points = boxes[order], points[order]
        height, width = shape
        sy, sx = height / target[0], width / target[1]
        out = boxes[:, :4].astype(np.float64) * np.array([sx, sy, sx, sy])
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
        landmarks = points.astype(np.float64) * np.array([sx, sy])
        return FaceDetections(
            boxes=out.astype(np.float32),
            probs=np.clip(boxes[:, 4], 0.0, 1.0).astype(np.float32),
            landmarks=landmarks.astype(np.float32),
        )


# --------------------------------------------------------------------------------------------------------------------
# Helpers (tensor code; facenet-pytorch's detect_face conventions, including its 1-based crop offsets)
# --------------------------------------------------------------------------------------------------------------------


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, threshold: float) -> torch.Tensor:
    """``torchvision.ops.batched_nms``, imported on first use (torchvision's import costs a second of start-up to
    detectors that never call it)."""
    from torchvision.ops import batched_nms as _batched_nms

    return _batched_nms(boxes, scores, idxs, threshold)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of an (h, w, 3) uint8 array to ``size`` = (h, w); returns (h, w, 3) uint8.

    torch's uint8 channels-last kernel: about 4x faster than OpenCV's INTER_AREA at non-integer ratios and 10x
    faster than facenet-pytorch's ``interpolate(mode="area")`` (an adaptive average pool, about half of naive
    MTCNN's CPU time), with the same antialiasing footprint.
    """
    if image.shape[:2] == tuple(size):
        return image
    if not image.flags.writeable:  # torch wraps read-only arrays (PIL's np.asarray) only with a warning
        image = np.array(image)
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0)
    out = F.interpolate(t, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)[0].numpy()
    # The kernel returns planar (3, h, w); OpenCV interleaves planes ~10x faster than a strided numpy/torch copy.
    return cv2.merge([out[0], out[1], out[2]])


def _pnet_forward(
    pnet: torch.nn.Module, x: torch.Tensor, sizes: list[tuple[int, int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """P-net on a padded canvas; returns regression (b, 4, H, W) and face score (b, H, W), 0 outside each image."""
    y = pnet.prelu1(pnet.conv1(x))
    padded = any(s != sizes[0] for s in sizes) or tuple(x.shape[2:]) != sizes[0]
    if padded:
        for j, (h, w) in enumerate(sizes):
            y[j, :, h - 2 :, :] = _MASKED
            y[j, :, :, w - 2 :] = _MASKED
    y = pnet.pool1(y)
    y = pnet.prelu2(pnet.conv2(y))
    y = pnet.prelu3(pnet.conv3(y))
    prob = pnet.softmax4_1(pnet.conv4_1(y))[:, 1]
    reg = pnet.conv4_2(y)
    if padded:
        keep = torch.zeros_like(prob, dtype=torch.bool)
        for j, (h, w) in enumerate(sizes):
            keep[j, : math.ceil((h - 2) / 2) - 4, : math.ceil((w - 2) / 2) - 4] = True
        prob = torch.where(keep, prob, torch.zeros((), dtype=prob.dtype, device=prob.device))
    return reg, prob


def _generate_boxes(reg: torch.Tensor, prob: torch.Tensor, scale: float, threshold: float):
    """P-net cells above ``threshold`` -> (n, 9) boxes [x1, y1, x2, y2, score, dx1, dy1, dx2, dy2] and image index."""
    stride, cell = 2, _PNET_CELL
    mask = prob >= threshold
    idx = mask.nonzero()
    score = prob[mask]
    offsets = reg.permute(1, 0, 2, 3)[:, mask].permute(1, 0)
    bb = idx[:, 1:].to(reg.dtype).flip(1)
    q1 = ((stride * bb + 1) / scale).floor()
    q2 = ((stride * bb + cell - 1 + 1) / scale).floor()
    return torch.cat([q1, q2, score.unsqueeze(1), offsets], dim=1), idx[:, 0]


def _rerec(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes made square around their centres (side = the longer side)."""
    boxes = boxes.clone()
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = torch.maximum(w, h)
    boxes[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    boxes[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _bbreg(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply R-net/O-net box regression (offsets relative to the box size)."""
    boxes = boxes.clone()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, 0] = boxes[:, 0] + reg[:, 0] * w
    boxes[:, 1] = boxes[:, 1] + reg[:, 1] * h
    boxes[:, 2] = boxes[:, 2] + reg[:, 2] * w
    boxes[:, 3] = boxes[:, 3] + reg[:, 3] * h
    return boxes


def _crop_boxes(
    imgs: list[np.ndarray], sizes: list[tuple[int, int]], boxes: torch.Tensor, inds: torch.Tensor, out: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Crop each box from its own image (clipped to that image), area-resized to (out, out).

    Boxes whose clipped crop is empty are dropped (facenet-pytorch skips their crop but keeps the box, which
    misaligns boxes and scores).
    """
    b = boxes[:, :4].trunc().int().cpu().numpy()
    ind = inds.cpu().numpy()
    hs = np.array([sizes[i][0] for i in ind])
    ws = np.array([sizes[i][1] for i in ind])
    x = np.maximum(b[:, 0], 1)
    y = np.maximum(b[:, 1], 1)
    ex = np.minimum(b[:, 2], ws)
    ey = np.minimum(b[:, 3], hs)
    ok = (ey > y - 1) & (ex > x - 1)
    # Pixel-area averaging like facenet-pytorch's interpolate(mode="area"), which runs as an adaptive average pool
    # at ~5 ms per large crop on a CPU; OpenCV's INTER_AREA takes ~0.1 ms.
    picked = np.flatnonzero(ok)
    crops = np.zeros((len(picked), out, out, 3), dtype=np.uint8)
    for j, k in enumerate(picked):
        crops[j] = cv2.resize(
            imgs[ind[k]][y[k] - 1 : ey[k], x[k] - 1 : ex[k]], (out, out), interpolation=cv2.INTER_AREA
        )
    keep = torch.as_tensor(picked, device=boxes.device)
    crops_t = host_to_device(torch.from_numpy(crops), boxes.device).permute(0, 3, 1, 2).float()
    return crops_t, boxes[keep], inds[keep]


def _nms_min(boxes: torch.Tensor, inds: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per-image greedy NMS with overlap = intersection / smaller area (MTCNN's final "Min" NMS)."""
    from facenet_pytorch.models.utils.detect_face import batched_nms_numpy

    return batched_nms_numpy(boxes[:, :4], boxes[:, 4], inds, threshold, "Min")
