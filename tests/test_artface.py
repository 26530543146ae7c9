"""The artwork face detector (YuNet proposals re-scored by a fine-tuned O-net): shipped weights, defaults, training."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from vision.artface import DEFAULT_WEIGHTS, ArtFaceDetector, crop_squares, load_weights, save_weights, square_boxes
from vision.train_detector import STYLES, build_samples, onet_start, train
from vision.yunet import YuNetDetector


def shipped_detector(repo_root, **overrides) -> ArtFaceDetector:
    with initialize_config_dir(config_dir=str(repo_root / "conf"), version_base="1.3"):
        cfg = compose(config_name="annotate", overrides=["vision/detector=artface"])
    return instantiate(cfg.vision.detector, device="cpu", **overrides)


def test_shipped_weights_are_small_plain_arrays_with_a_card():
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 5e6
    assert DEFAULT_WEIGHTS.with_suffix(".md").is_file()
    with zipfile.ZipFile(DEFAULT_WEIGHTS) as z:  # an .npz of .npy arrays: nothing to unpickle
        assert all(name.endswith(".npy") for name in z.namelist())
    net, meta = load_weights(DEFAULT_WEIGHTS)
    assert {"box_scale", "context", "seed", "data"} <= set(meta)
    logit, reg = net(torch.zeros(2, 3, 48, 48), torch.zeros(2))
    assert logit.shape == (2,) and reg.shape == (2, 4)


def test_finds_the_astronaut_like_yunet(repo_root, astronaut):
    """The shipped defaults keep a photographed face: same face as YuNet, high score, YuNet's landmarks."""
    det = shipped_detector(repo_root)
    [faces] = det.detect([astronaut])
    [ref] = YuNetDetector().detect([astronaut])
    assert len(faces) == 1 and faces.probs[0] >= det.min_prob
    from vision.evaluate import box_iou

    assert box_iou(faces.boxes, ref.boxes)[0, 0] > 0.6
    np.testing.assert_allclose(faces.landmarks[0], ref.landmarks[0], atol=1.0)


def test_no_face_gives_empty(repo_root):
    [faces] = shipped_detector(repo_root).detect([np.full((200, 300, 3), 128, np.uint8)])
    assert len(faces) == 0 and faces.boxes.shape == (0, 4)


def test_crops_keep_proportions_at_the_border():
    image = np.full((100, 100, 3), 200, np.uint8)
    squares = square_boxes(np.array([[-20.0, 0.0, 20.0, 40.0], [10.0, 10.0, 50.0, 30.0]]), 1.0)
    crops = crop_squares(image, squares, size=48)
    assert crops.shape == (2, 48, 48, 3)
    assert crops[0, :, :23].max() == 0 and crops[0, :, 25:].min() == 200  # left half outside the image: zero
    assert squares[1].tolist() == [10.0, 0.0, 50.0, 40.0]


def test_a_tiny_training_step_runs_and_round_trips(astronaut, tmp_path):
    """Two styles of one photo, one epoch: the loop runs, the weights move, save/load gives the same outputs."""
    boxes = YuNetDetector().detect([astronaut])[0].boxes
    proposer = YuNetDetector(min_prob=0.05, max_faces=10)
    samples = build_samples(
        [(astronaut, boxes)], proposer, scale=(1.0, 1.0), context=1.0, styles=["original", "cartoon"]
    )
    assert (samples.label == 1).sum() >= 1 and len(samples) == len(samples.crops)
    start = onet_start()
    net, history = train(samples, epochs=1, batch_size=8, seed=0, net=onet_start())
    assert np.isfinite(history[0]["cls_loss"]) and np.isfinite(history[0]["reg_loss"])
    assert not torch.equal(net.conv1.weight, start.conv1.weight)
    path = save_weights(net, tmp_path / "w.npz", {"context": 1.0})
    again, meta = load_weights(path)
    x = torch.randn(3, 3, 48, 48)
    y = torch.zeros(3)
    torch.testing.assert_close(again(x, y)[0], net(x, y)[0])
    assert meta == {"context": 1.0}


@pytest.mark.parametrize("style", sorted(STYLES))
def test_styles_keep_the_image_shape(astronaut, style):
    out = STYLES[style](astronaut[:64, :96].copy(), np.random.default_rng(0))
    assert out.shape == (64, 96, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("k", [1, 2, 3])
def test_unrotate_maps_boxes_and_points_back(k):
    from vision.artface import unrotate
    from vision.detect import FaceDetections

    mask = np.zeros((50, 80), np.uint8)
    mask[5:20, 10:30] = 1
    turned = np.rot90(mask, k)
    ys, xs = np.nonzero(turned)
    box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    corner = np.array([[[xs.min(), ys.min()]] * 5], np.float32)
    back = unrotate(FaceDetections(box, np.ones(1, np.float32), corner), 90 * k, mask.shape)
    np.testing.assert_allclose(back.boxes, [[10, 5, 30, 20]])
    assert tuple(back.landmarks[0, 0]) in {(10, 5), (30, 5), (10, 20), (30, 20)}  # a corner of the same box


def test_synthetic_backgrounds_are_seeded_images_with_no_face():
    from vision.train_detector import synthetic_background

    a = synthetic_background(np.random.default_rng(3), (120, 160))
    b = synthetic_background(np.random.default_rng(3), (120, 160))
    assert a.shape == (120, 160, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    [faces] = YuNetDetector().detect([a])
    assert len(faces) == 0
