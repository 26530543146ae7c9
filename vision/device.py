"""Choosing the compute device and CPU thread counts.

``device="auto"`` picks CUDA, then Apple's MPS, then the CPU, and never constructs a CUDA model on a machine
without a GPU.
"""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)

_VALID = ("auto", "cpu", "cuda", "mps")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Return the torch device named by ``spec``.

    Parameters
    ----------
    spec : {"auto", "cpu", "cuda", "cuda:N", "mps"} or torch.device or None
        ``"auto"`` (or None) picks ``cuda`` when a GPU is visible, then ``mps``, then ``cpu``.

    Raises
    ------
    ValueError
        When a device is requested explicitly that this machine does not have, or the name is unknown.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    base = spec.split(":", 1)[0]
    if base not in _VALID:
        raise ValueError(f"vision.device: unknown device {spec!r}; use one of {', '.join(_VALID)} (or cuda:N)")
    if base == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"vision.device={spec!r} but no CUDA GPU is visible; use device=auto or device=cpu")
    if base == "mps" and not _mps_available():
        raise ValueError("vision.device='mps' but MPS is not available on this machine; use device=auto")
    return torch.device(spec)


def host_to_device(x: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """Copy a CPU tensor to ``device``. To a CUDA device the copy goes through page-locked (pinned) memory and is
    asynchronous, so it overlaps the host's next work; elsewhere it is ``x.to(device)`` (the same tensor on the CPU).
    Kernels queued after it on the same stream see the copied values."""
    device = torch.device(device)
    if device.type != "cuda":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op thread count (default: the CPUs this process may use) and return it."""
    if num_threads is None or num_threads <= 0:
        try:
            num_threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - non-Linux
            num_threads = os.cpu_count() or 1
    torch.set_num_threads(num_threads)
    log.debug("torch intra-op threads: %d", num_threads)
    return num_threads
