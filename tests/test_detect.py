"""The face detector on real photographs: box mapping, mixed-size batches, empty results, devices, cut-offs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from vision.detect import FaceDetections, MTCNNDetector
from vision.device import resolve_device

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO / "assets_sample" / "images" / "photos"


def _load(name: str) -> np.ndarray:
    path = PHOTOS / name
    assert path.is_file(), f"{path} is missing (a shipped test image)"
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The test images are tiny: one torch thread is as fast, and immune to OpenMP spin-waiting on a busy runner."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    return _load("matplotlib_grace_hopper.jpg")


@pytest.fixture(scope="module")
def astronaut_rgb() -> np.ndarray:
    return _load("skimage_astronaut.png")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(w, h) bicubic resize, as a user's larger or smaller copy of the same picture would be."""
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BICUBIC))


def _pad(img: np.ndarray, top: int, left: int, height: int, width: int, value: int = 90) -> np.ndarray:
    out = np.full((height, width, 3), value, dtype=np.uint8)
    out[top : top + img.shape[0], left : left + img.shape[1]] = img
    return out


def _assert_well_formed(det: FaceDetections, height: int, width: int) -> None:
    n = len(det)
    assert det.boxes.shape == (n, 4) and det.boxes.dtype == np.float32
    assert det.probs.shape == (n,) and det.probs.dtype == np.float32
    assert det.landmarks.shape == (n, 5, 2) and det.landmarks.dtype == np.float32
    assert np.all((det.probs >= 0) & (det.probs <= 1))
    assert np.all(np.diff(det.probs) <= 0), "probabilities are sorted in descending order"
    assert np.all(det.boxes[:, [0, 2]] >= 0) and np.all(det.boxes[:, [0, 2]] <= width)
    assert np.all(det.boxes[:, [1, 3]] >= 0) and np.all(det.boxes[:, [1, 3]] <= height)


def test_finds_the_labeled_faces(astronaut_rgb, hopper):
    labels = pd.read_csv(REPO / "assets_sample" / "labels.csv")
    det = MTCNNDetector(detection_size=384, min_face_size=20, device="cpu")
    for img, image_id in (
        (astronaut_rgb, "photos/skimage_astronaut.png"),
        (hopper, "photos/matplotlib_grace_hopper.jpg"),
    ):
        (found,) = det.detect([img])
        _assert_well_formed(found, *img.shape[:2])
        truth = labels.loc[labels["image_id"] == image_id, ["x1", "y1", "x2", "y2"]].to_numpy(float)
        assert len(found) == len(truth) == 1, image_id
        assert _iou(found.boxes[0], truth[0]) > 0.5, image_id
        lm = found.landmarks[0]
        x1, y1, x2, y2 = found.boxes[0]
        assert np.all((lm[:, 0] > x1) & (lm[:, 0] < x2) & (lm[:, 1] > y1) & (lm[:, 1] < y2)), "landmarks in the face"
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0], "left eye/mouth corner left of the right ones"
        assert lm[:2, 1].max() < lm[2, 1] < lm[3:, 1].min(), "eyes above the nose above the mouth"


def test_boxes_are_in_original_pixels(astronaut_rgb):
    """The same picture at 1x and 2x (and a non-square one): boxes and landmarks scale with the image."""
    det = MTCNNDetector(detection_size=256, min_face_size=20, device="cpu")
    wide = _pad(_resize(astronaut_rgb, (200, 200)), 0, 120, 200, 330)  # landscape: sx and sy both exercised
    for img in (_resize(astronaut_rgb, (256, 256)), wide):
        h, w = img.shape[:2]
        big = _resize(img, (2 * w, 2 * h))
        # detection_size=256 keeps the small image as it is and shrinks the big one by 2 (or more for ``wide``):
        # the detector sees nearly the same pixels and must report boxes 2x as large.
        small_det, big_det = det.detect([img, big])
        assert len(small_det) == len(big_det) == 1
        np.testing.assert_allclose(big_det.boxes, 2 * small_det.boxes, atol=0.04 * w)
        np.testing.assert_allclose(big_det.landmarks, 2 * small_det.landmarks, atol=0.04 * w)
        _assert_well_formed(big_det, 2 * h, 2 * w)


