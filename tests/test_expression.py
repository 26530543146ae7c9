"""vision.expression: the pluggable ONNX classifier backend (no expression model ships with the project).

The plumbing (crop, preprocess, forward, label the outputs) is checked with another ONNX classifier that a registry
wheel ships: PP-OCR's text-orientation model (0 or 180 degrees) from rapidocr-onnxruntime, on a rendered word upright
and upside down. Skipped when that wheel's files are not installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from vision.expression import ExpressionModel, crop_faces
from vision.text import default_model_path

_DET = default_model_path()
ORIENTATION = _DET.parent / "ch_ppocr_mobile_v2.0_cls_infer.onnx" if _DET is not None else None


def test_no_model_is_a_clear_error(tmp_path):
    for path in (None, tmp_path / "missing.onnx"):
        with pytest.raises(FileNotFoundError, match="ships none"):
            ExpressionModel(path, ["neutral", "happy"])


def test_crops_are_clipped_and_grown():
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    crops = crop_faces(image, np.array([[10, 10, 30, 50], [190, 90, 210, 120]]), margin=0.1)
    assert crops[0].shape == (48, 24, 3)  # 20 x 40 grown by 2 x 4 on each side
    assert crops[1].shape == (13, 12, 3)  # rows 87..99, columns 188..199: clipped at the image's edge


def _word(upside_down: bool) -> np.ndarray:
    img = Image.new("RGB", (240, 60), (255, 255, 255))
    ImageDraw.Draw(img).text((10, 5), "Orient", font=ImageFont.load_default(size=44), fill=(0, 0, 0))
    return np.asarray(img.rotate(180) if upside_down else img)


@pytest.mark.skipif(ORIENTATION is None or not Path(ORIENTATION).is_file(), reason="rapidocr-onnxruntime not installed")
def test_runs_a_users_onnx_classifier():
    model = ExpressionModel(
        ORIENTATION, ["0", "180"], input_size=(192, 48), bgr=True, scale=1 / 127.5, mean=127.5, softmax=False, margin=0
    )
    word, flipped = _word(False), _word(True)
    image = np.concatenate([word, flipped], axis=0)
    got = model.expressions(image, np.array([[0, 0, 240, 60], [0, 60, 240, 120]]))
    assert [g["expression"] for g in got] == ["0", "180"] and all(g["expression_prob"] > 0.9 for g in got)
    scores = model.predict([word])
    assert scores.shape == (1, 2) and scores.sum() == pytest.approx(1, abs=1e-4)
    wrong = ExpressionModel(ORIENTATION, ["a", "b", "c"], input_size=(192, 48))
    with pytest.raises(ValueError, match="labels has 3"):
        wrong.predict([word])
