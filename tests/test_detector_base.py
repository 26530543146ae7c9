"""Every shipped detector follows one contract (vision/detector_base.py): the same result type, the same input
checks naming the detector, built models left out of a pickle and rebuilt on first use."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vision.detector_base import FaceDetections, FaceDetector

CONF = "conf/vision/detector"


@pytest.mark.parametrize("name", ["artface", "yunet", "mtcnn", "ensemble"])
def test_shipped_detectors_share_the_base_contract(name):
    cfg = OmegaConf.load(f"{CONF}/{name}.yaml")
    detector = instantiate(cfg, device="cpu")
    assert isinstance(detector, FaceDetector)
    with pytest.raises(ValueError, match=rf"{type(detector).__name__}\.detect: image 1 must be an \(H, W, 3\) uint8"):
        detector.detect([np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8)])
    blank = np.full((96, 128, 3), 127, np.uint8)
    found = detector.detect([blank])
    assert len(found) == 1 and isinstance(found[0], FaceDetections)
    assert found[0].boxes.shape[1:] == (4,) and found[0].landmarks.shape[1:] == (5, 2)
    built = [k for k in vars(detector) if k.endswith("_")]
    assert built, "the first detect() builds the models"
    clone = pickle.loads(pickle.dumps(detector))
    assert not [k for k in vars(clone) if k.endswith("_")]  # models are rebuilt where the copy runs
    assert len(clone.detect([blank])) == 1
