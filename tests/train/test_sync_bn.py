"""sync_bn: two real gloo processes normalise with the statistics of the global batch (DINO, BYOL, VICReg)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from torch import nn

from headcam.train import sync_bn
from headcam.train.config import load_train_config

WORLD, N = 2, 5


def _model() -> nn.Module:
    torch.manual_seed(11)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 6), nn.BatchNorm1d(6))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(WORLD * N, 3, 4, 4, generator=g, dtype=torch.float64) * 2 + 1
    return x, torch.randn(WORLD * N, 6, generator=g, dtype=torch.float64)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    model = sync_bn.convert(_model().double(), torch.device("cpu"))
    x, w = _batch()
    mine = slice(rank * N, (rank + 1) * N)
    y = model(x[mine])
    (y * w[mine]).sum().backward()
    torch.save({"y": y.detach(), "grads": [p.grad for p in model.parameters()], "state": model.state_dict()},
               f"{out_dir}/bn{rank}.pt")
    tdist.destroy_process_group()


def test_two_ranks_normalise_and_backpropagate_as_one_full_batch(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    got = [torch.load(tmp_path / f"bn{r}.pt") for r in range(WORLD)]
    full = _model().double()
    x, w = _batch()
    y = full(x)
    (y * w).sum().backward()
    assert torch.allclose(torch.cat([g["y"] for g in got]), y, atol=1e-10)  # global statistics
    for i, p in enumerate(full.parameters()):  # DDP sums (then averages) these: the full batch's gradient
        assert torch.allclose(got[0]["grads"][i] + got[1]["grads"][i], p.grad, atol=1e-10)
    for name, value in full.state_dict().items():  # running mean / unbiased variance of the global batch
        assert torch.allclose(got[0]["state"][name].double(), value.double(), atol=1e-10), name
        assert torch.equal(got[0]["state"][name], got[1]["state"][name])


def test_one_process_and_eval_mode_are_plain_batch_norm():
    plain, converted = _model(), sync_bn.convert(_model(), torch.device("cpu"))
    assert sync_bn.has_batch_norm(converted) and not sync_bn.has_batch_norm(nn.Linear(2, 2))
    assert all(not isinstance(m, nn.BatchNorm2d) or isinstance(m, sync_bn.GlobalBatchNorm)
               for m in converted.modules())
    x = torch.randn(4, 3, 4, 4)
    assert torch.allclose(plain(x), converted(x), atol=1e-6)
    plain.eval(), converted.eval()
    assert torch.allclose(plain(x), converted(x), atol=1e-6)
    assert plain.state_dict().keys() == converted.state_dict().keys()  # checkpoints keep their keys


@pytest.mark.parametrize(("method", "expected"), [("dino", True), ("byol", True), ("vicreg", True),
                                                  ("simclr", True), ("moco", False), ("tc", False)])
def test_auto_follows_the_methods_reference(method, expected):
    from headcam.train import registry

    cfg = load_train_config(None, [f"method={method}", "data=x", "device=cpu"])
    assert cfg.sync_bn == "auto" and registry.entry(method).sync_bn is expected
