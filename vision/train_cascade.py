"""Training data and loops for the artwork proposal cascade (:mod:`vision.cascade`: MTCNN's P-net and R-net).

Data. Each training image (an RGB array and its face boxes, already in YuNet's box convention) is drawn ``variants``
times, each time in a random style of :data:`vision.train_detector.STYLES` (greyscale, cartoon filter, line art,
quantised colours with a turned hue, edge-preserving filter, or as it is), with non-human proportions (stretched
wider or taller, ``exp(U(-stretch, stretch))`` per axis) and a tilt (``U(-tilt, tilt)`` degrees) drawn at random
(:func:`augment`). From every variant :func:`random_crops` cuts square crops as MTCNN's authors did: jittered
around each face (a face when IoU >= 0.65 with it, "part" between 0.4 and 0.65: box target only) and random squares
away from the faces (not a face, IoU < 0.3), all against the face boxes made square (side = the longer side):
the cascade proposes squares, as MTCNN's does, and the O-net re-boxes them. Face-free synthetic key-art
backgrounds add negatives.

P-net is trained on 12 x 12 versions of the crops, R-net on 24 x 24 ones plus the false and true boxes of the
trained P-net on one more variant of every image (:func:`mined_crops`, MTCNN's hard negatives). Both start from
facenet-pytorch's weights; loss = binary cross-entropy on the face logit (faces and non-faces) + smooth-L1 on the
box offsets (faces and parts), Adam with a cosine schedule, random mirror. A fixed seed and one thread reproduce the
weights on the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vision.artface import crop_squares, square_boxes, to_input
from vision.cascade import pnet_logits, rnet_logits
from vision.evaluate import box_iou
from vision.train_detector import STYLES

log = logging.getLogger(__name__)

POS_IOU, PART_IOU, NEG_IOU = 0.65, 0.4, 0.3


@dataclass
class CropSet:
    """24 x 24 uint8 RGB crops (n, 24, 24, 3), class (1 face, 0 not, -1 part: box only), box offsets (n, 4)."""

    crops: np.ndarray
    label: np.ndarray
    reg: np.ndarray

    def __len__(self) -> int:
        return len(self.label)

    @classmethod
    def concat(cls, parts: Sequence[CropSet]) -> CropSet:
        parts = [p for p in parts if len(p)] or [cls.empty()]
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("crops", "label", "reg")))

    @classmethod
    def empty(cls) -> CropSet:
        return cls(np.zeros((0, 24, 24, 3), np.uint8), np.zeros(0, np.int8), np.zeros((0, 4), np.float32))


def augment(
    image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, *, stretch: float = 0.4, tilt: float = 25.0
) -> tuple[np.ndarray, np.ndarray]:
    """One random variant of ``image``: a style, a stretch per axis and a tilt; boxes (k, 4) follow (a turned box
    keeps its size about its turned centre)."""
    style = list(STYLES)[int(rng.integers(len(STYLES)))]
    img = np.ascontiguousarray(STYLES[style](image, rng))
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    h, w = img.shape[:2]
    sx, sy = np.exp(rng.uniform(-stretch, stretch, 2))
    fit = min(1.0, 640 / max(w * sx, h * sy))
    sx, sy = sx * fit, sy * fit
    size = (max(12, int(round(w * sx))), max(12, int(round(h * sy))))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if sx * sy < 1 else cv2.INTER_LINEAR)
    boxes = boxes * [size[0] / w, size[1] / h, size[0] / w, size[1] / h]
    angle = float(rng.uniform(-tilt, tilt))
    if abs(angle) > 1:
        centre = (size[0] / 2, size[1] / 2)
        m = cv2.getRotationMatrix2D(centre, angle, 1.0)
        img = cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        nx = m[0, 0] * cx + m[0, 1] * cy + m[0, 2]
        ny = m[1, 0] * cx + m[1, 1] * cy + m[1, 2]
        half_w, half_h = (boxes[:, 2] - boxes[:, 0]) / 2, (boxes[:, 3] - boxes[:, 1]) / 2
        boxes = np.column_stack([nx - half_w, ny - half_h, nx + half_w, ny + half_h])
    return img, boxes


def _label(squares: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class (1 / -1 part / 0 / -2 dropped) and offsets of square crops against label boxes."""
    n = len(squares)
    if not len(gt):
        return np.zeros(n, np.int8), np.zeros((n, 4), np.float32)
    iou = box_iou(squares, gt)
    best = iou.argmax(axis=1)
    top = iou[np.arange(n), best]
    label = np.select([top >= POS_IOU, top >= PART_IOU, top < NEG_IOU], [1, -1, 0], -2).astype(np.int8)
    side = (squares[:, 2] - squares[:, 0])[:, None]
    return label, ((gt[best] - squares) / side).astype(np.float32)