@pytest.mark.slow  # ~2-10 s on 2 shared cores: every new input shape costs oneDNN a fresh convolution primitive
def test_mixed_sizes_in_one_batch_equal_one_at_a_time(astronaut_rgb, hopper):
    """Different sizes and orientations share a padded canvas; results (and their order) must not change.

    The detector groups images by orientation and size internally, so this also checks that input order is kept.
    """
    images = [
        _resize(astronaut_rgb, (256, 256)),
        _resize(hopper, (219, 256)),
        _pad(_resize(astronaut_rgb, (150, 150)), 10, 106, 170, 256),  # landscape, face near the right edge
        _pad(_resize(hopper, (160, 187)), 40, 0, 256, 171),  # portrait, face near the left edge
        _resize(hopper, (197, 233)),  # odd sizes (partial pooling windows at the border)
        _pad(_resize(astronaut_rgb, (150, 150)), 0, 0, 161, 157),
        _resize(astronaut_rgb, (400, 400)),  # larger than detection_size: resized first
    ]
    # Low thresholds keep many candidates alive, so any change from padding would show in the output.
    det = MTCNNDetector(
        detection_size=256, min_face_size=20, thresholds=(0.5, 0.5, 0.5), min_prob=0.0, batch_size=8, device="cpu"
    )
    batched = det.detect(images)
    alone = [det.detect([img])[0] for img in images]
    assert sum(len(d) for d in alone) >= len(images), "the check needs faces to compare"
    for k, (b, a) in enumerate(zip(batched, alone, strict=True)):
        assert len(b) == len(a), f"image {k}: {len(b)} faces batched vs {len(a)} alone"
        np.testing.assert_allclose(b.boxes, a.boxes, atol=1e-2, err_msg=f"image {k}")
        np.testing.assert_allclose(b.probs, a.probs, atol=1e-4, err_msg=f"image {k}")
        np.testing.assert_allclose(b.landmarks, a.landmarks, atol=1e-2, err_msg=f"image {k}")


def test_no_face_is_an_empty_result():
    det = MTCNNDetector(detection_size=320, device="cpu")
    blank = np.full((240, 320, 3), 128, dtype=np.uint8)
    tiny = np.zeros((5, 7, 3), dtype=np.uint8)  # smaller than P-net's 12 px window: no pyramid at all
    results = det.detect([blank, tiny])
    assert len(results) == 2
    for r in results:
        assert isinstance(r, FaceDetections) and len(r) == 0
        _assert_well_formed(r, 240, 320)
    assert det.detect([]) == []
    empty = FaceDetections.empty()
    assert empty.boxes.shape == (0, 4) and empty.probs.shape == (0,) and empty.landmarks.shape == (0, 5, 2)


