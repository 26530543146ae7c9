"""Shared fixtures: paths to the bundled sample and to real photographs with faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets_sample"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real photograph with one frontal face (NASA, public domain), shipped in scikit-image's and our sample."""
    candidates = sorted(SAMPLE.glob("images/**/skimage_astronaut.png"))
    if not candidates:
        pytest.skip("assets_sample/ has no skimage_astronaut.png")
    return np.asarray(Image.open(candidates[0]).convert("RGB"))