def random_crops(
    image: np.ndarray, gt: np.ndarray, rng: np.random.Generator, *, per_face: int = 10, negatives: int = 16
) -> CropSet:
    """Jittered squares around each face and random squares elsewhere, labelled (see the module docstring)."""
    h, w = image.shape[:2]
    squares = []
    for x1, y1, x2, y2 in gt:
        side = max(x2 - x1, y2 - y1)
        if side < 8:
            continue
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        # half near the face (mostly faces), half looser (mostly parts), as MTCNN's crops
        spread = np.where(np.arange(per_face) % 2 == 0, 0.1, 0.25)
        s = side * np.exp(rng.uniform(-1, 1, per_face) * spread)
        dx, dy = rng.uniform(-1, 1, (2, per_face)) * spread * side
        squares.append(np.column_stack([cx + dx - s / 2, cy + dy - s / 2, cx + dx + s / 2, cy + dy + s / 2]))
    short = min(h, w)
    s = rng.uniform(12, max(13.0, short / 1.5), negatives)
    x = rng.uniform(0, 1, negatives) * np.maximum(w - s, 1)
    y = rng.uniform(0, 1, negatives) * np.maximum(h - s, 1)
    squares.append(np.column_stack([x, y, x + s, y + s]))
    squares = np.concatenate(squares)
    label, reg = _label(squares, gt)
    keep = label != -2
    return CropSet(crop_squares(image, squares[keep], 24), label[keep], reg[keep])


def mined_crops(image: np.ndarray, gt: np.ndarray, proposer, *, max_negatives: int = 30) -> CropSet:
    """The trained P-net's boxes on ``image`` (``proposer``: a P-net-only stage) labelled against ``gt``."""
    boxes = proposer(image)
    if not len(boxes):
        return CropSet.empty()
    label, reg = _label(boxes, gt)
    neg = np.flatnonzero(label == 0)[:max_negatives]
    keep = np.sort(np.concatenate([np.flatnonzero((label == 1) | (label == -1)), neg]))
    return CropSet(crop_squares(image, boxes[keep], 24), label[keep], reg[keep])


def build_crops(
    images: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    variants: int,
    seed: int,
    extra: Callable[[np.ndarray, np.ndarray], CropSet] | None = None,
    **crop_kwargs,
) -> CropSet:
    """Crops of ``variants`` random variants of every image (each image's draws seeded by ``(seed, k)``, so a rerun
    draws the same); ``extra(image, boxes)`` replaces :func:`random_crops` when given (mining)."""
    parts = []
    for k, (image, boxes) in enumerate(images):
        rng = np.random.default_rng([seed, k])
        for _ in range(variants):
            img, gt = augment(image, boxes, rng)
            gt = square_boxes(gt, 1.0)  # the cascade proposes squares (MTCNN's convention)
            parts.append(extra(img, gt) if extra is not None else random_crops(img, gt, rng, **crop_kwargs))
        if (k + 1) % 100 == 0:
            log.info("cascade crops: %d/%d images, %d crops", k + 1, len(images), sum(len(p) for p in parts))
    return CropSet.concat(parts)


def _pnet_forward(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logit, reg = pnet_logits(net, x)
    return logit[:, 0, 0], reg[:, :, 0, 0]


def _batch_loss(net, forward, crops, label, reg, rng, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy on faces and non-faces, smooth-L1 on the offsets of faces and parts; random mirror."""
    flip = rng.random(len(label)) < 0.5
    x = np.where(flip[:, None, None, None], crops[:, :, ::-1], crops)
    reg = reg.copy()
    # Mirroring swaps the left and right edges: x1' = -x2, x2' = -x1 in offsets relative to the side.
    reg[flip] = np.column_stack([-reg[flip, 2], reg[flip, 1], -reg[flip, 0], reg[flip, 3]])
    logit, out = forward(net, to_input(x).to(device))
    target = torch.from_numpy(label.astype(np.float32)).to(device)
    scored, boxed = target >= 0, target != 0
    cls_loss = F.binary_cross_entropy_with_logits(logit[scored], target[scored]) if scored.any() else 0 * logit[0]
    offsets = torch.from_numpy(reg).to(device)
    reg_loss = F.smooth_l1_loss(out[boxed], offsets[boxed], beta=0.05) if boxed.any() else 0 * out.sum()
    return cls_loss, reg_loss


def train_stage(
    net: nn.Module,
    data: CropSet,
    *,
    size: int,
    epochs: int = 6,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
) -> tuple[nn.Module, list[dict]]:
    """Fine-tune P-net (``size`` 12) or R-net (24) on ``data``; returns it (eval mode, CPU) and per-epoch losses."""
    forward = _pnet_forward if size == 12 else rnet_logits
    crops = data.crops
    if size != crops.shape[1]:
        crops = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops])
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    history = []
    for epoch in range(epochs):
        order = rng.permutation(len(data))
        sums = np.zeros(3)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            cls_loss, reg_loss = _batch_loss(net, forward, crops[idx], data.label[idx], data.reg[idx], rng, device)
            loss = cls_loss + 0.5 * reg_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sums += [float(cls_loss.detach()), float(reg_loss.detach()), 1]
        sched.step()
        history.append({"epoch": epoch + 1, "cls_loss": float(sums[0] / sums[2]), "reg_loss": float(sums[1] / sums[2])})
        log.info("%s epoch %d: cls %.4f, box %.4f", "P-net" if size == 12 else "R-net", epoch + 1, *sums[:2] / sums[2])
    return net.cpu().eval(), history
