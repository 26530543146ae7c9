"""A second proposal source for the artwork detector: MTCNN's P-net and R-net fine-tuned on artwork faces.

Why. :class:`vision.artface.ArtFaceDetector` can only re-score faces YuNet proposes; cartoon and line-drawn faces
(non-human proportions, flat colours, outlines only) often get no YuNet box at all. This module runs MTCNN's first
two stages, fine-tuned on painted, stylised, stretched and turned faces (:mod:`vision.train_cascade`), as a second,
independent proposer. Its boxes are merged with YuNet's before the O-net re-scores them all.

What it runs. :class:`CascadeProposer` is :class:`vision.detect.MTCNNDetector` (its batched P-net pyramid and R-net
crop code) with the fine-tuned P-net/R-net weights and no O-net: it returns R-net's boxes (square, MTCNN's
convention after its box regression) with R-net's score. MTCNN's O-net landmarks are not computed; each box gets the
5-point template of an upright frontal face (:func:`template_landmarks`), which is where downstream alignment puts
the points anyway.

Weights: a NumPy ``.npz`` (``pnet.*`` and ``rnet.*`` arrays, JSON ``__meta__``), read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vision.detect import MTCNNDetector
from vision.detector_base import weights_file

log = logging.getLogger(__name__)

DEFAULT_CASCADE_WEIGHTS = Path(__file__).resolve().parent / "weights" / "artface_cascade.npz"

# The 5-point template of an upright frontal face (eyes, nose tip, mouth corners) as fractions of a square face box
# (the usual 112 x 112 alignment template divided by 112).
TEMPLATE = np.array(
    [[0.3419, 0.4616], [0.6565, 0.4598], [0.5003, 0.6405], [0.3710, 0.8247], [0.6315, 0.8232]], dtype=np.float64
)


def template_landmarks(boxes: np.ndarray) -> np.ndarray:
    """(n, 5, 2) landmark positions of the frontal-face template placed in each box (n, 4)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    size = np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)[:, None, :]
    return (b[:, None, :2] + TEMPLATE[None] * size).astype(np.float32)


