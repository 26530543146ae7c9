"""Ensemble detector: WBF and NMS fusion on hand-made boxes, agreement with ensemble-boxes, real image, config."""

from __future__ import annotations

import numpy as np
import pytest

from vision.detect import FaceDetections
from vision.ensemble import EnsembleDetector, nms_fusion, weighted_box_fusion

ASTRONAUT_BOX = np.array([180.0, 72.0, 271.0, 181.0])


def _dets(boxes, probs, tag: float = 0.0) -> FaceDetections:
    """Hand-made detections; landmark k of face i is (tag + i, k) so a test can tell where landmarks came from."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    n = len(boxes)
    points = np.stack([np.stack([np.full(5, tag + i), np.arange(5.0)], axis=1) for i in range(n)]) if n else None
    return FaceDetections(
        boxes=boxes,
        probs=np.asarray(probs, dtype=np.float32).reshape(-1),
        landmarks=np.zeros((0, 5, 2), np.float32) if points is None else points.astype(np.float32),
    )


class _Fixed:
    """A stand-in member that returns given detections for every image."""

    def __init__(self, det: FaceDetections):
        self.det = det

    def detect(self, images):
        return [self.det for _ in images]


def test_wbf_overlapping_fuse_disjoint_stay():
    a = _dets([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.6], tag=100)
    b = _dets([[1, 0, 11, 10]], [0.7], tag=200)  # IoU with a[0] = 90 / 110 = 0.82
    out = weighted_box_fusion([a, b], iou_threshold=0.55)
    assert len(out) == 2
    # Fused: score-weighted mean box; score = mean of both members' scores.
    assert np.allclose(out.boxes[0], [(0.9 * 0 + 0.7 * 1) / 1.6, 0, (0.9 * 10 + 0.7 * 11) / 1.6, 10], atol=1e-5)
    assert out.probs[0] == pytest.approx((0.9 + 0.7) / 2, abs=1e-6)
    assert np.all(out.landmarks[0][:, 0] == 100)  # from the higher-scoring box (member a's first face)
    # Alone: kept as is, its score halved (member b counts as a 0).
    assert np.allclose(out.boxes[1], [50, 50, 60, 60])
    assert out.probs[1] == pytest.approx(0.6 / 2, abs=1e-6)
    assert np.all(out.landmarks[1][:, 0] == 101)


def test_wbf_weights_and_threshold():
    a = _dets([[0, 0, 10, 10]], [0.6], tag=100)
    b = _dets([[0, 0, 10, 12]], [0.8], tag=200)  # IoU 100 / 120 = 0.83
    fused = weighted_box_fusion([a, b], weights=[2.0, 1.0], iou_threshold=0.55)
    assert len(fused) == 1
    assert fused.probs[0] == pytest.approx((2 * 0.6 + 0.8) / 3, abs=1e-6)
    assert np.all(fused.landmarks[0][:, 0] == 100)  # w * s: 1.2 (a) > 0.8 (b)
    assert np.allclose(fused.boxes[0], [0, 0, 10, (1.2 * 10 + 0.8 * 12) / 2.0], atol=1e-5)
    apart = weighted_box_fusion([a, b], weights=[2.0, 1.0], iou_threshold=0.9)  # 0.83 is not > 0.9
    assert sorted(np.round(apart.probs, 6).tolist()) == pytest.approx(sorted([2 * 0.6 / 3, 0.8 / 3]), abs=1e-6)


def test_wbf_and_nms_on_no_boxes():
    empty = FaceDetections.empty()
    for fuse in (weighted_box_fusion, nms_fusion):
        out = fuse([empty, empty])
        assert len(out) == 0 and out.boxes.shape == (0, 4) and out.landmarks.shape == (0, 5, 2)
    one = weighted_box_fusion([empty, _dets([[0, 0, 4, 4]], [0.8])])
    assert len(one) == 1 and one.probs[0] == pytest.approx(0.4, abs=1e-6)


def test_nms_fusion_keeps_best_box_and_its_landmarks():
    a = _dets([[0, 0, 10, 10], [50, 50, 60, 60]], [0.7, 0.6], tag=100)
    b = _dets([[1, 0, 11, 10]], [0.9], tag=200)
    out = nms_fusion([a, b], iou_threshold=0.55)
    assert np.allclose(out.boxes, [[1, 0, 11, 10], [50, 50, 60, 60]])
    assert np.allclose(out.probs, [0.9, 0.6])
    assert np.all(out.landmarks[0][:, 0] == 200) and np.all(out.landmarks[1][:, 0] == 101)
    weighted = nms_fusion([a, b], weights=[2.0, 1.0], iou_threshold=0.55)  # scores w * s / max(w)
    assert np.allclose(weighted.probs, [0.7, 0.6]) and np.allclose(weighted.boxes[0], [0, 0, 10, 10])


def test_wbf_agrees_with_ensemble_boxes():
    """Against ensemble-boxes 1.0.9 (conf_type='absent_model_aware_avg'), on random clustered boxes, 3 members."""
    eb = pytest.importorskip("ensemble_boxes")
    rng = np.random.default_rng(7)
    for _ in range(20):
        centres = rng.uniform(0.2, 0.8, size=(4, 2))
        members, weights = [], rng.uniform(0.5, 2.0, size=3)
        for _m in range(3):
            n = int(rng.integers(0, 6))
            c = centres[rng.integers(0, 4, size=n)] + rng.normal(0, 0.02, size=(n, 2))
            half = rng.uniform(0.05, 0.15, size=(n, 1))
            boxes = np.clip(np.hstack([c - half, c + half]), 0, 1)
            members.append(_dets(boxes, rng.uniform(0.05, 1.0, size=n)))
        ours = weighted_box_fusion(members, weights=weights, iou_threshold=0.55)
        ref_boxes, ref_scores, _ = eb.weighted_boxes_fusion(
            [m.boxes.astype(float).tolist() for m in members],
            [m.probs.astype(float).tolist() for m in members],
            [[0] * len(m) for m in members],
            weights=weights.tolist(),
            iou_thr=0.55,
            conf_type="absent_model_aware_avg",
        )
        assert len(ours) == len(ref_scores)
        assert np.allclose(ours.probs, ref_scores, atol=1e-5)
        assert np.allclose(ours.boxes, ref_boxes, atol=1e-5)


class TestOnRealImage:
    @pytest.fixture(scope="class")
    def members(self, astronaut):
        from vision.detect import MTCNNDetector
        from vision.yunet import YuNetDetector

        mtcnn = MTCNNDetector(detection_size=512, min_prob=0.5, device="cpu")
        yunet = YuNetDetector(detection_size=512, min_prob=0.5, device="cpu")
        return mtcnn, yunet, mtcnn.detect([astronaut])[0], yunet.detect([astronaut])[0]

    def test_fuses_both_members_on_the_astronaut(self, members, astronaut):
        mtcnn, yunet, m, y = members
        assert len(m) == len(y) == 1
        blank = np.zeros((200, 300, 3), np.uint8)
        face, none = EnsembleDetector([mtcnn, yunet], fusion="wbf", min_prob=0.5).detect([astronaut, blank])
        assert len(none) == 0
        assert len(face) == 1
        assert face.probs[0] == pytest.approx((m.probs[0] + y.probs[0]) / 2, abs=1e-5)
        w = np.array([m.probs[0], y.probs[0]], dtype=float)
        assert np.allclose(face.boxes[0], (w[0] * m.boxes[0] + w[1] * y.boxes[0]) / w.sum(), atol=1e-3)
        best = m if m.probs[0] >= y.probs[0] else y
        assert np.allclose(face.landmarks[0], best.landmarks[0])
        iou_w = min(face.boxes[0][2], ASTRONAUT_BOX[2]) - max(face.boxes[0][0], ASTRONAUT_BOX[0])
        iou_h = min(face.boxes[0][3], ASTRONAUT_BOX[3]) - max(face.boxes[0][1], ASTRONAUT_BOX[1])
        inter = iou_w * iou_h
        area = np.prod(face.boxes[0][2:] - face.boxes[0][:2]) + np.prod(ASTRONAUT_BOX[2:] - ASTRONAUT_BOX[:2])
        assert inter / (area - inter) > 0.5
        nms_out = EnsembleDetector([_Fixed(m), _Fixed(y)], fusion="nms", min_prob=0.5).detect([astronaut])[0]
        assert len(nms_out) == 1 and nms_out.probs[0] == pytest.approx(max(w), abs=1e-6)

    def test_min_prob_cuts_fused_scores(self, members, astronaut):
        _, _, m, _ = members
        mtcnn, empty = _Fixed(m), _Fixed(FaceDetections.empty())  # MTCNN's real output, without re-running it
        # Only one of two equal-weight members sees the face: its fused score is half the member's.
        (lone,) = EnsembleDetector([mtcnn, empty], min_prob=0.0).detect([astronaut])
        assert lone.probs[0] == pytest.approx(m.probs[0] / 2, abs=1e-6)
        (cut,) = EnsembleDetector([mtcnn, empty], min_prob=float(m.probs[0]) / 2 + 0.01).detect([astronaut])
        assert len(cut) == 0


def test_hydra_config_builds_members_with_device_and_size(astronaut, repo_root):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(repo_root / "conf"), version_base="1.3"):
        cfg = compose(
            "evaluate", overrides=["vision/detector=ensemble", "labels=x", "vision.detector.detection_size=512"]
        )
    assert cfg.vision.max_long_side == 512
    ens = instantiate(cfg.vision.detector, device="cpu")
    (det,) = ens.detect([astronaut])
    assert [type(m).__name__ for m in ens.detectors_] == ["MTCNNDetector", "YuNetDetector"]
    assert all(m.device == "cpu" and m.detection_size == 512 for m in ens.detectors_)
    assert len(det) == 1 and det.probs[0] >= cfg.vision.detector.min_prob


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fusion": "mean"}, r"vision\.detector\.fusion"),
        ({"weights": [1.0]}, r"vision\.detector\.weights"),
        ({"weights": [1.0, -1.0]}, r"vision\.detector\.weights"),
        ({"iou_threshold": 1.0}, r"vision\.detector\.iou_threshold"),
        ({"min_prob": -0.1}, r"vision\.detector\.min_prob"),
    ],
)
def test_bad_config_names_the_key(kwargs, match):
    members = [_Fixed(FaceDetections.empty()), _Fixed(FaceDetections.empty())]
    with pytest.raises(ValueError, match=match):
        EnsembleDetector(members, **kwargs).detect([np.zeros((8, 8, 3), np.uint8)])


def test_bad_members():
    with pytest.raises(ValueError, match="non-empty list"):
        EnsembleDetector([]).detect([np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(ValueError, match=r"detectors\[1\] is neither"):
        EnsembleDetector([_Fixed(FaceDetections.empty()), {"min_prob": 0.5}]).detect([np.zeros((8, 8, 3), np.uint8)])
