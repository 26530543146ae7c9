"""Procedural cartoon faces: training positives for the kind of face no painting shows.

paintings_dev holds painted people; TV cartoons and drawn key art have faces with non-human proportions: a round or
long head of one flat colour (pink, yellow, green, white), large eyes (white with a pupil, or dots), a small or no
nose, a mouth that is a line or an open shape, a dark outline or none, hair as a flat shape. :func:`cartoon_scene`
draws 1-4 such faces, each from random proportions and colours, on a face-free synthetic key-art ground
(:func:`vision.train_detector.synthetic_background`), and returns their boxes (the head from brow to chin and
cheek to cheek, the extent a photo detector's box covers), so the proposal cascade and the re-scorer learn the
pattern "two eyes above a mouth inside a head shape" without the photographic texture. No external data.
"""

from __future__ import annotations

import cv2
import numpy as np

from vision.train_detector import synthetic_background

SKINS = [(255, 220, 180), (255, 217, 15), (240, 190, 150), (150, 100, 70), (120, 200, 120), (250, 250, 250)]


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    if rng.random() < 0.7:
        base = np.array(SKINS[int(rng.integers(len(SKINS)))], dtype=float)
        return tuple(int(v) for v in np.clip(base + rng.normal(0, 12, 3), 0, 255))
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _eyes(img: np.ndarray, cx: float, cy: float, rx: float, ry: float, rng: np.random.Generator, line: int) -> None:
    gap = rx * rng.uniform(0.25, 0.5)
    ey = cy - ry * rng.uniform(0.05, 0.35)
    size = rx * rng.uniform(0.12, 0.35)
    big = rng.random() < 0.6  # white eyes with pupils, else dots
    look = rng.uniform(-0.4, 0.4, 2) * size
    for side in (-1, 1):
        ex = cx + side * gap
        if big:
            axes = (max(2, int(size)), max(2, int(size * rng.uniform(1.0, 1.5))))
            cv2.ellipse(img, (int(ex), int(ey)), axes, 0, 0, 360, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.ellipse(img, (int(ex), int(ey)), axes, 0, 0, 360, (0, 0, 0), max(1, line // 2), cv2.LINE_AA)
            pupil = (int(ex + look[0]), int(ey + look[1]))
            cv2.circle(img, pupil, max(1, int(size * rng.uniform(0.25, 0.5))), (0, 0, 0), -1, cv2.LINE_AA)
        else:
            cv2.circle(img, (int(ex), int(ey)), max(1, int(size * 0.4)), (0, 0, 0), -1, cv2.LINE_AA)


def _mouth(img: np.ndarray, cx: float, cy: float, rx: float, ry: float, rng: np.random.Generator, line: int) -> None:
    my = cy + ry * rng.uniform(0.35, 0.6)
    width = max(2, int(rx * rng.uniform(0.2, 0.6)))
    if rng.random() < 0.5:  # a smile or frown line
        start, end = (10, 170) if rng.random() < 0.8 else (190, 350)
        axes = (width, max(1, int(width * rng.uniform(0.2, 0.6))))
        cv2.ellipse(img, (int(cx), int(my)), axes, 0, start, end, (0, 0, 0), max(1, line), cv2.LINE_AA)
    else:  # an open mouth
        axes = (width, max(2, int(width * rng.uniform(0.3, 0.9))))
        colour = (int(rng.integers(60, 160)), 0, 0)
        cv2.ellipse(img, (int(cx), int(my)), axes, 0, 0, 360, colour, -1, cv2.LINE_AA)
        cv2.ellipse(img, (int(cx), int(my)), axes, 0, 0, 360, (0, 0, 0), max(1, line // 2), cv2.LINE_AA)
    if rng.random() < 0.6:  # a nose
        ny = (cy + my) / 2 - ry * 0.1
        cv2.ellipse(
            img,
            (int(cx), int(ny)),
            (max(1, int(rx * 0.08)), max(1, int(ry * 0.08))),
            0,
            0,
            180,
            (0, 0, 0),
            max(1, line // 2),
            cv2.LINE_AA,
        )


def draw_face(img: np.ndarray, cx: float, cy: float, rx: float, ry: float, rng: np.random.Generator) -> np.ndarray:
    """Draw one cartoon face (head half-axes ``rx``, ``ry``) into ``img``; returns its box (4,)."""
    line = int(rng.integers(0, 5))
    skin = _colour(rng)
    if rng.random() < 0.6:  # hair: a flat shape behind the top of the head
        hair = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.ellipse(img, (int(cx), int(cy - ry * 0.35)), (int(rx * 1.1), int(ry * 0.8)), 0, 180, 360, hair, -1)
    if rng.random() < 0.5:  # ears
        for side in (-1, 1):
            cv2.circle(img, (int(cx + side * rx), int(cy)), max(2, int(rx * 0.2)), skin, -1, cv2.LINE_AA)
    cv2.ellipse(img, (int(cx), int(cy)), (int(rx), int(ry)), 0, 0, 360, skin, -1, cv2.LINE_AA)
    if line:
        cv2.ellipse(img, (int(cx), int(cy)), (int(rx), int(ry)), 0, 0, 360, (0, 0, 0), line, cv2.LINE_AA)
    _eyes(img, cx, cy, rx, ry, rng, line)
    _mouth(img, cx, cy, rx, ry, rng, line)
    return np.array([cx - rx, cy - ry * 0.75, cx + rx, cy + ry])


def cartoon_scene(rng: np.random.Generator, shape: tuple[int, int] = (480, 640)) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic key-art ground with 1-4 non-overlapping cartoon faces; returns the RGB image and boxes (k, 4)."""
    img = synthetic_background(rng, shape).copy()
    h, w = shape
    boxes: list[np.ndarray] = []
    for _ in range(int(rng.integers(1, 5))):
        ry = rng.uniform(0.06, 0.3) * h
        rx = ry * np.exp(rng.uniform(-0.45, 0.35))
        cx, cy = rng.uniform(rx, w - rx), rng.uniform(ry, h - ry)
        box = np.array([cx - rx * 1.3, cy - ry * 1.3, cx + rx * 1.3, cy + ry * 1.3])
        if any(_overlaps(box, b) for b in boxes):
            continue
        boxes.append(draw_face(img, cx, cy, rx, ry, rng))
    return img, np.array(boxes).reshape(-1, 4)


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
