"""Training data and training loop for the artwork face re-scorer (:mod:`vision.artface`).

Data. Every training image is used as it is and in stylised copies that make paintings look drawn, cartoonish
or printed (:data:`STYLES`): greyscale, a cartoon filter (two bilateral passes, colours posterised, dark adaptive-
threshold edges), line art (edges only, black on white), k-means colour quantisation with a hue rotation (cartoon
skin is yellow, green or blue as often as pink), and an edge-preserving filter. YuNet runs on each copy at the
detector's proposal settings; each proposal becomes a 48x48 crop (as :class:`vision.artface.ArtFaceDetector` cuts
it) with

- a class: face when its IoU with a label box (rescaled to YuNet's box size, see below) is >= ``pos_iou``, not a
  face below ``neg_iou``, ignored for the score in between;
- a box target (MTCNN's offsets relative to the crop's side) whenever the IoU is >= ``neg_iou``.

Face-free synthetic images (:func:`synthetic_background`: gradients, vignettes, titles, shapes) add negatives of
the kind key art has around its faces and paintings lack.

Label boxes in other conventions (paintings_dev: the whole head, 1.3x a photo detector's box) are first rescaled
about their centres by one factor per axis fitted on the training images (:func:`vision.box_convention.fit_box_scale`
with YuNet at its default cut-off), so the detector keeps YuNet's box size and downstream face sizes keep their
meaning.

Training starts from facenet-pytorch's O-net weights (MIT; loaded with ``weights_only=True``): binary cross-entropy
on the stacked score plus smooth-L1 on the box offsets, Adam, random mirror of the crops. A fixed seed and one
thread reproduce the shipped weights on the CPU; on a GPU the numbers differ in the last digits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vision.artface import ArtNet, crop_squares, score_logit, square_boxes, to_input
from vision.box_convention import rescale_labels
from vision.evaluate import box_iou

log = logging.getLogger(__name__)


def _grey(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def _cartoon(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    smooth = cv2.bilateralFilter(cv2.bilateralFilter(img, 9, 75, 75), 9, 75, 75)
    levels = int(rng.integers(3, 6))
    step = 256 // levels
    flat = (smooth // step * step + step // 2).astype(np.uint8)
    grey = cv2.medianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 5)
    edges = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 5)
    return cv2.bitwise_and(flat, flat, mask=edges)


def _lineart(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    grey = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    lines = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 11, int(rng.integers(3, 8)))
    return cv2.cvtColor(lines, cv2.COLOR_GRAY2RGB)


def _quantise_hue(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k = int(rng.integers(4, 9))
    pixels = img.reshape(-1, 3).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_MAX_ITER + cv2.TERM_CRITERIA_EPS, 8, 1.0)
    cv2.setRNGSeed(int(rng.integers(1 << 30)))
    _, assign, centres = cv2.kmeans(pixels, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    flat = centres.astype(np.uint8)[assign.ravel()].reshape(img.shape)
    hsv = cv2.cvtColor(flat, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = ((hsv[..., 0].astype(int) + int(rng.integers(0, 180))) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _edge_preserving(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return cv2.edgePreservingFilter(img, flags=1, sigma_s=float(rng.uniform(30, 90)), sigma_r=0.4)


STYLES: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "original": lambda img, rng: img,
    "grey": _grey,
    "cartoon": _cartoon,
    "lineart": _lineart,
    "quantise_hue": _quantise_hue,
    "edge_preserving": _edge_preserving,
}


def synthetic_background(rng: np.random.Generator, shape: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A face-free image like the parts of key art around the faces: a gradient, vignette or smooth noise ground,
    titles and taglines in random fonts, flat shapes and lines, sometimes blurred. Used as negatives only."""
    h, w = shape
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    kind = rng.integers(3)
    if kind == 0:  # linear gradient at a random angle
        a = rng.uniform(0, np.pi)
        t = (np.cos(a) * np.arange(w)[None, :] + np.sin(a) * np.arange(h)[:, None]) / (w + h)
    elif kind == 1:  # radial vignette
        yy, xx = np.mgrid[0:h, 0:w]
        t = np.hypot((xx - rng.uniform(0, w)) / w, (yy - rng.uniform(0, h)) / h)
    else:  # smooth noise
        t = cv2.resize(rng.random((int(rng.integers(2, 8)), int(rng.integers(2, 8)))), (w, h), cv2.INTER_CUBIC)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    img = (c1[None, None] * (1 - t[..., None]) + c2[None, None] * t[..., None]).astype(np.uint8)
    for _ in range(int(rng.integers(0, 6))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        shape_kind = rng.integers(3)
        if shape_kind == 0:
            cv2.rectangle(img, p1, p2, colour, int(rng.choice([-1, 2, 5])))
        elif shape_kind == 1:
            axes = (int(rng.integers(5, w // 3)), int(rng.integers(5, h // 3)))
            cv2.ellipse(img, p1, axes, float(rng.uniform(0, 180)), 0, 360, colour, int(rng.choice([-1, 3])))
        else:
            cv2.line(img, p1, p2, colour, int(rng.integers(1, 8)))
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz0123456789"))
    for _ in range(int(rng.integers(1, 4))):
        text = "".join(rng.choice(letters, int(rng.integers(3, 16))))
        org = (int(rng.integers(0, w // 2)), int(rng.integers(20, h)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        font = int(rng.choice([0, 1, 2, 3, 4, 6, 7]))
        cv2.putText(img, text, org, font, float(rng.uniform(0.6, 3.5)), colour, int(rng.integers(1, 6)), cv2.LINE_AA)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(1, 6)))
    return img


@dataclass
class Samples:
    """Training crops: ``crops`` (n, 48, 48, 3) uint8, ``yunet_logit`` (n,), ``label`` (n,) 1 / 0 / -1 (ignored),
    ``reg`` (n, 4) box offsets, ``has_reg`` (n,) bool."""

    crops: np.ndarray
    yunet_logit: np.ndarray
    label: np.ndarray
    reg: np.ndarray
    has_reg: np.ndarray

    def __len__(self) -> int:
        return len(self.label)

    @classmethod
    def concat(cls, parts: Sequence[Samples]) -> Samples:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))


def image_samples(
    image: np.ndarray,
    proposals,
    gt_boxes: np.ndarray,
    *,
    context: float,
    pos_iou: float = 0.4,
    neg_iou: float = 0.25,
) -> Samples:
    """The training samples of one (stylised) image from its YuNet ``proposals`` and label boxes ``gt_boxes``
    (already in YuNet's box convention, the image's pixels)."""
    boxes = np.asarray(proposals.boxes, dtype=np.float64).reshape(-1, 4)
    squares = square_boxes(boxes, context)
    n = len(boxes)
    label, reg, has_reg = np.zeros(n, np.int8), np.zeros((n, 4), np.float32), np.zeros(n, bool)
    if len(gt_boxes) and n:
        iou = box_iou(boxes, gt_boxes)
        best = iou.argmax(axis=1)
        best_iou = iou[np.arange(n), best]
        label = np.where(best_iou >= pos_iou, 1, np.where(best_iou < neg_iou, 0, -1)).astype(np.int8)
        has_reg = best_iou >= neg_iou
        side = (squares[:, 2] - squares[:, 0])[:, None]
        reg = ((gt_boxes[best] - squares) / side).astype(np.float32)
    return Samples(
        crops=crop_squares(image, squares),
        yunet_logit=score_logit(proposals.probs).astype(np.float32),
        label=label,
        reg=reg,
        has_reg=has_reg,
    )


def build_samples(
    images: Sequence[tuple[np.ndarray, np.ndarray]],
    proposer,
    *,
    scale: tuple[float, float],
    context: float,
    styles: Sequence[str] = tuple(STYLES),
    seed: int = 0,
    **label_kwargs,
) -> Samples:
    """Samples from ``images`` (pairs of an RGB image and its label boxes (k, 4) in that image's pixels), each in
    every style of ``styles``; ``proposer`` is the YuNet detector at proposal settings; ``scale`` the (sx, sy) that
    takes label boxes to YuNet's convention."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    parts = []
    for k, (image, boxes) in enumerate(images):
        gt = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(gt):
            frame = pd.DataFrame(gt, columns=["x1", "y1", "x2", "y2"])
            gt = rescale_labels(frame, *scale)[["x1", "y1", "x2", "y2"]].to_numpy()
        for style in styles:
            styled = np.ascontiguousarray(STYLES[style](image, rng))
            parts.append(image_samples(styled, proposer.detect([styled])[0], gt, context=context, **label_kwargs))
        if (k + 1) % 50 == 0:
            log.info("training samples: %d/%d images, %d crops", k + 1, len(images), sum(len(p) for p in parts))
    return Samples.concat(parts)


def onet_start() -> ArtNet:
    """An :class:`ArtNet` with facenet-pytorch's O-net weights (the landmark head is dropped)."""
    import facenet_pytorch

    path = Path(facenet_pytorch.__file__).resolve().parent / "data" / "onet.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = ArtNet()
    missing, unexpected = net.load_state_dict({k: v for k, v in state.items() if k in net.state_dict()}, strict=False)
    if missing != ["stack"]:
        raise RuntimeError(f"O-net weights {path}: unexpected layout (missing {missing})")
    return net


def train(
    samples: Samples,
    *,
    epochs: int = 8,
    batch_size: int = 128,
    lr: float = 3e-4,
    reg_weight: float = 1.0,
    seed: int = 0,
    device: str = "cpu",
    net: ArtNet | None = None,
) -> tuple[ArtNet, list[dict]]:
    """Fine-tune ``net`` (default: :func:`onet_start`) on ``samples``; returns it (eval mode, CPU) and per-epoch
    mean losses."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = (net or onet_start()).to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    history = []
    for epoch in range(epochs):
        order = rng.permutation(len(samples))
        sums = np.zeros(3)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            crops = samples.crops[idx]
            reg = samples.reg[idx].copy()
            flip = rng.random(len(idx)) < 0.5
            crops = np.where(flip[:, None, None, None], crops[:, :, ::-1], crops)
            # Mirroring swaps the left and right edges: x1' = -x2, x2' = -x1 in offsets relative to the side.
            reg[flip] = np.column_stack([-reg[flip, 2], reg[flip, 1], -reg[flip, 0], reg[flip, 3]])
            x = to_input(crops).to(device)
            logit, out = net(x, torch.from_numpy(samples.yunet_logit[idx]).to(device))
            label = torch.from_numpy(samples.label[idx].astype(np.float32)).to(device)
            scored = label >= 0
            cls_loss = (
                F.binary_cross_entropy_with_logits(logit[scored], label[scored]) if scored.any() else 0.0 * logit.sum()
            )
            has = torch.from_numpy(samples.has_reg[idx]).to(device)
            target = torch.from_numpy(reg).to(device)
            reg_loss = F.smooth_l1_loss(out[has], target[has], beta=0.05) if has.any() else 0.0 * out.sum()
            loss = cls_loss + reg_weight * reg_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sums += [float(cls_loss.detach()), float(reg_loss.detach()), 1]
        sched.step()
        history.append({"epoch": epoch + 1, "cls_loss": float(sums[0] / sums[2]), "reg_loss": float(sums[1] / sums[2])})
        log.info("epoch %d: cls %.4f, box %.4f", epoch + 1, history[-1]["cls_loss"], history[-1]["reg_loss"])
    return net.cpu().eval(), history
