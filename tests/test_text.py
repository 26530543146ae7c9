"""vision.text: DB post-processing, text features, the clear error without a model, and (when the model file of
the rapidocr-onnxruntime wheel is installed) detection of a rendered title."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from vision.text import TextDetector, box_iou, boxes_from_map, default_model_path, match, text_features


def test_boxes_from_a_probability_map():
    prob = np.zeros((64, 96))
    prob[10:20, 10:60] = 0.9  # a text kernel
    prob[40:44, 70:74] = 0.4  # below box_thresh on average after the threshold: dropped
    prob[50:52, 5:6] = 0.95  # thinner than min_size: dropped
    boxes, scores = boxes_from_map(prob, thresh=0.3, box_thresh=0.5, unclip_ratio=1.6, min_size=3)
    assert len(boxes) == 1 and scores[0] == pytest.approx(0.9, abs=0.05)
    x1, y1, x2, y2 = boxes[0]
    # The region is dilated to 51 x 11 and grown by 1.6 * area / perimeter on each side.
    grow = 1.6 * 51 * 11 / (2 * (51 + 11))
    assert (x1, y1, x2, y2) == pytest.approx((10 - grow, 10 - grow, 61 + grow, 21 + grow))


def test_text_features_of_boxes():
    empty = text_features(np.zeros((0, 4)), 100, 200)
    assert empty == {"text_area_fraction": 0.0, "text_blocks": 0, "text_position": "none", "text_height": 0.0}
    boxes = np.array([[10, 150, 90, 190], [10, 10, 30, 20], [20, 160, 40, 170]])  # the third inside the first
    got = text_features(boxes, 100, 200)
    assert got["text_blocks"] == 3 and got["text_position"] == "bottom"
    assert got["text_area_fraction"] == pytest.approx((80 * 40 + 20 * 10) / (100 * 200))  # union
    assert got["text_height"] == pytest.approx(40 / 200)


def test_iou_and_one_to_one_matching():
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10]])
    found = np.array([[0, 0, 10, 12], [1, 0, 11, 10], [50, 50, 60, 60]])
    assert box_iou(found, truth)[0, 0] == pytest.approx(100 / 120)
    assert match(found, truth) == 1  # two boxes on one line: one match


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip install --no-deps rapidocr-onnxruntime"):
        TextDetector(model_path=tmp_path / "none.onnx")


@pytest.mark.skipif(default_model_path() is None, reason="the rapidocr-onnxruntime wheel's model is not installed")
def test_detects_a_rendered_title():
    img = Image.new("RGB", (640, 480), (40, 60, 90))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=56)
    draw.text((80, 360), "MIDNIGHT CITY", font=font, fill=(250, 240, 200))
    truth = np.array([draw.textbbox((80, 360), "MIDNIGHT CITY", font=font)], dtype=float)
    found = TextDetector().detect(np.asarray(img))
    assert match(found.boxes, truth) == 1 and len(found.boxes) == 1
    features = text_features(found.boxes, 640, 480)
    assert features["text_position"] == "bottom" and 0.05 < features["text_area_fraction"] < 0.15


class _NoFaces:
    """A stand-in detector: no face anywhere (no torch, no weights)."""

    def detect(self, images):
        from vision.detect import FaceDetections

        return [
            FaceDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
            for _ in images
        ]


@pytest.mark.skipif(default_model_path() is None, reason="the rapidocr-onnxruntime wheel's model is not installed")
def test_annotation_writes_the_text_columns(tmp_path):
    """vision.image_features.text=true: the images table gains the four numeric text columns (after the colours)."""
    import pickle

    from causal.bands import add_bands
    from vision.annotate import BatchAnnotator, annotate_folder
    from vision.image_features import color_features
    from vision.store import read_annotations
    from vision.text import TEXT_IMAGE_COLUMNS, TextImageFeatures

    src = tmp_path / "in"
    src.mkdir()
    img = Image.new("RGB", (480, 640), (30, 40, 70))
    ImageDraw.Draw(img).text((40, 40), "SILENT EMPIRE", font=ImageFont.load_default(size=48), fill=(255, 230, 180))
    img.save(src / "title.png")
    Image.new("RGB", (480, 640), (200, 120, 40)).save(src / "plain.png")
    features = TextImageFeatures(then=color_features)
    assert pickle.loads(pickle.dumps(features))(np.asarray(img))["text_blocks"] == 1.0  # Ray ships it pickled
    annotate_folder(src, tmp_path / "out", BatchAnnotator(detector=_NoFaces(), color_features=features), num_workers=0)
    images, _ = read_annotations(tmp_path / "out")
    assert list(images.columns[-len(TEXT_IMAGE_COLUMNS) - 2 : -2]) == list(TEXT_IMAGE_COLUMNS)
    rows = add_bands(images).set_index("image_id")
    assert rows.loc["title.png", "text_blocks"] == 1 and rows.loc["title.png", "text_position"] == "top"
    assert 0.01 < rows.loc["title.png", "text_area_fraction"] < 0.1
    assert rows.loc["plain.png", "text_blocks"] == 0 and rows.loc["plain.png", "text_position"] == "none"
