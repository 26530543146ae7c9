"""What every face detector shares: the result type, the input checks and the order of work.

A detector is a :class:`FaceDetector`: parameters in ``__init__`` (plain values from ``conf/vision/detector/``),
models built lazily on the first call (so a detector pickles cheaply to a worker process or Ray actor and rebuilds
there), and one public method, :meth:`FaceDetector.detect`, from a batch of upright RGB uint8 images of any sizes to
one :class:`FaceDetections` per image, in the image's own pixels. Subclasses implement ``_check_params`` (errors name
the ``vision.detector.*`` key), ``_build`` and ``_detect_batch``. MTCNN, YuNet, the artface re-scorer and the ensemble
all follow it (docs/ARCHITECTURE.md: how to add a detector).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CONFIG_KEY = "vision.detector"


@dataclass(frozen=True)
class FaceDetections:
    """The faces found in one image.

    Attributes
    ----------
    boxes : np.ndarray
        (n, 4) float32 ``x1, y1, x2, y2`` in the pixels of the image given to the detector, clipped to the image
        (x2/y2 are the right/bottom edges, so ``x2 - x1`` is the box width).
    probs : np.ndarray
        (n,) float32 face probabilities in [0, 1], in descending order.
    landmarks : np.ndarray
        (n, 5, 2) float32 ``(x, y)`` in the same pixels: left eye, right eye, nose, mouth left, mouth right. Not
        clipped (a landmark of a face cut by the border may lie outside the image).
    """

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> FaceDetections:
        """No face: zero rows with the usual shapes and dtypes."""
        return cls(
            boxes=np.zeros((0, 4), dtype=np.float32),
            probs=np.zeros((0,), dtype=np.float32),
            landmarks=np.zeros((0, 5, 2), dtype=np.float32),
        )

    def __len__(self) -> int:
        return int(self.probs.shape[0])


def check_image(image: Any, k: int, owner: str) -> tuple[int, int]:
    """``(height, width)`` of image ``k`` of a batch, or a ValueError naming the detector and what is wrong."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}".strip()
        raise ValueError(f"{owner}.detect: image {k} must be an (H, W, 3) uint8 RGB array, got {desc}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{owner}.detect: image {k} is empty (shape {image.shape})")
    return int(image.shape[0]), int(image.shape[1])


def weights_file(path: str | Path | None, default: Path, name: str, what: str) -> Path:
    """The weights file ``vision.detector.<name>`` names (``default`` when null); raise naming the key if absent."""
    resolved = Path(path).expanduser() if path is not None else default
    if not resolved.is_file():
        raise FileNotFoundError(f"{CONFIG_KEY}.{name}: no {what} weights at {resolved}")
    return resolved


def check_probability(value: Any, name: str) -> None:
    """``vision.detector.<name>`` must be a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{CONFIG_KEY}.{name} must be in [0, 1], got {value!r}")


class FaceDetector(ABC):
    """Base of the face detectors: check parameters, check images, build models once, detect a batch."""

    def detect(self, images: Sequence[np.ndarray]) -> list[FaceDetections]:
        """Detect faces in each image.

        Parameters
        ----------
        images : sequence of np.ndarray
            Upright RGB uint8 arrays of shape (H, W, 3), any sizes and aspect ratios.

        Returns
        -------
        list of FaceDetections
            One per input, in order; boxes (n, 4) x1y1x2y2 and landmarks (n, 5, 2) in the input's pixels, probs (n,)
            in descending order.
        """
        self._check_params()
        images = list(images)
        shapes = [check_image(img, k, type(self).__name__) for k, img in enumerate(images)]
        self._build()
        return self._detect_batch(images, shapes)

    def __getstate__(self) -> dict[str, Any]:
        # Built models (attributes ending in "_") are not pickled: a worker process or Ray actor rebuilds them on
        # its first detect() (OpenCV's FaceDetectorYN does not pickle at all).
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_")}

    @abstractmethod
    def _check_params(self) -> None:
        """Raise ValueError naming the ``vision.detector.*`` key of a bad parameter."""

    @abstractmethod
    def _build(self) -> None:
        """Load the models once (a no-op when they are loaded)."""

    @abstractmethod
    def _detect_batch(self, images: list[np.ndarray], shapes: list[tuple[int, int]]) -> list[FaceDetections]:
        """Detect in checked images; ``shapes`` are their ``(height, width)``."""
