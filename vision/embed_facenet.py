"""facenet-pytorch's ``InceptionResnetV1`` (512-d face embeddings) on a torch device: weight loading (offline with
``weights_path``) and the :class:`FacenetEmbedder` backend (``vision/embedder=facenet``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vision.face_align import check_image, concat_crops, crop_faces, l2_normalise, split_rows

if TYPE_CHECKING:
    import torch

    from vision.detect import FaceDetections

log = logging.getLogger(__name__)

#: facenet-pytorch's download addresses and the file names it caches them under (``$TORCH_HOME/checkpoints/``).
FACENET_WEIGHTS = {
    "vggface2": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    "casia-webface": (
        "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt"
    ),
}


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
        return crop_faces(check_image(image), detections.boxes, self.image_size, self.margin)

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """Embed (n, S, S, 3) uint8 RGB crops; returns (n, 512) float32 unit vectors."""
        import torch

        from vision.device import host_to_device

        crops = np.asarray(crops)
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with torch.inference_mode():
            for i in range(0, len(crops), int(self.batch_size)):
                x = torch.from_numpy(np.ascontiguousarray(crops[i : i + int(self.batch_size)]))
                x = host_to_device(x, self.device_).permute(0, 3, 1, 2).float()
                x = (x - 127.5) / 128.0  # facenet-pytorch's fixed_image_standardization
                out.append(self.model_(x).float().cpu().numpy())
        return l2_normalise(np.concatenate(out))

    def embed(self, image: np.ndarray, detections: FaceDetections) -> np.ndarray:
        """(n_faces, 512) float32 unit vectors for the detected faces of one upright RGB image; (0, 512) if none."""
        return self.embed_crops(self.crop(image, detections))

    def embed_many(self, images: Sequence[np.ndarray], detections: Sequence[FaceDetections]) -> list[np.ndarray]:
        """Embed the faces of several images in shared forward passes; one (n_i, 512) array per image."""
        crops = [self.crop(image, det) for image, det in zip(images, detections, strict=True)]
        return split_rows(self.embed_crops(concat_crops(crops, self.image_size)), [len(c) for c in crops], self.dim)