def test_min_prob_cut_off(astronaut_rgb, hopper):
    scene = _pad(_resize(hopper, (128, 150)), 10, 10, 210, 450)
    scene[30:158, 200:328] = _resize(astronaut_rgb, (128, 128))
    images = [scene, _resize(astronaut_rgb, (256, 256))]
    low = MTCNNDetector(detection_size=450, thresholds=(0.5, 0.5, 0.5), min_prob=0.0, device="cpu").detect(images)
    probs = np.unique(np.concatenate([d.probs for d in low]))
    assert len(probs) >= 2, "the check needs detections on both sides of the cut-off"
    cut_off = float(probs[len(probs) // 2 - 1] + probs[len(probs) // 2]) / 2
    cut = MTCNNDetector(detection_size=450, thresholds=(0.5, 0.5, 0.5), min_prob=cut_off, device="cpu").detect(images)
    assert 0 < sum(len(c) for c in cut) < len(np.concatenate([d.probs for d in low]))
    for a, c in zip(low, cut, strict=True):
        keep = a.probs >= cut_off
        assert len(c) == int(keep.sum())
        np.testing.assert_allclose(c.boxes, a.boxes[keep], atol=1e-4)
        np.testing.assert_allclose(c.probs, a.probs[keep])


def test_device_handling(astronaut_rgb):
    det = MTCNNDetector(detection_size=256, device="cpu")
    assert not hasattr(det, "mtcnn_"), "the model is built on the first detect, not in __init__"
    small = _resize(astronaut_rgb, (128, 128))
    det.detect([small])
    assert det.device_ == torch.device("cpu")
    assert isinstance(det.mtcnn_, torch.nn.Module)
    assert {p.device.type for p in det.mtcnn_.parameters()} == {"cpu"}
    first = det.mtcnn_
    det.detect([small])
    assert det.mtcnn_ is first, "the model is built once"

    auto = MTCNNDetector(detection_size=256, device="auto")
    auto.detect([small])
    assert auto.device_ == resolve_device("auto")
    if not torch.cuda.is_available():
        assert auto.device_.type in {"cpu", "mps"}
        with pytest.raises(ValueError, match="CUDA"):
            MTCNNDetector(device="cuda").detect([small])


def test_bad_input_and_config_are_named(astronaut_rgb):
    det = MTCNNDetector(detection_size=256, device="cpu")
    with pytest.raises(ValueError, match="image 1"):
        det.detect([astronaut_rgb, astronaut_rgb[..., 0]])
    with pytest.raises(ValueError, match="image 0"):
        det.detect([astronaut_rgb.astype(np.float32)])
    for key, value in [("detection_size", 5), ("thresholds", (0.6, 0.7)), ("min_prob", 1.5), ("factor", 1.0)]:
        with pytest.raises(ValueError, match=f"vision.detector.{key}"):
            MTCNNDetector(**{key: value}, device="cpu").detect([astronaut_rgb])


def test_config_instantiates_the_detector():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "conf" / "vision" / "detector" / "mtcnn.yaml")
    assert "device" not in cfg, "the device is the caller's choice"
    det = instantiate(cfg, device="cpu")
    assert isinstance(det, MTCNNDetector)
    assert det.detection_size == cfg.detection_size and det.min_prob == cfg.min_prob
    assert tuple(det.thresholds) == tuple(cfg.thresholds)


def test_pnet_on_a_padded_canvas_equals_pnet_alone():
    """P-net scores and box offsets inside each image do not depend on the canvas it is padded into.

    Odd sizes leave a partial 2x2 pooling window at the border, where padding would otherwise leak in.
    """
    from facenet_pytorch import MTCNN

    from vision.detect import _pnet_forward

    pnet = MTCNN(device="cpu").pnet.eval()
    rng = np.random.default_rng(0)
    sizes = [(37, 51), (64, 30), (45, 45)]
    images = [torch.from_numpy(rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32)) for h, w in sizes]
    canvas = torch.zeros((len(sizes), 3, 64, 64))
    for j, (img, (h, w)) in enumerate(zip(images, sizes, strict=True)):
        canvas[j, :, :h, :w] = img[0]
    with torch.inference_mode():
        reg_b, prob_b = _pnet_forward(pnet, canvas, sizes)
        for j, (img, (h, w)) in enumerate(zip(images, sizes, strict=True)):
            reg_a, prob_a = _pnet_forward(pnet, img, [(h, w)])
            mh, mw = prob_a.shape[1:]
            assert (mh, mw) == ((h - 2 + 1) // 2 - 4, (w - 2 + 1) // 2 - 4)
            torch.testing.assert_close(prob_b[j, :mh, :mw], prob_a[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(reg_b[j, :, :mh, :mw], reg_a[0], atol=1e-5, rtol=1e-5)
            assert torch.all(prob_b[j, mh:, :] == 0) and torch.all(prob_b[j, :, mw:] == 0), "no score off the image"
