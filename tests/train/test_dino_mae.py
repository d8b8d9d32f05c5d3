"""DINO and MAE against float64 references written from the formulas (SPEC §10), their schedules, which
parameters learn, and real runs of headcam-train on shards ingested from the shared media."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _train_helpers import DEMO, TINY, metrics
from PIL import Image

from headcam.train.backbones import build_backbone, build_vit
from headcam.train.cli import main
from headcam.train.ema import cosine, momentum_at, warmup_then_constant
from headcam.train.losses.dino import DINOLoss
from headcam.train.mae import masked_patch_loss, patchify, random_masking, unpatchify
from headcam.train.methods.base import MethodContext
from headcam.train.methods.dino import DINO
from headcam.train.registry import DinoConfig


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def dino_loss_reference(student: np.ndarray, teacher: np.ndarray, center: np.ndarray, t_s: float, t_t: float,
                        same_view_pairs: bool = False) -> float:
    """Loop by loop: every (teacher global view q, student view v != q) pair, batch mean, pair mean."""
    n_views, batch, _ = student.shape
    total, pairs = 0.0, 0
    for q in range(teacher.shape[0]):
        for v in range(n_views):
            if v == q and not same_view_pairs:
                continue
            per_image = []
            for b in range(batch):
                p_t = _softmax((teacher[q, b] - center) / t_t)
                log_p_s = np.log(_softmax(student[v, b] / t_s))
                per_image.append(-(p_t * log_p_s).sum())
            total += float(np.mean(per_image))
            pairs += 1
    return total / pairs


def test_dino_loss_matches_the_formula_and_skips_same_view_pairs():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(5, 3, 7, generator=g, dtype=torch.float64)  # 2 global + 3 local views
    teacher = torch.randn(2, 3, 7, generator=g, dtype=torch.float64)
    loss = DINOLoss(7, student_temp=0.1).double().eval()
    loss.center.copy_(torch.randn(1, 7, generator=g, dtype=torch.float64))
    got = loss(student, teacher, teacher_temp=0.04).item()
    ref = (student.numpy(), teacher.numpy(), loss.center[0].numpy(), 0.1, 0.04)
    assert got == pytest.approx(dino_loss_reference(*ref), rel=1e-12)
    assert got != pytest.approx(dino_loss_reference(*ref, same_view_pairs=True), rel=1e-6)


def test_centre_update_is_an_ema_of_the_raw_teacher_batch_mean():
    loss = DINOLoss(4, center_momentum=0.9).double().train()
    t1 = torch.arange(24, dtype=torch.float64).view(2, 3, 4)
    t2 = -2 * torch.ones(2, 3, 4, dtype=torch.float64)
    s = torch.zeros(3, 3, 4, dtype=torch.float64)
    loss(s, t1, 0.04)
    c1 = 0.1 * t1.reshape(-1, 4).mean(dim=0)
    assert torch.allclose(loss.center[0], c1, atol=1e-12)
    loss(s, t2, 0.04)
    assert torch.allclose(loss.center[0], 0.9 * c1 + 0.1 * -2.0, atol=1e-12)
    loss.eval()
    loss(s, t2, 0.04)  # evaluation leaves the centre alone
    assert torch.allclose(loss.center[0], 0.9 * c1 + 0.1 * -2.0, atol=1e-12)


def test_schedules_at_the_start_middle_and_end():
    assert momentum_at(0, 100, 0.996) == pytest.approx(0.996)
    assert momentum_at(50, 100, 0.996) == pytest.approx((0.996 + 1) / 2)
    assert momentum_at(100, 100, 0.996) == pytest.approx(1.0)
    assert momentum_at(25, 100, 0.99) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)  # BYOL's τ_k
    assert warmup_then_constant(0, 30, 0.04, 0.07) == pytest.approx(0.04)
    assert warmup_then_constant(15, 30, 0.04, 0.07) == pytest.approx(0.055)
    assert warmup_then_constant(30, 30, 0.04, 0.07) == warmup_then_constant(99, 30, 0.04, 0.07) == 0.07
    assert cosine(0, 10, 0.04, 0.4) == pytest.approx(0.04) and cosine(10, 10, 0.04, 0.4) == pytest.approx(0.4)


def _tiny_dino(arch: str = "resnet18", **kw) -> DINO:
    torch.manual_seed(0)
    student, dim = build_backbone(arch, small_stem=arch.startswith("resnet"))
    teacher, _ = build_backbone(arch, small_stem=arch.startswith("resnet"))
    cfg = DinoConfig(out_dim=32, hidden_dim=16, bottleneck_dim=8, **kw)
    ctx = MethodContext(arch=arch, small_stem=arch.startswith("resnet"), n_classes=None, world=1, batch_size=4,
                        global_views=2, seed=0, new_trunk=lambda: teacher)
    return DINO(student, dim, cfg, ctx)


def test_gradients_reach_the_student_only_and_the_teacher_moves_by_ema():
    model = _tiny_dino()
    assert all(torch.equal(a, b) for a, b in zip(model.teacher_trunk.state_dict().values(),
                                                  model.student_trunk.state_dict().values(), strict=True))
    views = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32), torch.randn(4, 3, 16, 16)]  # 2 global + 1 local
    model.begin_step(0, 10)
    loss = model(views, torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert all(p.grad is None for p in model.teacher_parameters())
    grads = [p.grad for p in model.student_trunk.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    assert model.student_head.last_layer.parametrizations.weight.original0.grad is None  # norm fixed to 1
    before = [p.detach().clone() for p in model.teacher_parameters()]
    with torch.no_grad():
        for p in model.student_trunk.parameters():
            p.add_(1.0)
    model.end_step()
    m = model.momentum
    for old, new, s in zip(before, model.teacher_parameters(),
                           [*model.student_trunk.parameters(), *model.student_head.parameters()], strict=True):
        assert torch.allclose(new, m * old + (1 - m) * s, atol=1e-6)


def test_frozen_last_layer_gets_no_update_for_its_steps():
    model = _tiny_dino(freeze_last_layer_steps=1)
    views = [torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)]
    model(views, torch.zeros(2, dtype=torch.long)).backward()
    model.before_optimizer_step(0)
    assert all(p.grad is None for p in model.student_head.last_layer.parameters())
    model(views, torch.zeros(2, dtype=torch.long)).backward()
    model.before_optimizer_step(1)
    assert model.student_head.last_layer.parametrizations.weight.original1.grad is not None


def test_random_masking_keeps_exactly_the_rounded_down_count_and_restores_order():
    x = torch.arange(3 * 10 * 2, dtype=torch.float64).view(3, 10, 2)
    kept, mask, ids_restore = random_masking(x, 0.75)
    assert kept.shape == (3, int(10 * 0.25), 2) and torch.equal(mask.sum(dim=1), torch.full((3,), 8.0))
    noise = torch.rand(3, 10)
    ids_shuffle = torch.argsort(noise, dim=1)
    kept, mask, ids_restore = random_masking(x, 0.75, noise)
    assert torch.equal(torch.gather(ids_shuffle, 1, ids_restore), torch.arange(10).expand(3, 10))
    for b in range(3):  # the kept tokens are the unmasked ones, in shuffle order
        assert torch.equal(kept[b], x[b, ids_shuffle[b, :2]])
        assert set(torch.nonzero(mask[b] == 0).flatten().tolist()) == set(ids_shuffle[b, :2].tolist())


def test_mae_loss_counts_masked_patches_only_and_normalises_pixels():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    target = patchify(images, 4)
    assert target.shape == (2, 4, 48) and torch.equal(unpatchify(target, 4, 2, 2), images)
    pred = torch.randn(2, 4, 48, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0]], dtype=torch.float64)
    # float64 reference: per masked patch, mean squared error against the patch's own normalised pixels
    want = []
    for b in range(2):
        for i in range(4):
            if mask[b, i]:
                t = target[b, i].numpy()
                t = (t - t.mean()) / np.sqrt(t.var(ddof=1) + 1e-6)
                want.append(np.mean((pred[b, i].numpy() - t) ** 2))
    assert masked_patch_loss(pred, target, mask, norm_pix=True).item() == pytest.approx(np.mean(want), rel=1e-12)
    changed = pred.clone()
    changed[mask == 0] += 5.0  # visible patches do not count
    assert masked_patch_loss(changed, target, mask, True).item() == pytest.approx(np.mean(want), rel=1e-12)
    raw = np.mean([np.mean((pred[b, i] - target[b, i]).numpy() ** 2) for b in range(2) for i in range(4) if mask[b, i]])
    assert masked_patch_loss(pred, target, mask, norm_pix=False).item() == pytest.approx(raw, rel=1e-12)


def test_mae_trunk_is_an_ordinary_vit_with_fixed_sincos_positions():
    from headcam.train.mae import MAE, sincos_2d

    trunk = build_vit("vit_small_patch16")
    model = MAE(trunk, decoder_width=32, decoder_depth=1, decoder_heads=4)
    assert not trunk.pos_embed.requires_grad and torch.allclose(trunk.pos_embed, sincos_2d(384, 14, 14))
    x = torch.randn(2, 3, 32, 32)
    model([x], torch.zeros(2, dtype=torch.long)).backward()
    assert trunk.pos_embed.grad is None and trunk.blocks[0].attn.qkv.weight.grad is not None
    assert trunk(x).shape == (2, 384)  # what headcam-eval extracts


VIT = ["arch=vit_small_patch16", "size=32", "optim.name=adamw"]
DINO_SMALL = ["dino.out_dim=256", "dino.hidden_dim=64", "dino.bottleneck_dim=32"]
MAE_SMALL = ["mae.decoder_width=64", "mae.decoder_depth=1", "mae.decoder_heads=4"]


@pytest.mark.parametrize("method", ["dino", "mae"])
def test_trains_a_vit_from_media_shards_and_checkpoints_the_eval_trunk(method, media_dataset, tmp_path):
    run = tmp_path / method
    # DINO's recipe adds 8 local crops; at size 32 they would be 14 px, not a whole 16 px patch: use 16
    extra = (DINO_SMALL + ["drop_path=0.1", "optim.clip_grad=1.0", "augment.local.n=2", "augment.local.size=16"]
             if method == "dino" else MAE_SMALL)
    assert main([DEMO, f"data={media_dataset}", f"out={run}", f"method={method}", "steps=2", *TINY, *VIT,
                 *extra]) == 0
    rows = metrics(run)
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    trunk = build_vit("vit_small_patch16")
    trunk.load_state_dict(ckpt["backbone"])
    if method == "mae":
        with Image.open(run / "recon.png") as img:  # the reconstruction gallery, in the run directory
            img.load()
            assert img.width > 150 and len(np.unique(np.asarray(img.convert("L")))) > 50
    if method == "dino":
        assert rows[0]["teacher_temp"] == 0.04 and 0.996 <= rows[0]["teacher_momentum"] < 1
        teacher = {k[len("teacher_trunk."):]: v for k, v in ckpt["model"].items() if k.startswith("teacher_trunk.")}
        assert all(torch.equal(teacher[k], v) for k, v in ckpt["backbone"].items())  # the teacher is evaluated


@pytest.mark.parametrize("method", ["dino", "mae"])
def test_overfits_a_tiny_set(method, tiny_dataset, tmp_path):
    run = tmp_path / method
    extra = (DINO_SMALL + ["arch=resnet18", "small_stem=true", "dino.momentum=0.9"] if method == "dino"
             else MAE_SMALL + ["arch=vit_small_patch16", "mae.norm_pix_loss=false"])
    assert main([DEMO, f"data={tiny_dataset}", f"out={run}", f"method={method}", "recipe=eval", "steps=12",
                 *TINY, "batch_size=24", "optim.lr=1e-3", "optim.schedule=constant", *extra]) == 0
    losses = [r["loss"] for r in metrics(run)]
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:2]) / 2, losses
