"""Facial expression from a user's ONNX classifier: a pluggable backend, no model shipped.

No registry package ships a facial-expression model with a clear licence and a file that loads without pickle, so
this project includes none and never guesses an expression. :class:`ExpressionModel` runs *your* ONNX classifier
(for example one trained on FER-2013 / AffectNet labels, under a licence you have) through OpenCV's dnn module
(``cv2.dnn.readNetFromONNX``: a protobuf graph, no pickle) on face crops cut from the detector's boxes; without a
model file it raises a :class:`FileNotFoundError` that says so.

The preprocessing is the model's, given as parameters: input size, grey or colour (RGB or BGR order), scale and
mean (``blob = (pixels - mean) * scale``). The output is read as one score per label; ``softmax=True`` turns logits
into probabilities (set it to false for a model whose last layer already is a softmax).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

EXPRESSION_COLUMNS = ("expression", "expression_prob")


class ExpressionModel:
    """A facial-expression ONNX classifier run on face crops.

    Parameters
    ----------
    model_path : path
        The ONNX file (required: none ships with the project).
    labels : sequence of str
        One name per model output, in output order (e.g. ``["neutral", "happy", "sad", ...]``).
    input_size : (int, int)
        Width and height the model takes.
    grayscale : bool
        Feed one grey channel instead of three.
    bgr : bool
        Colour models: channels in BGR order (OpenCV-trained) instead of RGB.
    scale, mean : float
        ``(pixel - mean) * scale`` on 0..255 pixels.
    softmax : bool
        Apply a softmax to the outputs (logits); false when the model outputs probabilities.
    margin : float
        Crop margin around each face box, as a fraction of its size.
    """

    def __init__(
        self,
        model_path: str | Path | None,
        labels: Sequence[str],
        *,
        input_size: tuple[int, int] = (64, 64),
        grayscale: bool = False,
        bgr: bool = False,
        scale: float = 1 / 255.0,
        mean: float = 0.0,
        softmax: bool = True,
        margin: float = 0.1,
    ) -> None:
        self.model_path = model_path
        self.labels = list(labels)
        self.input_size = tuple(input_size)
        self.grayscale = grayscale
        self.bgr = bgr
        self.scale = scale
        self.mean = mean
        self.softmax = softmax
        self.margin = margin
        if model_path is None or not Path(model_path).is_file():
            raise FileNotFoundError(
                f"no facial-expression model ({'model_path=' + str(model_path) if model_path else 'no model_path'}): "
                "the project ships none (no registry package has one with a clear licence and a pickle-free file); "
                "pass model_path= to an ONNX classifier you may use and labels= its outputs' names"
            )
        if not self.labels:
            raise ValueError("labels: one name per model output is needed")
        self.net_ = cv2.dnn.readNetFromONNX(str(model_path))

    def _blob(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        images = []
        for crop in crops:
            img = cv2.resize(np.ascontiguousarray(crop[..., :3]), self.input_size, interpolation=cv2.INTER_AREA)
            if self.grayscale:
                img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None]
            elif self.bgr:
                img = img[..., ::-1]
            images.append((img.astype(np.float32) - self.mean) * self.scale)
        return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2), dtype=np.float32)

    def predict(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Scores (n, len(labels)) of RGB uint8 face crops: probabilities when ``softmax`` (or the model) makes them."""
        if len(crops) == 0:
            return np.zeros((0, len(self.labels)))
        rows = []
        for crop in crops:  # one at a time: many exported graphs fix the batch size at 1
            self.net_.setInput(self._blob([crop]))
            rows.append(np.asarray(self.net_.forward(), dtype=np.float64).reshape(-1))
        out = np.stack(rows)
        if out.shape[1] != len(self.labels):
            raise ValueError(f"the model gives {out.shape[1]} outputs per face; labels has {len(self.labels)}")
        if self.softmax:
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        return out

    def expressions(self, image: np.ndarray, boxes: np.ndarray) -> list[dict[str, object]]:
        """:data:`EXPRESSION_COLUMNS` per face box (n, 4) of an RGB image: the top label and its score."""
        scores = self.predict(crop_faces(image, boxes, self.margin))
        return [{"expression": self.labels[int(np.argmax(s))], "expression_prob": float(np.max(s))} for s in scores]


def crop_faces(image: np.ndarray, boxes: np.ndarray, margin: float = 0.1) -> list[np.ndarray]:
    """Face crops of ``image`` (h, w, 3) from x1, y1, x2, y2 boxes grown by ``margin`` of their size, clipped."""
    h, w = image.shape[:2]
    crops = []
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        mx, my = margin * (x2 - x1), margin * (y2 - y1)
        left, top = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
        right, bottom = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
        crops.append(image[top : max(bottom, top + 1), left : max(right, left + 1)])
    return crops
