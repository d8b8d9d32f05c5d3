"""VICReg against a float64 loop-by-loop transcription of facebookresearch/vicreg ``VICReg.forward``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from headcam.train.losses.vicreg import VICRegLoss, off_diagonal


def reference(x: np.ndarray, y: np.ndarray, sim=25.0, std=25.0, cov=1.0) -> tuple[float, float, float, float]:
    """main_vicreg.py, written out with loops: MSE; centred; ½·mean relu(1 − sqrt(var + 1e-4)) per view;
    Σ_{i≠j} C_ij² / d per view with C = xᵀx / (N − 1)."""
    n, d = x.shape
    repr_loss = float(np.mean((x - y) ** 2))
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    std_loss = 0.0
    for z in (x, y):
        std_loss += sum(max(0.0, 1 - math.sqrt(z[:, j].var(ddof=1) + 1e-4)) for j in range(d)) / d / 2
    cov_loss = 0.0
    for z in (x, y):
        c = z.T @ z / (n - 1)
        cov_loss += sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d
    return repr_loss, std_loss, cov_loss, sim * repr_loss + std * std_loss + cov * cov_loss


@pytest.mark.parametrize("scale", [0.3, 3.0])  # std below the hinge (variance term > 0) and above it (= 0)
def test_loss_equals_the_reference_in_float64(scale):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 8, generator=g, dtype=torch.float64) * scale
    y = x + 0.1 * torch.randn(16, 8, generator=g, dtype=torch.float64)
    x[:, 1] += 0.5 * x[:, 0]  # correlated dimensions, so the covariance term is not ~0
    want = reference(x.numpy(), y.numpy())
    got = VICRegLoss.terms(x, y)
    for a, b in zip(got, want[:3], strict=True):
        assert float(a) == pytest.approx(b, rel=1e-12, abs=1e-15)
    assert float(VICRegLoss()(x, y)) == pytest.approx(want[3], rel=1e-12)
    assert (want[1] > 0.1) == (scale < 1)
    assert float(VICRegLoss(1.0, 0.0, 0.0)(x, y)) == pytest.approx(want[0], rel=1e-12)  # the weights apply


def test_collapse_costs_the_whole_variance_hinge_and_no_covariance():
    z = torch.ones(8, 4, dtype=torch.float64)
    s, v, c = VICRegLoss.terms(z, z)
    assert float(s) == 0 and float(c) == 0
    assert float(v) == pytest.approx(1 - math.sqrt(1e-4))  # ½·(1 − 0.01) per view, both views


def test_off_diagonal_takes_every_entry_but_the_diagonal():
    m = torch.arange(16.0).view(4, 4)
    assert sorted(off_diagonal(m).tolist()) == sorted(v for i in range(4) for j in range(4) if i != j
                                                      for v in [float(4 * i + j)])


def test_gradient_descent_on_the_loss_spreads_collapsed_embeddings():
    torch.manual_seed(0)
    z = (torch.randn(32, 8) * 0.05).requires_grad_(True)
    opt = torch.optim.SGD([z], lr=0.5)
    loss = VICRegLoss(sim_weight=0.0)
    with torch.no_grad():
        first = float(loss(z, z))
    for _ in range(100):
        opt.zero_grad()
        loss(z, z).backward()
        opt.step()
    with torch.no_grad():
        assert float(loss(z, z)) < 0.01 * first
    assert float(z.detach().std(dim=0).min()) > 0.9  # every dimension pushed up to the hinge at std 1


WORLD, N, D = 2, 6, 5


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, WORLD * N, D, generator=g, dtype=torch.float64)
    mine = slice(rank * N, (rank + 1) * N)
    torch.save([t.detach() for t in VICRegLoss.terms(x[mine], y[mine])], f"{out_dir}/terms{rank}.pt")
    tdist.destroy_process_group()


def test_two_ranks_regularise_the_global_batch(tmp_path):
    """Variance and covariance over both ranks' embeddings (gathered), invariance over the rank's own."""
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, WORLD * N, D, generator=g, dtype=torch.float64)
    full = reference(x.numpy(), y.numpy())
    for rank in range(WORLD):
        s, v, c = torch.load(tmp_path / f"terms{rank}.pt")
        mine = slice(rank * N, (rank + 1) * N)
        assert float(s) == pytest.approx(reference(x[mine].numpy(), y[mine].numpy())[0], rel=1e-12)
        assert float(v) == pytest.approx(full[1], rel=1e-12) and float(c) == pytest.approx(full[2], rel=1e-12)