def pnet_logits(pnet: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """P-net's face logit (b, H, W) (face minus not-face) and box regression (b, 4, H, W), before the softmax."""
    y = pnet.pool1(pnet.prelu1(pnet.conv1(x)))
    y = pnet.prelu3(pnet.conv3(pnet.prelu2(pnet.conv2(y))))
    two = pnet.conv4_1(y)
    return two[:, 1] - two[:, 0], pnet.conv4_2(y)


def rnet_logits(rnet: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """R-net's face logit (n,) and box regression (n, 4) on (n, 3, 24, 24) crops, before the softmax."""
    y = rnet.pool1(rnet.prelu1(rnet.conv1(x)))
    y = rnet.pool2(rnet.prelu2(rnet.conv2(y)))
    y = rnet.prelu3(rnet.conv3(y))
    y = rnet.prelu4(rnet.dense4(y.permute(0, 3, 2, 1).reshape(y.shape[0], -1)))
    two = rnet.dense5_1(y)
    return two[:, 1] - two[:, 0], rnet.dense5_2(y)


def mtcnn_start() -> tuple[nn.Module, nn.Module]:
    """facenet-pytorch's P-net and R-net with the weights its wheel ships (MIT; read with ``weights_only=True``)."""
    import facenet_pytorch
    from facenet_pytorch.models.mtcnn import PNet, RNet

    data = Path(facenet_pytorch.__file__).resolve().parent / "data"
    nets = []
    for cls, name in ((PNet, "pnet.pt"), (RNet, "rnet.pt")):
        net = cls(pretrained=False)
        net.load_state_dict(torch.load(data / name, map_location="cpu", weights_only=True))
        nets.append(net)
    return nets[0], nets[1]


def save_cascade(pnet: nn.Module, rnet: nn.Module, path: str | Path, meta: dict) -> Path:
    """Write both networks' parameters and ``meta`` (JSON) to an ``.npz`` that loads without pickle."""
    arrays = {}
    for prefix, net in (("pnet", pnet), ("rnet", rnet)):
        for k, v in net.state_dict().items():
            arrays[f"{prefix}.{k}"] = v.detach().cpu().numpy().astype(np.float32)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def load_cascade(path: str | Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """The ``pnet`` and ``rnet`` state dicts and the metadata of an ``.npz`` written by :func:`save_cascade`."""
    states: dict[str, dict[str, torch.Tensor]] = {"pnet": {}, "rnet": {}}
    with np.load(Path(path), allow_pickle=False) as data:
        meta = json.loads(bytes(data["__meta__"]).decode())
        for key in data.files:
            if key == "__meta__":
                continue
            prefix, name = key.split(".", 1)
            states[prefix][name] = torch.from_numpy(data[key].copy())
    return states, meta


class CascadeProposer(MTCNNDetector):
    """Fine-tuned MTCNN P-net + R-net as a face proposer (boxes and R-net scores; template landmarks).

    Parameters
    ----------
    detection_size : int
        Long side each image is shrunk to for the P-net pyramid (sets the speed: the pyramid grows with its square).
    min_face_size : float
        Smallest face searched for, in pixels of the shrunk image.
    thresholds : sequence of 2 floats
        P-net and R-net score cut-offs.
    factor : float
        Pyramid scale step.
    min_prob : float
        Cut-off on R-net's score for a returned proposal.
    weights_path : str or Path, optional
        The ``.npz`` weights; None uses ``vision/weights/artface_cascade.npz``.
    device : str
        Where the networks run (as :class:`vision.detect.MTCNNDetector`).
    """

    def __init__(
        self,
        *,
        detection_size: int = 480,
        min_face_size: int = 16,
        thresholds: Sequence[float] = (0.5, 0.5),
        factor: float = 0.709,
        min_prob: float = 0.5,
        batch_size: int = 8,
        weights_path: str | Path | None = None,
        device: str = "cpu",
    ):
        super().__init__(
            detection_size=detection_size,
            min_face_size=min_face_size,
            thresholds=(*tuple(thresholds), 0.0),
            factor=factor,
            min_prob=min_prob,
            batch_size=batch_size,
            device=device,
        )
        self.weights_path = weights_path

    def _build(self) -> None:
        if getattr(self, "mtcnn_", None) is not None:
            return
        path = weights_file(self.weights_path, DEFAULT_CASCADE_WEIGHTS, "cascade_weights", "cascade")
        super()._build()
        states, self.meta_ = load_cascade(path)
        self.mtcnn_.pnet.load_state_dict(states["pnet"])
        self.mtcnn_.rnet.load_state_dict(states["rnet"])
        self.mtcnn_.eval()

    def use_networks(self, pnet: nn.Module, rnet: nn.Module) -> CascadeProposer:
        """Run with these (in-memory) networks instead of a weights file (training: hard-negative mining)."""
        MTCNNDetector._build(self)
        self.mtcnn_.pnet, self.mtcnn_.rnet = pnet.eval(), rnet.eval()
        self.meta_ = {}
        return self

    @torch.inference_mode()
    def pnet_boxes(self, image: np.ndarray) -> np.ndarray:
        """P-net's square boxes (n, 4) on one image at its own size (no R-net): the proposals R-net is trained on."""
        self._build()
        boxes, _ = self._pnet_stage([image], [(int(image.shape[0]), int(image.shape[1]))])
        return boxes[:, :4].cpu().numpy().astype(np.float64)

    def _detect_arrays(self, imgs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        sizes = [(int(a.shape[0]), int(a.shape[1])) for a in imgs]
        boxes, inds = self._pnet_stage(imgs, sizes)
        if len(boxes):
            boxes, inds, _ = self._refine(imgs, sizes, boxes, inds, 24, self.mtcnn_.rnet, float(self.thresholds[1]))
        boxes_np = boxes.cpu().numpy().reshape(-1, 5)
        inds_np = inds.cpu().numpy()
        out = []
        for i in range(len(imgs)):
            b = boxes_np[inds_np == i]
            out.append((b, template_landmarks(b[:, :4])))
        return out
