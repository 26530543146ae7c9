"""Host-to-device copies: the same tensor on the CPU, pinned and asynchronous on a CUDA device, same values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vision.device import host_to_device

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cpu_copy_is_the_tensor_itself() -> None:
    x = torch.from_numpy(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    assert host_to_device(x, "cpu") is x
    assert host_to_device(x, torch.device("cpu")) is x


@requires_cuda
def test_cuda_copy_goes_through_pinned_memory_and_keeps_the_values() -> None:
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8))
    y = host_to_device(x, "cuda")
    assert y.device.type == "cuda"
    # A kernel queued after the asynchronous copy on the same stream sees the copied values.
    assert torch.equal((y.float() + 1).cpu(), x.float() + 1)


@requires_cuda
def test_image_encoder_on_cuda_matches_cpu() -> None:
    from vision.image_features import EfficientNetLite0Encoder

    images = [np.random.default_rng(k).integers(0, 256, (300 + 40 * k, 200, 3), dtype=np.uint8) for k in range(3)]
    cpu = EfficientNetLite0Encoder(device="cpu").encode(images)
    gpu = EfficientNetLite0Encoder(device="cuda").encode(images)
    np.testing.assert_allclose(gpu, cpu, atol=1e-2, rtol=1e-3)  # cuDNN's convolutions sum in another order
