"""Two real gloo processes: gathered negatives carry gradient; MoCo's cross-rank batch shuffle is exact."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from torch import nn

from headcam.train.losses.ntxent import NTXentLoss
from headcam.train.methods.base import MethodContext
from headcam.train.methods.moco import MoCo
from headcam.train.registry import DinoConfig, MocoConfig

WORLD, N, V, D, TAU = 2, 3, 3, 5, 0.3


def full_embeddings() -> torch.Tensor:
    return torch.randn(V, WORLD * N, D, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


def tiny_moco() -> MoCo:
    torch.manual_seed(3)
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6))
    return MoCo(trunk, 6, MocoConfig(dim=4, queue=8, m=0.9, T=0.2), context(batch_size=2, world=WORLD))


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    z = full_embeddings()[:, rank * N:(rank + 1) * N].clone().requires_grad_(True)
    NTXentLoss(TAU)(z).backward()
    local = z.detach().clone().requires_grad_(True)
    NTXentLoss(TAU, gather=False)(local).backward()  # what this rank's gradient would be without the gather

    model = tiny_moco()
    x = torch.randn(WORLD * 2, 3, 2, 2, generator=torch.Generator().manual_seed(11))[rank * 2:(rank + 1) * 2]
    model.eval()
    shuffled = model._keys(x)
    direct = torch.nn.functional.normalize(model.key_head(model.key_trunk(x)), dim=1)
    model.train()
    model([x, x], torch.zeros(2, dtype=torch.long))
    torch.save({"grad": z.grad, "local_grad": local.grad, "shuffled": shuffled, "direct": direct,
                "queue": model.queue.keys.clone(), "ptr": int(model.queue.ptr)}, f"{out_dir}/rank{rank}.pt")
    tdist.destroy_process_group()


def test_two_rank_gather_keeps_gradient_and_shuffle_is_exact(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    # reference: one process, all embeddings; each rank's loss is the mean over its rows, DDP sums their grads
    z = full_embeddings().requires_grad_(True)
    (WORLD * NTXentLoss(TAU, gather=False)(z)).backward()
    for r in range(WORLD):
        mine = z.grad[:, r * N:(r + 1) * N]
        assert torch.allclose(got[r]["grad"], mine, atol=1e-10)
        other_rank_part = got[r]["grad"] - got[r]["local_grad"]  # what the other rank's loss sent back
        assert other_rank_part.abs().max() > 1e-3
        assert not torch.allclose(got[r]["local_grad"], mine, atol=1e-4)

    for r in range(WORLD):  # permute -> encode in slices -> un-permute returns each rank its own keys
        assert torch.allclose(got[r]["shuffled"], got[r]["direct"], atol=1e-6)
    assert torch.equal(got[0]["queue"], got[1]["queue"]) and got[0]["ptr"] == got[1]["ptr"] == 4


@pytest.mark.parametrize("method", ["moco", "simclr", "dino", "vicreg"])
def test_torchrun_two_processes_train(method, tiny_dataset, tmp_path):
    """The real CLI under torchrun (gloo): each rank reads its own shard, both take the same steps."""
    import json
    import os
    import subprocess
    import sys

    from _train_helpers import DEMO, TINY

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "headcam.train.cli", DEMO, f"data={tiny_dataset}", f"out={run}", f"method={method}", "steps=2", *TINY,
           *{"dino": ["dino.out_dim=256", "dino.hidden_dim=64", "dino.bottleneck_dim=32"],
             "vicreg": ["vicreg.expander=[32,32]"]}.get(method, [])]
    proc = subprocess.run(cmd, env=dict(os.environ, HEADCAM_QUIET="1", OMP_NUM_THREADS="1"), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count(f"{method} resnet18: 2 steps") == 1  # one summary line, from rank 0
    # BatchNorm over both ranks where the method's reference does it (sync_bn=auto), MoCo keeps shuffle-BN
    assert ("(BatchNorm synchronised)" in proc.stdout) == (method in ("simclr", "dino", "vicreg"))
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["world"] == 2 and ckpt["step"] == 2
    if method == "moco":
        assert int(ckpt["model"]["queue.ptr"]) == 2 * 2 * 8 % 64  # two steps of the global batch (2 ranks x 8)
    if method == "dino":  # the saved teacher is the evaluated trunk and the centre moved from zero
        assert ckpt["model"]["loss.center"].abs().sum() > 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]


def context(*, batch_size: int = 4, world: int = 1, new_trunk=None) -> MethodContext:
    return MethodContext(arch="resnet18", small_stem=True, n_classes=None, world=world, batch_size=batch_size,
                         global_views=2, seed=0, new_trunk=new_trunk)


def tiny_dino():
    from headcam.train.methods.dino import DINO

    torch.manual_seed(5)
    student = nn.Sequential(nn.Flatten(), nn.Linear(12, 6))
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(12, 6))
    return DINO(student, 6, DinoConfig(out_dim=16, hidden_dim=8, bottleneck_dim=4, momentum=0.9),
                context(new_trunk=lambda: teacher))


def _dino_worker(rank: int, init_file: str, out_dir: str) -> None:
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    model = tiny_dino()
    ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    g = torch.Generator().manual_seed(100 + rank)  # every rank sees different images
    teacher_outputs = []
    for step in range(3):
        model.begin_step(step, 3)
        views = [torch.randn(4, 3, 2, 2, generator=g) for _ in range(3)]
        with torch.no_grad():
            teacher_outputs.append(model.teacher_head(model.teacher_trunk(torch.cat(views[:2]))))
        loss = ddp(views, torch.zeros(4, dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.end_step()
    teacher = [p.detach().clone() for p in model.teacher_parameters()]
    torch.save({"center": model.loss.center.clone(), "teacher": teacher, "teacher_outputs": teacher_outputs},
               f"{out_dir}/dino{rank}.pt")
    tdist.destroy_process_group()


def test_two_rank_dino_centre_is_all_reduced_and_teachers_stay_equal(tmp_path):
    mp.spawn(_dino_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    got = [torch.load(tmp_path / f"dino{r}.pt") for r in range(WORLD)]
    assert torch.equal(got[0]["center"], got[1]["center"])
    assert all(torch.equal(a, b) for a, b in zip(got[0]["teacher"], got[1]["teacher"], strict=True))
    # the centre is the EMA of the teacher's batch mean over both ranks' images, not of one rank's
    center = torch.zeros(1, 16)
    for step in range(3):
        both = torch.cat([got[r]["teacher_outputs"][step] for r in range(WORLD)])
        center = 0.9 * center + 0.1 * both.mean(dim=0, keepdim=True)
    assert torch.allclose(got[0]["center"], center, atol=1e-6)
    local = torch.zeros(1, 16)
    for step in range(3):
        local = 0.9 * local + 0.1 * got[0]["teacher_outputs"][step].mean(dim=0, keepdim=True)
    assert not torch.allclose(got[0]["center"], local, atol=1e-4)
