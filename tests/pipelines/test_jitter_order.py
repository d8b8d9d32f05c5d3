"""``jitter.order=fixed`` end to end: both loaders run the fused colour twist and record its order, and the
torch loader's batches draw the same numbers under either order (only the jitter's maths changes)."""

from __future__ import annotations

import pytest
import torch
from loader_configs import config

from headcam.pipelines.loader import build_loader
from headcam.pipelines.maths import TWIST_ORDER

KW = dict(batch_size=4, n_views=2, size=32, record_views=True)


@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_loaders_run_the_fused_twist_and_record_its_order(tiny_dataset, backend):
    if backend == "dali":
        pytest.importorskip("nvidia.dali")
    batch = next(iter(build_loader(tiny_dataset, "train", config("simclr", ["jitter.order=fixed"], backend=backend,
                                                                   **KW))))
    assert [v.shape for v in batch.views] == [(4, 3, 32, 32)] * 2
    for view in batch.meta.views:
        assert (view.params["jitter_order"] == torch.tensor(TWIST_ORDER)).all()
    assert all(torch.isfinite(v).all() for v in batch.views)


def test_torch_loader_same_draws_either_order(tiny_dataset):
    """Same seed, same crops, flips and factors under both orders; the views differ only where jitter ran."""
    random, fixed = (next(iter(build_loader(tiny_dataset, "train", config("simclr", [f"jitter.order={o}"], seed=3,
                                                                          **KW))))
                     for o in ("random", "fixed"))
    assert random.keys == fixed.keys
    for a, b in zip(random.meta.views, fixed.meta.views, strict=True):
        for name in ("box", "flip", "jitter_on", "jitter", "gray", "blur_on", "blur_sigma"):
            assert torch.equal(a.params[name], b.params[name]), name
    on = random.meta.views[0].params["jitter_on"]
    diff = (random.views[0] - fixed.views[0]).abs().flatten(1).amax(dim=1)
    assert (diff[~on] < 1e-5).all() and (diff[on] > 1e-2).all()
