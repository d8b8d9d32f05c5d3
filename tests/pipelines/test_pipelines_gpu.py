"""GPU paths (skipped without CUDA): torch backend on CUDA equals CPU; DALI on GPU yields the same Batch
contract, including magnification through ``fn.experimental.remap`` and multi-crop (local crops decoded by
nvJPEG ROI decoding like the global views)."""

from __future__ import annotations

import pytest
import torch
from loader_configs import config

from headcam.pipelines.loader import build_loader

pytestmark = pytest.mark.gpu

AUG = {"foveation": {"enabled": True}, "magnification": {"enabled": True}}


def test_torch_backend_on_cuda_matches_cpu(tiny_dataset):
    kw = dict(batch_size=4, n_views=2, size=48, seed=5, augment=AUG)
    cpu = list(build_loader(tiny_dataset, "train", config("simclr", device="cpu", **kw)))
    gpu = list(build_loader(tiny_dataset, "train", config("simclr", device="cuda", **kw)))
    assert [b.keys for b in cpu] == [b.keys for b in gpu]
    for a, b in zip(cpu, gpu, strict=True):
        assert b.views[0].device.type == "cuda"
        assert (a.views[1] - b.views[1].cpu()).abs().max() < 1e-3


@pytest.mark.parametrize("recipe,aug", [("simclr", None), ("eval", None), ("simclr", AUG),
                                        ("dino", {**AUG, "local": {"n": 2, "size": 32}})])
def test_dali_gpu_batches(tiny_dataset, recipe, aug):
    loader = build_loader(tiny_dataset, "train", config(recipe, aug, batch_size=4, n_views=2, size=64, backend="dali",
                                                        device="cuda", train=recipe != "eval"))
    batches = list(loader)
    assert len(batches) == len(loader) > 0
    b = batches[0]
    sides = [64, 64] + [32] * (aug or {}).get("local", {}).get("n", 0)  # global views, then local crops
    assert [tuple(v.shape) for v in b.views] == [(4, 3, s, s) for s in sides]
    assert all(v.device.type == "cuda" for v in b.views)
    assert torch.isfinite(b.views[0]).all() and b.label.dtype == torch.int64
