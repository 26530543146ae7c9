"""torchvision's NMS kernel without the torchvision package: same indices, and the default detectors' modules
import without it (start-up)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def test_kernel_equals_torchvision_nms() -> None:
    import torchvision

    from vision.nms_kernel import nms

    rng = np.random.default_rng(0)
    boxes = rng.random((800, 4)) * 200
    boxes[:, 2:] += boxes[:, :2] + 1
    scores = rng.random(800)
    for threshold in (0.0, 0.3, 0.7):
        b, s = torch.as_tensor(boxes), torch.as_tensor(scores)
        assert torch.equal(nms(b, s, threshold), torchvision.ops.nms(b, s, threshold))


def test_default_models_modules_do_not_import_torchvision() -> None:
    code = (
        "import sys\n"
        "import vision.annotate, vision.artface, vision.yunet, vision.embed, vision.image_features\n"
        "from vision.yunet import nms\n"
        "import numpy as np\n"
        "keep = nms(np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30.0]]), np.array([0.9, 0.8, 0.7]), 0.5)\n"
        "print(keep.tolist(), 'torchvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[0,", "2]", "False"], out.stdout
