"""The artwork proposal cascade (fine-tuned MTCNN P-net + R-net): shipped weights, merging, data, training."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from vision.cascade import (
    DEFAULT_CASCADE_WEIGHTS,
    CascadeProposer,
    load_cascade,
    mtcnn_start,
    pnet_logits,
    rnet_logits,
    save_cascade,
    template_landmarks,
)
from vision.evaluate import box_iou
from vision.train_cascade import augment, build_crops, train_stage
from vision.yunet import YuNetDetector


def cascade_detector(repo_root, **overrides):
    with initialize_config_dir(config_dir=str(repo_root / "conf"), version_base="1.3"):
        cfg = compose(config_name="annotate", overrides=["vision/detector=artface_cascade"])
    return instantiate(cfg.vision.detector, device="cpu", **overrides)


def test_shipped_cascade_weights_are_small_plain_arrays_with_a_card():
    assert DEFAULT_CASCADE_WEIGHTS.is_file() and DEFAULT_CASCADE_WEIGHTS.stat().st_size < 2e6
    assert DEFAULT_CASCADE_WEIGHTS.with_suffix(".md").is_file()
    with zipfile.ZipFile(DEFAULT_CASCADE_WEIGHTS) as z:  # an .npz of .npy arrays: nothing to unpickle
        assert all(name.endswith(".npy") for name in z.namelist())
    states, meta = load_cascade(DEFAULT_CASCADE_WEIGHTS)
    assert {"box_scale", "seed", "data", "history"} <= set(meta)
    pnet, rnet = mtcnn_start()
    pnet.load_state_dict(states["pnet"])
    rnet.load_state_dict(states["rnet"])
    logit, reg = pnet_logits(pnet, torch.zeros(1, 3, 30, 40))
    assert logit.shape == (1, 10, 15) and reg.shape == (1, 4, 10, 15)
    logit, reg = rnet_logits(rnet, torch.zeros(2, 3, 24, 24))
    assert logit.shape == (2,) and reg.shape == (2, 4)


def test_cascade_proposes_the_astronaut(astronaut):
    """A photographed face the cascade was never trained on: proposed, with the template landmarks in its box."""
    [found] = CascadeProposer().detect([astronaut])
    [ref] = YuNetDetector().detect([astronaut])
    assert len(found) >= 1 and box_iou(found.boxes, ref.boxes).max() > 0.4
    inside = (found.landmarks[..., 0] >= found.boxes[:, None, 0]) & (found.landmarks[..., 0] <= found.boxes[:, None, 2])
    assert inside.all()


def test_with_the_cascade_a_photo_keeps_yunets_face_and_landmarks(repo_root, astronaut):
    """Cascade boxes overlapping a YuNet proposal are dropped, so a photographed face stays YuNet's."""
    det = cascade_detector(repo_root)
    assert det.cascade is True
    [faces] = det.detect([astronaut])
    [ref] = YuNetDetector().detect([astronaut])
    assert len(faces) == 1 and faces.probs[0] >= det.min_prob
    np.testing.assert_allclose(faces.landmarks[0], ref.landmarks[0], atol=1.0)


def test_the_default_detector_runs_the_cascade_and_empty_images_stay_empty(repo_root):
    with initialize_config_dir(config_dir=str(repo_root / "conf"), version_base="1.3"):
        shipped = compose(config_name="annotate")
        plain = compose(config_name="annotate", overrides=["vision/detector=artface"])
    assert shipped.vision.detector.cascade is True  # the shipped default: artface_cascade
    assert plain.vision.detector.cascade is False
    [faces] = cascade_detector(repo_root).detect([np.full((200, 300, 3), 128, np.uint8)])
    assert len(faces) == 0


def test_augment_moves_the_boxes_with_the_face():
    """A bright square on a dark ground: after a random style, stretch and tilt the box still sits on it."""
    image = np.zeros((200, 300, 3), np.uint8)
    image[60:120, 100:160] = 255
    for seed in range(5):
        out, boxes = augment(image, np.array([[100.0, 60.0, 160.0, 120.0]]), np.random.default_rng(seed), tilt=0.0)
        x1, y1, x2, y2 = boxes[0].round().astype(int)
        bright = out.max(axis=2) > 127
        if bright.mean() > 0.5:  # line art turns a flat square into its outline on white
            continue
        ys, xs = np.nonzero(bright)
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], [x1, y1, x2, y2], atol=2)


def test_template_landmarks_scale_with_the_box():
    points = template_landmarks(np.array([[10.0, 20.0, 110.0, 220.0]]))
    assert points.shape == (1, 5, 2)
    assert points[0, 0, 0] < points[0, 1, 0] and points[0, 2, 1] < points[0, 3, 1]  # eyes left-right, nose above
    assert (points[0, :, 0] > 10).all() and (points[0, :, 1] < 220).all()


@pytest.mark.parametrize("size", [12, 24])
def test_a_tiny_training_step_runs_learns_and_round_trips(astronaut, tmp_path, size):
    """One photo in two variants: the loop runs, the weights move, a few epochs lower the loss, save/load works."""
    [ref] = YuNetDetector().detect([astronaut])
    data = build_crops([(astronaut, ref.boxes)], variants=2, seed=0, per_face=12, negatives=12)
    assert {0, 1} <= set(data.label.tolist()) and data.crops.shape[1:] == (24, 24, 3)
    pnet, rnet = mtcnn_start()
    start = (pnet if size == 12 else rnet).conv1.weight.detach().clone()
    net, history = train_stage(pnet if size == 12 else rnet, data, size=size, epochs=4, batch_size=16, lr=3e-3)
    assert all(np.isfinite(h["cls_loss"]) and np.isfinite(h["reg_loss"]) for h in history)
    assert not torch.equal(net.conv1.weight, start)
    assert history[-1]["cls_loss"] + history[-1]["reg_loss"] < history[0]["cls_loss"] + history[0]["reg_loss"]
    path = save_cascade(pnet, rnet, tmp_path / "c.npz", {"seed": 0})
    states, meta = load_cascade(path)
    assert meta == {"seed": 0}
    for name, v in (pnet if size == 12 else rnet).state_dict().items():
        torch.testing.assert_close(states["pnet" if size == 12 else "rnet"][name], v)
