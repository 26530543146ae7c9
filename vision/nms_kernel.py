"""torchvision's non-maximum suppression kernel, loaded without importing the ``torchvision`` package.

``import torchvision`` imports its models, datasets and ``torch._dynamo`` (about 1.5 s of start-up on a 2-core
machine); the default detectors need only its C++ ``nms`` kernel. :func:`nms` loads the package's compiled
extension into ``torch.ops`` (what ``torchvision.extension`` does) and calls the same operator as
``torchvision.ops.nms``, so results are identical. Where the extension cannot be found this way, it falls back to
importing ``torchvision``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import threading

import torch

log = logging.getLogger(__name__)

_lock = threading.Lock()
_loaded = False


def _load_kernels() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        try:
            spec = importlib.util.find_spec("torchvision")
            folder = list(spec.submodule_search_locations or [])[0]
            finder = importlib.machinery.FileFinder(
                folder, (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
            )
            # The compiled extension is `_C_stable` since torchvision 0.26, `_C` before.
            spec = next(filter(None, (finder.find_spec(name) for name in ("_C_stable", "_C"))))
            torch.ops.load_library(spec.origin)
            torch.ops.torchvision.nms  # noqa: B018 - raises when the operator did not register
        except (AttributeError, ImportError, IndexError, OSError, RuntimeError, StopIteration) as err:
            log.debug("torchvision's kernels not loadable alone (%s); importing torchvision", err)
            import torchvision  # noqa: F401 - registers torch.ops.torchvision
        _loaded = True


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``torchvision.ops.nms``: indices of the kept boxes (x1, y1, x2, y2), by descending score."""
    _load_kernels()
    return torch.ops.torchvision.nms(boxes, scores, float(iou_threshold))
