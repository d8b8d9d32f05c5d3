"""CUDA path: bf16 autocast + channels_last features agree with fp32 CPU ones (skipped without CUDA)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from headcam.eval.features import extract
from headcam.eval.models import load_model


@pytest.mark.gpu
def test_cuda_bf16_features_match_cpu():
    x = torch.randn(8, 3, 96, 96)
    batch = SimpleNamespace(views=[x], label=torch.zeros(8, dtype=torch.long), keys=[str(i) for i in range(8)])
    cpu = extract(load_model("random:resnet50"), [batch], device="cpu")[2]
    gpu = extract(load_model("random:resnet50"), [batch], device="cuda")[2]
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    cos = (cpu * gpu).sum(1) / np.linalg.norm(cpu, axis=1) / np.linalg.norm(gpu, axis=1)
    assert cos.min() > 0.99
