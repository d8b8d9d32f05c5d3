"""The rows of configs/REFERENCES.md that name a test here, each against a transcription of its reference.

References (the commits REFERENCES.md reads): facebookresearch/dino @ 7c446df (``fd/``), facebookresearch/mae @
efb2a80 (``fm/``), facebookresearch/vicreg @ 4e12602 (``main_vicreg.py``, ``augmentations.py``, README),
eminorhan/baby-vision @ f0340ac (``bv/``). Transcribed bodies are the reference's, but for names; schedules run
in float64 as the reference's numpy and Python floats do. The dicts hold *effective* values: a command's arguments
over the parser's defaults, each with the file:line it comes from. A DEVIATES row's test pins headcam's documented
behaviour, so a change to it fails here and the row has to be rewritten.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _train_helpers import DEMO, TINY, load, metrics
from PIL import Image, ImageFilter
from test_say_recipes import _dino, cosine_scheduler
from timm.layers import DropPath
from torch import nn

from headcam.eval.cli import build_parser
from headcam.pipelines import maths
from headcam.pipelines.torch.blur import gaussian_blur
from headcam.train import ema
from headcam.train.backbones import build_backbone
from headcam.train.config import effective_lr, load_train_config
from headcam.train.knn import knn_votes
from headcam.train.methods.base import build_method
from headcam.train.optim import LARS, build_optimizer, clip_gradients, lr_factor
from headcam.train.registry import DinoConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
IMAGENET_TRAIN = 1_281_167  # ImageNet-1k training images (the ImageFolder every reference command reads)
DINO_SAY_VITS = ("dino_say_vitb14.yaml", "dino_say_vits16.yaml", "dino_say_vitb16.yaml", "dino_say_vitl16.yaml")


def _cfg(name: str, *overrides: str) -> Any:
    return load_train_config(CONFIGS / name, ["data=x", "device=cpu", *overrides])


def _value(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return tuple(cfg) if isinstance(cfg, list) else cfg


def _differ(cfg: Any, want: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {key: (_value(cfg, key), v) for key, v in want.items() if _value(cfg, key) != pytest.approx(v)}


# --- transcriptions -------------------------------------------------------------------------------------------------


def fd_clip_gradients(model, clip):
    """fd/utils.py:132-141."""
    norms = []
    for _name, p in model.named_parameters():
        if p.grad is not None:
            param_norm = p.grad.data.norm(2)
            norms.append(param_norm.item())
            clip_coef = clip / (param_norm + 1e-6)
            if clip_coef < 1:
                p.grad.data.mul_(clip_coef)
    return norms


def fd_cancel_gradients_last_layer(epoch, model, freeze_last_layer):
    """fd/utils.py:144-149."""
    if epoch >= freeze_last_layer:
        return
    for n, p in model.named_parameters():
        if "last_layer" in n:
            p.grad = None


def fd_teacher_temp_schedule(warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, nepochs):
    """fd/main_dino.py:374-378 (``DINOLoss.__init__``), read at ``[epoch]`` (:388)."""
    return np.concatenate((
        np.linspace(warmup_teacher_temp,
                    teacher_temp, warmup_teacher_temp_epochs),
        np.ones(nepochs - warmup_teacher_temp_epochs) * teacher_temp
    ))


def fm_adjust_learning_rate(epoch, args):
    """fm/util/lr_sched.py:9-15 (the rate it sets), ``epoch`` = data_iter_step / len(data_loader) + epoch
    (fm/engine_pretrain.py:43)."""
    if epoch < args["warmup_epochs"]:
        lr = args["lr"] * epoch / args["warmup_epochs"]
    else:
        lr = args["min_lr"] + (args["lr"] - args["min_lr"]) * 0.5 * \
            (1. + math.cos(math.pi * (epoch - args["warmup_epochs"]) / (args["epochs"] - args["warmup_epochs"])))
    return lr


def vicreg_adjust_learning_rate(args, len_loader, step):
    """main_vicreg.py:167-178 (the rate it sets)."""
    max_steps = args["epochs"] * len_loader
    warmup_steps = 10 * len_loader
    base_lr = args["base_lr"] * args["batch_size"] / 256
    if step < warmup_steps:
        lr = base_lr * step / warmup_steps
    else:
        step -= warmup_steps
        max_steps -= warmup_steps
        q = 0.5 * (1 + math.cos(math.pi * step / max_steps))
        end_lr = base_lr * 0.001
        lr = base_lr * q + end_lr * (1 - q)
    return lr


def exclude_bias_and_norm(p):
    """main_vicreg.py:235-236."""
    return p.ndim == 1


class VicregLARS(torch.optim.Optimizer):
    """main_vicreg.py:245-299."""

    def __init__(self, params, lr, weight_decay=0, momentum=0.9, eta=0.001, weight_decay_filter=None,
                 lars_adaptation_filter=None):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta,
                        weight_decay_filter=weight_decay_filter, lars_adaptation_filter=lars_adaptation_filter)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                dp = p.grad
                if dp is None:
                    continue
                if g["weight_decay_filter"] is None or not g["weight_decay_filter"](p):
                    dp = dp.add(p, alpha=g["weight_decay"])
                if g["lars_adaptation_filter"] is None or not g["lars_adaptation_filter"](p):
                    param_norm = torch.norm(p)
                    update_norm = torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(param_norm > 0.0,
                                    torch.where(update_norm > 0, (g["eta"] * param_norm / update_norm), one), one)
                    dp = dp.mul(q)
                param_state = self.state[p]
                if "mu" not in param_state:
                    param_state["mu"] = torch.zeros_like(p)
                mu = param_state["mu"]
                mu.mul_(g["momentum"]).add_(dp)
                p.add_(mu, alpha=-g["lr"])


@torch.no_grad()
def fd_knn_classifier(train_features, train_labels, test_features, test_labels, k, T, num_classes=1000):
    """fd/eval_knn.py:142-182, returning the votes (``probs``) of every test image as well; features L2-normalised
    first (:81-82)."""
    top1, top5, total = 0.0, 0.0, 0
    all_probs = []
    train_features = train_features.t()
    num_test_images, num_chunks = test_labels.shape[0], 100
    imgs_per_chunk = num_test_images // num_chunks
    retrieval_one_hot = torch.zeros(k, num_classes).to(train_features)
    for idx in range(0, num_test_images, imgs_per_chunk):
        features = test_features[idx: min((idx + imgs_per_chunk), num_test_images), :]
        targets = test_labels[idx: min((idx + imgs_per_chunk), num_test_images)]
        batch_size = targets.shape[0]
        similarity = torch.mm(features, train_features)
        distances, indices = similarity.topk(k, largest=True, sorted=True)
        candidates = train_labels.view(1, -1).expand(batch_size, -1)
        retrieved_neighbors = torch.gather(candidates, 1, indices)
        retrieval_one_hot.resize_(batch_size * k, num_classes).zero_()
        retrieval_one_hot.scatter_(1, retrieved_neighbors.view(-1, 1), 1)
        distances_transform = distances.clone().div_(T).exp_()
        probs = torch.sum(torch.mul(retrieval_one_hot.view(batch_size, -1, num_classes),
                                    distances_transform.view(batch_size, -1, 1)), 1)
        _, predictions = probs.sort(1, True)
        correct = predictions.eq(targets.data.view(-1, 1))
        top1 = top1 + correct.narrow(1, 0, 1).sum().item()
        top5 = top5 + correct.narrow(1, 0, min(5, k)).sum().item()
        total += targets.size(0)
        all_probs.append(probs)
    return top1 * 100.0 / total, top5 * 100.0 / total, torch.cat(all_probs)


# --- DINO original (facebookresearch/dino main_dino.py, README "Vanilla DINO training") -----------------------------

FD_STEPS_PER_EPOCH = IMAGENET_TRAIN // (64 * 8)  # DataLoader(drop_last=True) at 64 per GPU on 8 GPUs: 2,502

# main_dino.py:419-456 DataAugmentationDINO with the parser's crop defaults (:108-117)
DATA_AUGMENTATION_DINO = {
    "size": 224,  # :436, :443 RandomResizedCrop(224, ...)
    "augment.crop.scale": (0.4, 1.0),  # :108 --global_crops_scale default
    "augment.crop.ratio": (3 / 4, 4 / 3),  # torchvision's default
    "augment.crop.interpolation": "bicubic",  # :436, :443, :452 Image.BICUBIC
    "augment.flip_p": 0.5,  # :422
    "augment.jitter.p": 0.8,  # :423-425 RandomApply([ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8)
    "augment.jitter.brightness": 0.4,
    "augment.jitter.contrast": 0.4,
    "augment.jitter.saturation": 0.2,
    "augment.jitter.hue": 0.1,
    "augment.jitter.order": "random",  # torchvision's ColorJitter
    "augment.grayscale_p": 0.2,  # :427
    "augment.blur.p_views": (1.0, 0.1),  # :438 GaussianBlur(1.0), :445 GaussianBlur(0.1)
    "augment.blur.sigma": (0.1, 2.0),  # fd/utils.py:40 radius_min=0.1, radius_max=2.
    "augment.solarize.p_views": (0.0, 0.2),  # :446 Solarization(0.2), second crop only
    "augment.solarize.threshold": 0.5,  # ImageOps.solarize threshold 128 of 256
    "augment.local.n": 8,  # :112 --local_crops_number default
    "augment.local.size": 0,  # 0 = 96/224 of size: :452 RandomResizedCrop(96, ...)
    "augment.local.scale": (0.05, 0.4),  # :115 --local_crops_scale default
    "augment.local.blur_p": 0.5,  # :454 GaussianBlur(p=0.5)
    "augment.mean": (0.485, 0.456, 0.406),  # :431
    "augment.std": (0.229, 0.224, 0.225),
}


def test_original_dino_weight_decay_is_cosine_scheduler_on_the_first_group_only(tiny_dataset, tmp_path):
    """main_dino.py:244-248 wd_schedule = cosine_scheduler(0.04, 0.4, epochs, len(data_loader)), set at the global
    iteration (:308-312) on the first (regularised) group only; utils.get_params_groups puts biases and 1-D
    tensors in the second group at weight decay 0."""
    optim = _cfg("dino_original_vits16.yaml").optim
    assert (optim.weight_decay, optim.weight_decay_end, optim.decay_1d) == (0.04, 0.4, False)
    total = 100 * FD_STEPS_PER_EPOCH
    reference = cosine_scheduler(0.04, 0.4, 100, FD_STEPS_PER_EPOCH)
    for step in [*range(0, total, 997), total - 1]:
        assert ema.cosine(step, total, 0.04, 0.4) == pytest.approx(reference[step], abs=1e-15), step

    from headcam.train.cli import main

    run = tmp_path / "run"
    assert main([DEMO, f"data={tiny_dataset}", f"out={run}", "steps=2", *TINY, "optim.name=adamw",
                 "optim.weight_decay=0.04", "optim.weight_decay_end=0.4", "optim.decay_1d=false"]) == 0
    reference = cosine_scheduler(0.04, 0.4, 1, 2)  # [0.04, 0.22]
    logged = {row["step"]: row["weight_decay"] for row in metrics(run) if "weight_decay" in row}
    assert logged == pytest.approx({1: reference[0], 2: reference[1]}, abs=1e-15)
    decayed, plain = load(run)["optimizer"]["param_groups"]
    assert decayed["weight_decay"] == pytest.approx(reference[1], abs=1e-15) and plain["weight_decay"] == 0.0


def test_original_dino_teacher_temperature_is_the_vanilla_commands_and_the_boost_ramps_per_step():
    """README.md:165 passes no temperature flags: main_dino.py:68-75 defaults 0.04 -> 0.04 over 0 epochs, a
    constant. The "boosting" command (0.04 -> 0.07 over 30 epochs) reads np.linspace(0.04, 0.07, 30)[epoch]
    (:374-378, :388): a staircase of 30 values reaching 0.07 in epoch 29; ours rises per step and reaches 0.07 at
    step 30 epochs. They differ by under one stair (0.03 / 29)."""
    dino = _cfg("dino_original_vits16.yaml").dino
    assert (dino.warmup_teacher_temp, dino.teacher_temp, dino.warmup_teacher_temp_steps) == (0.04, 0.04, 0)
    model = _dino(DinoConfig(**{**dino.__dict__, "out_dim": 16, "hidden_dim": 8, "bottleneck_dim": 4}))
    for step in (0, 1, 75_000, 250_199):
        model.begin_step(step, 250_200)
        assert model.teacher_temp == 0.04

    per_epoch, epochs = 10, 100
    boosted = _dino(DinoConfig(out_dim=16, hidden_dim=8, bottleneck_dim=4, teacher_temp=0.07,
                               warmup_teacher_temp_steps=30 * per_epoch))
    reference = fd_teacher_temp_schedule(0.04, 0.07, 30, epochs)
    gaps = []
    for step in range(epochs * per_epoch):
        boosted.begin_step(step, epochs * per_epoch)
        gaps.append(boosted.teacher_temp - reference[step // per_epoch])
    gaps = np.abs(gaps)
    assert gaps[30 * per_epoch:].max() == 0  # both hold 0.07 after the warm-up
    assert 0.0009 < gaps.max() < 0.03 / 29  # the documented deviation: at most one stair


@pytest.mark.parametrize("name", ["dino_original_vits16.yaml", "vicreg_resnet50.yaml"])
def test_fp16_recipes_train_in_fp16_with_a_scaler_on_cuda(name):
    """main_dino.py:78 --use_fp16 default True (autocast + GradScaler, :233-235, :317, unscaled before clipping
    :336-344); main_vicreg.py:128, :138-142 autocast + GradScaler. ``precision: fp16`` on CUDA (the scaler's step:
    tests/train/test_precision.py), fp32 without CUDA."""
    assert load_train_config(CONFIGS / name, ["data=x", "device=cuda"]).precision == "fp16"
    assert _cfg(name).precision == "fp32"


def test_original_dino_lr_is_cosine_scheduler_with_its_linspace_warm_up():
    """main_dino.py:238-243 lr_schedule = cosine_scheduler(lr x batch / 256, min_lr, epochs, len(data_loader),
    warmup_epochs=10): np.linspace(0, lr, warm-up iterations), then the cosine, read at the global iteration (:310).
    ``optim.warmup_form: linspace`` gives it at every step."""
    cfg = _cfg("dino_original_vits16.yaml")
    o = cfg.optim
    assert (o.warmup_form, o.warmup_steps, o.schedule) == ("linspace", 10 * FD_STEPS_PER_EPOCH, "cosine")
    lr = effective_lr(o, cfg.batch_size * 8)
    assert lr == pytest.approx(5e-4 * 512 / 256)
    total = cfg.epochs * FD_STEPS_PER_EPOCH
    reference = cosine_scheduler(lr, o.min_lr, cfg.epochs, FD_STEPS_PER_EPOCH, warmup_epochs=10)
    assert reference[0] == 0.0 and reference[o.warmup_steps - 1] == lr
    for step in [*range(0, total, 613), o.warmup_steps - 1, o.warmup_steps, total - 1]:
        ours = lr * lr_factor(step, total, o.warmup_steps, o.schedule, o.min_lr / lr, o.warmup_form)
        assert ours == pytest.approx(reference[step], rel=1e-12, abs=1e-18), step


def test_original_dino_clips_each_tensor_at_3_and_freezes_the_last_layer_for_one_epoch():
    """main_dino.py:87 --clip_grad 3.0 and :93 --freeze_last_layer 1 (epochs), applied at :331-334 by
    utils.clip_gradients (each parameter's gradient on its own) and utils.cancel_gradients_last_layer."""
    cfg = _cfg("dino_original_vits16.yaml")
    assert (cfg.optim.clip_grad, cfg.optim.clip_mode) == (3.0, "per_tensor")
    assert cfg.dino.freeze_last_layer_steps == FD_STEPS_PER_EPOCH

    torch.manual_seed(0)
    ours = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 3)).double()
    for p, scale in zip(ours.parameters(), (0.1, 10.0, 1.0, 5.0, 0.01, 3.0), strict=True):
        p.grad = torch.randn_like(p) * scale
    theirs = [p.grad.clone() for p in ours.parameters()]
    reference = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 3)).double()
    for p, g in zip(reference.parameters(), theirs, strict=True):
        p.grad = g
    fd_clip_gradients(reference, 3.0)
    clip_gradients(ours, 3.0, "per_tensor")
    norms = [p.grad.norm().item() for p in ours.parameters()]
    assert min(norms) < 1 and max(norms) == pytest.approx(3.0, abs=1e-5)  # some clipped, some not
    for a, b in zip(ours.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=0)

    model = _dino(DinoConfig(out_dim=16, hidden_dim=8, bottleneck_dim=4,
                             freeze_last_layer_steps=cfg.dino.freeze_last_layer_steps))

    def dropped(apply, *args) -> set[str]:
        for p in model.parameters():
            p.grad = torch.ones_like(p) if p.requires_grad else None
        apply(*args)
        return {n for n, p in model.named_parameters() if p.requires_grad and p.grad is None}

    for step in (0, FD_STEPS_PER_EPOCH - 1, FD_STEPS_PER_EPOCH, 10 * FD_STEPS_PER_EPOCH):
        cut = dropped(model.before_optimizer_step, step)
        assert cut == dropped(fd_cancel_gradients_last_layer, step // FD_STEPS_PER_EPOCH, model, 1)
        assert bool(cut) == (step < FD_STEPS_PER_EPOCH), step


def test_dino_student_drops_paths_linearly_to_0_1_and_the_teacher_none():
    """main_dino.py:105 --drop_path_rate 0.1 on the student only (:162-166); vision_transformer.py:150 the rate of
    block i is torch.linspace(0, rate, depth)[i]. The SAY scripts hard-code the same (eminorhan/dino
    train_dino.py:120-121)."""
    assert {_cfg(name).drop_path for name in ("dino_original_vits16.yaml", *DINO_SAY_VITS)} == {0.1}
    cfg = _cfg("dino_original_vits16.yaml", "dino.out_dim=64")
    trunk, dim = build_backbone(cfg.arch, cfg.small_stem, cfg.drop_path, cfg.pos_interp, method=cfg.method)
    model = build_method(cfg, trunk, dim, n_classes=None, world=1)

    def rates(vit: nn.Module) -> list[float]:
        return [b.drop_path1.drop_prob if isinstance(b.drop_path1, DropPath) else 0.0 for b in vit.blocks]

    reference = [x.item() for x in torch.linspace(0, 0.1, 12)]
    assert rates(model.student_trunk) == reference and rates(model.teacher_trunk) == [0.0] * 12


def test_original_dino_views_are_data_augmentation_dino():
    """main_dino.py:419-456: two global crops and 8 local ones, BYOL's colour ops (not SAYCam's 0.9 jitter)."""
    assert not _differ(_cfg("dino_original_vits16.yaml"), DATA_AUGMENTATION_DINO)


# --- blur: PIL's GaussianBlur in every reference, a truncated Gaussian here -----------------------------------------


def test_blur_is_a_gaussian_cut_to_a_tenth_of_the_side_where_the_references_use_pils():
    """DINO (fd/utils.py:36-54, ed/dino_utils.py:36-50), baby-vision (bv/utils.py:6-15) and VICReg
    (augmentations.py:14-23) blur with PIL's ``GaussianBlur(radius=sigma)``, sigma ~ U(0.1, 2): three box passes
    over the whole image. Ours is a sampled Gaussian over a kernel of 10 % of the side (odd), cut further at
    ±4 sigma. At 224 px the cut never bites (17 taps at sigma 2) and ours is the exact Gaussian, within PIL's own
    box approximation of it (2.3 levels); at 96 px (DINO's local crops) sigma 2 keeps ±2 sigma (9 taps), up to
    ~9 levels from PIL on a checkerboard."""
    sigmas = torch.tensor([0.1, 0.5, 1.0, 2.0], dtype=torch.float64)
    assert maths.blur_kernel_sizes(sigmas, 224, 0.1).tolist() == [3, 5, 9, 17]
    assert maths.blur_kernel_sizes(sigmas, 96, 0.1).tolist() == [3, 5, 9, 9]
    for name in ("dino_say_vits16.yaml", "dino_original_vits16.yaml", "tc_say_resnext50.yaml",
                 "vicreg_resnet50.yaml"):
        blur = _cfg(name).augment.blur
        assert (blur.kernel_frac, blur.sigma) == (0.1, (0.1, 2.0)), name

    def levels_from_pil(side: int, sigma: float) -> float:
        yy, xx = np.mgrid[:side, :side]
        board = (((yy // 8 + xx // 8) % 2) * 255).astype(np.uint8)
        rgb = np.stack([board, board[::-1], board.T], -1)
        pil = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(radius=sigma)), dtype=np.float64)
        s = torch.tensor([sigma], dtype=torch.float64)
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].double()
        ours = gaussian_blur(x, s, maths.blur_kernel_sizes(s, side, 0.1))[0].permute(1, 2, 0).numpy()
        return float(np.abs(ours - pil).max())

    assert levels_from_pil(224, 2.0) < 2.5 and levels_from_pil(96, 1.0) < 2.5
    assert 6 < levels_from_pil(96, 2.0) < 12  # the documented deviation


# --- MAE original (facebookresearch/mae main_pretrain.py, PRETRAIN.md) -----------------------------------------------

# PRETRAIN.md:5-16 (8 nodes x 8 GPUs x batch 64, --norm_pix_loss --mask_ratio 0.75 --epochs 800 --warmup_epochs 40
# --blr 1.5e-4 --weight_decay 0.05) over main_pretrain.py's parser (:40-72) and code (:123-127, :163-166, :179-180)
MAE_STEPS_PER_EPOCH = IMAGENET_TRAIN // 4096  # :152 drop_last=True: 312
MAIN_PRETRAIN = [
    "method=mae", "arch=vit_large_patch16", "size=224", "batch_size=64", "epochs=800",  # ViT-L (PRETRAIN.md:10)
    "optim.name=adamw", "optim.betas=[0.9, 0.95]", "optim.lr=1.5e-4", "optim.lr_scaling=linear", "optim.min_lr=0",
    "optim.weight_decay=0.05", "optim.decay_1d=false", "optim.schedule=cosine", "optim.clip_grad=0",
    f"optim.warmup_steps={40 * MAE_STEPS_PER_EPOCH}", "optim.warmup_form=zero", "mae.mask_ratio=0.75",
    "mae.norm_pix_loss=true", "precision=fp16",  # :178-182 NativeScaler: autocast + GradScaler, no clipping
]


def test_mae_original_pretraining_is_a_set_of_keys_and_its_lr_is_lr_sched():
    """No config ships (the row says missing): the keys above give the recipe, and its schedule is
    lr_sched.adjust_learning_rate per step (engine_pretrain.py:41-43), warm-up included (``warmup_form: zero``:
    0 at the first step)."""
    cfg = load_train_config(None, ["data=x", "device=cpu", *MAIN_PRETRAIN])
    assert cfg.recipe == "mae" and cfg.augment.crop.scale == (0.2, 1.0)  # :124 RandomResizedCrop(scale=(0.2, 1.0))
    assert cfg.augment.crop.interpolation == "bicubic" and cfg.augment.flip_p == 0.5  # :124 interpolation=3, :125
    lr = effective_lr(cfg.optim, cfg.batch_size * 64)
    assert lr == pytest.approx(1.5e-4 * 4096 / 256)  # :165-166 args.lr = args.blr * eff_batch_size / 256
    args = {"lr": lr, "min_lr": 0.0, "warmup_epochs": 40, "epochs": 800}
    total, warmup = 800 * MAE_STEPS_PER_EPOCH, cfg.optim.warmup_steps
    assert load_train_config(None, ["data=x", "device=cuda", *MAIN_PRETRAIN]).precision == "fp16"
    for step in [*range(0, total, 1231), 1, warmup - 1, warmup, total - 1]:
        ours = lr * lr_factor(step, total, warmup, cfg.optim.schedule, cfg.optim.min_lr / lr, cfg.optim.warmup_form)
        theirs = fm_adjust_learning_rate(step / MAE_STEPS_PER_EPOCH, args)
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-18), step


# --- baby-vision temporal classification (temporal_classification.py) ------------------------------------------------

# bv/temporal_classification.py:113-124 (--augmentation default True), in torchvision's order
TEMPORAL_CLASSIFICATION_PY = {
    "size": 224,  # :117 RandomResizedCrop(224, scale=(0.2, 1.))
    "augment.crop.scale": (0.2, 1.0),
    "augment.crop.ratio": (3 / 4, 4 / 3),
    "augment.crop.interpolation": "bilinear",  # torchvision's default
    "augment.jitter.p": 0.9,  # :118 RandomApply([ColorJitter(0.9, 0.9, 0.9, 0.5)], p=0.9)
    "augment.jitter.brightness": 0.9,
    "augment.jitter.contrast": 0.9,
    "augment.jitter.saturation": 0.9,
    "augment.jitter.hue": 0.5,
    "augment.jitter.order": "random",
    "augment.grayscale_p": 0.2,  # :119
    "augment.blur.p": 0.5,  # :120 RandomApply([GaussianBlur([.1, 2.])], p=0.5)
    "augment.blur.p_views": (),
    "augment.blur.sigma": (0.1, 2.0),
    "augment.flip_p": 0.5,  # :121
    "augment.solarize.p": 0.0,
    "augment.solarize.p_views": (),
    "augment.local.n": 0,
    "augment.mean": (0.485, 0.456, 0.406),  # :111
    "augment.std": (0.229, 0.224, 0.225),
    "n_views": 0,  # 0 = tc's own: one view
}


def test_tc_say_head_is_a_fresh_linear_from_resnext_features_to_the_datasets_classes():
    """temporal_classification.py:86-88: torchvision resnext50_32x4d, ``fc`` replaced by Linear(2048, n_out);
    n_out is the class count of the data (scripts/temporal_classification.sh: 1718 for Y; the TC-SAY file has
    6269, scripts/linear_decoding.sh). Ours reads the count from the dataset's segments."""
    cfg = _cfg("tc_say_resnext50.yaml")
    assert (cfg.method, cfg.arch, cfg.small_stem) == ("tc", "resnext50_32x4d", False)
    trunk, dim = build_backbone(cfg.arch, cfg.small_stem, method=cfg.method)
    model = build_method(cfg, trunk, dim, n_classes=6269, world=1)
    assert (model.classifier.in_features, model.classifier.out_features) == (2048, 6269)
    assert model.classifier.bias is not None


def test_tc_say_optimiser_is_adam_5e4_without_decay_constant_batch_256_for_16_epochs():
    """temporal_classification.py:29 (16 epochs), :31 (batch 256, over the node's GPUs), :34 (lr 5e-4), :36
    (wd 0), :97 torch.optim.Adam(model.parameters(), lr, weight_decay=0): no scheduler, no warm-up."""
    cfg = _cfg("tc_say_resnext50.yaml")
    assert (cfg.batch_size, cfg.epochs, cfg.steps) == (256, 16, 0)
    o = cfg.optim
    assert (o.name, o.lr, o.lr_scaling, o.weight_decay, o.warmup_steps) == ("adam", 5e-4, "none", 0.0, 0)
    optimizer = build_optimizer(nn.Linear(4, 2), o.name, effective_lr(o, 256), o.weight_decay, o.momentum,
                                o.lars_eta, o.betas, o.decay_1d)
    reference = torch.optim.Adam(nn.Linear(4, 2).parameters(), 5e-4, weight_decay=0.0).defaults
    assert isinstance(optimizer, torch.optim.Adam) and len(optimizer.param_groups) == 1
    group = optimizer.param_groups[0]
    assert {k: group[k] for k in ("lr", "betas", "eps", "weight_decay", "amsgrad")} == \
        {k: reference[k] for k in ("lr", "betas", "eps", "weight_decay", "amsgrad")}
    assert {lr_factor(s, 16 * 1000, o.warmup_steps, o.schedule) for s in range(0, 16_000, 7)} == {1.0}


def test_tc_say_views_are_temporal_classification_pys():
    assert not _differ(_cfg("tc_say_resnext50.yaml"), TEMPORAL_CLASSIFICATION_PY)


# --- DINO kNN (facebookresearch/dino eval_knn.py) ---------------------------------------------------------------------


@pytest.mark.parametrize("k", [10, 20, 100, 200])
def test_knn_votes_are_eval_knn_knn_classifier(k):
    """eval_knn.py:81-82 (L2-normalised), :142-182 (top-k cosine neighbours vote exp(sim / T)), :194-197 (k in
    10, 20, 100, 200; T 0.07). ``headcam-eval knn`` takes one k per call, DINO's 20 by default."""
    args = build_parser().parse_args(["knn", "--model", "m", "--data", "d", "--out", "o"])
    assert (args.k, args.temperature) == (20, 0.07)
    gen = torch.Generator().manual_seed(k)
    n_classes = 7
    bank, queries = torch.randn(400, 16, generator=gen), torch.randn(300, 16, generator=gen)
    bank_labels, query_labels = torch.randint(0, n_classes, (400,), generator=gen), torch.randint(0, 7, (300,))
    top1, top5, probs = fd_knn_classifier(nn.functional.normalize(bank.double(), dim=1), bank_labels,
                                          nn.functional.normalize(queries.double(), dim=1), query_labels, k, 0.07,
                                          num_classes=n_classes)
    votes = knn_votes(bank, bank_labels, queries, n_classes, k=k, temperature=0.07).double()
    torch.testing.assert_close(votes, probs, rtol=2e-5, atol=0)
    order = votes.argsort(dim=1, descending=True)
    assert 100.0 * (order[:, 0] == query_labels).double().mean().item() == pytest.approx(top1)
    assert 100.0 * (order[:, :5] == query_labels[:, None]).any(1).double().mean().item() == pytest.approx(top5)


# --- VICReg (facebookresearch/vicreg main_vicreg.py, augmentations.py, README) ---------------------------------------

VICREG_GPUS = 4 * 8  # README.md:80 run_with_submitit.py --nodes 4 --ngpus 8
VICREG_STEPS_PER_EPOCH = math.ceil(IMAGENET_TRAIN / 2048)  # main_vicreg.py:98-104: no drop_last, 626

# augmentations.py:37-84 TrainTransform (transform, transform_prime)
TRAIN_TRANSFORM = {
    "size": 224,  # :41-42 RandomResizedCrop(224, interpolation=BICUBIC): scale torchvision's default
    "augment.crop.scale": (0.08, 1.0),
    "augment.crop.ratio": (3 / 4, 4 / 3),
    "augment.crop.interpolation": "bicubic",
    "augment.flip_p": 0.5,  # :44
    "augment.jitter.p": 0.8,  # :45-52
    "augment.jitter.brightness": 0.4,
    "augment.jitter.contrast": 0.4,
    "augment.jitter.saturation": 0.2,
    "augment.jitter.hue": 0.1,
    "augment.jitter.order": "random",
    "augment.grayscale_p": 0.2,  # :53
    "augment.blur.p_views": (1.0, 0.1),  # :54 GaussianBlur(p=1.0), :77 GaussianBlur(p=0.1)
    "augment.blur.sigma": (0.1, 2.0),  # :20 sigma = rand() * 1.9 + 0.1
    "augment.solarize.p_views": (0.0, 0.2),  # :55 Solarization(p=0.0), :78 Solarization(p=0.2)
    "augment.local.n": 0,
    "augment.mean": (0.485, 0.456, 0.406),  # :57-59
    "augment.std": (0.229, 0.224, 0.225),
}


def test_vicreg_lars_is_main_vicregs_with_its_values():
    """main_vicreg.py:54 --wd 1e-6; :109-115 LARS(lr=0, weight_decay, exclude_bias_and_norm for both filters),
    momentum 0.9 and eta 0.001 its defaults (:246-255). Two steps of ours from the resolved config equal two of the
    transcription on a net with 1-D parameters."""
    o = _cfg("vicreg_resnet50.yaml").optim
    assert (o.name, o.momentum, o.lars_eta, o.weight_decay) == ("lars", 0.9, 0.001, 1e-6)
    torch.manual_seed(0)
    ours = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3, bias=False)).double()
    theirs = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3, bias=False)).double()
    theirs.load_state_dict(ours.state_dict())
    opt = build_optimizer(ours, o.name, 0.3, o.weight_decay, o.momentum, o.lars_eta, o.betas, o.decay_1d)
    ref = VicregLARS(theirs.parameters(), lr=0.3, weight_decay=1e-6, weight_decay_filter=exclude_bias_and_norm,
                     lars_adaptation_filter=exclude_bias_and_norm)
    assert isinstance(opt, LARS)
    x = torch.randn(8, 5, dtype=torch.float64)
    for _ in range(2):
        for net, step in ((ours, opt), (theirs, ref)):
            net.zero_grad()
            net(x).pow(2).mean().backward()
            step.step()
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


def test_vicreg_lr_is_adjust_learning_rate():
    """main_vicreg.py:167-178: base-lr x batch / 256, 10 warm-up epochs from 0 (``warmup_form: zero``), cosine to
    lr x 0.001 over the rest, per step; README.md:80 --base-lr 0.2 --batch-size 2048 --epochs 1000."""
    cfg = _cfg("vicreg_resnet50.yaml")
    o = cfg.optim
    assert (o.lr, o.lr_scaling, o.schedule) == (pytest.approx(0.2 * 2048 / 256), "none", "cosine")
    assert o.min_lr == pytest.approx(o.lr * 0.001) and o.warmup_steps == 10 * VICREG_STEPS_PER_EPOCH
    assert o.warmup_form == "zero"
    args = {"epochs": 1000, "base_lr": 0.2, "batch_size": 2048}
    total = 1000 * VICREG_STEPS_PER_EPOCH
    lr = effective_lr(o, cfg.batch_size * VICREG_GPUS)
    for step in [*range(0, total, 1231), 1, o.warmup_steps - 1, o.warmup_steps, total - 1]:
        ours = lr * lr_factor(step, total, o.warmup_steps, o.schedule, o.min_lr / lr, o.warmup_form)
        want = vicreg_adjust_learning_rate(args, VICREG_STEPS_PER_EPOCH, step)
        assert ours == pytest.approx(want, rel=1e-12, abs=0), step


def test_vicreg_batch_is_the_readme_commands_2048_over_32_gpus_for_1000_epochs():
    """README.md:80 --nodes 4 --ngpus 8 --epochs 1000 --batch-size 2048; main_vicreg.py:96-97 per-device batch =
    batch-size / world-size."""
    cfg = _cfg("vicreg_resnet50.yaml")
    assert cfg.batch_size * VICREG_GPUS == 2048 and (cfg.epochs, cfg.steps) == (1000, 0)


def test_vicreg_views_are_augmentations_train_transform():
    cfg = _cfg("vicreg_resnet50.yaml")
    assert cfg.recipe == "byol" and not _differ(cfg, TRAIN_TRANSFORM)


def _last_bns(trunk: nn.Module) -> list[torch.Tensor]:
    """The weight of each residual block's last BatchNorm (bn3 of a Bottleneck, bn2 of a BasicBlock)."""
    blocks = [b for layer in (trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4) for b in layer]
    return [(b.bn3 if hasattr(b, "bn3") else b.bn2).weight for b in blocks]


def test_vicreg_resnet_is_zero_init_residual(tiny_dataset, tmp_path):
    """main_vicreg.py:189-191 builds ``resnet50(zero_init_residual=True)``: each residual block's last BatchNorm
    weight starts at 0 (the other BatchNorms at 1), so every block starts as the identity. The key is off by
    default (torchvision's init) and the trainer builds the trunk with it."""
    cfg = _cfg("vicreg_resnet50.yaml")
    assert cfg.zero_init_residual is True
    trunk, _ = build_backbone(cfg.arch, cfg.small_stem, method=cfg.method, zero_init_residual=cfg.zero_init_residual)
    last = _last_bns(trunk)
    assert len(last) == 16 and all(bool((w == 0).all()) for w in last)
    assert all(bool((b.bn1.weight == 1).all() and (b.bn2.weight == 1).all()) for b in trunk.layer4)
    assert all(bool((w == 1).all()) for w in _last_bns(build_backbone(cfg.arch, method=cfg.method)[0]))

    from headcam.train.cli import main

    run = tmp_path / "run"
    assert main([DEMO, f"data={tiny_dataset}", f"out={run}", "steps=1", *TINY, "zero_init_residual=true",
                 "optim.lr=1e-4"]) == 0
    trained, _ = build_backbone("resnet18")
    trained.load_state_dict(load(run)["backbone"])
    assert max(w.abs().max().item() for w in _last_bns(trained)) <= 1e-4 * 1.01  # one Adam step from 0


# --- SimCLR (google-research/simclr tf2/model.py, tf2/resnet.py) -----------------------------------------------------


def simclr_warm_up_and_cosine_decay(step, scaled_lr, warmup_steps, total_steps):
    """tf2/model.py WarmUpAndCosineDecay.__call__ (the rate it returns), tf.keras CosineDecay with alpha 0."""
    learning_rate = step / float(warmup_steps) * scaled_lr if warmup_steps else scaled_lr
    decay_steps = total_steps - warmup_steps
    cosine_decay = scaled_lr * 0.5 * (1 + math.cos(math.pi * min(step - warmup_steps, decay_steps) / decay_steps))
    return learning_rate if step < warmup_steps else cosine_decay


@pytest.mark.parametrize("name", ["simclr_cifar10_resnet18.yaml", "simclr_stl10_resnet18.yaml"])
def test_simclr_configs_warm_up_from_zero_and_zero_init_their_blocks(name):
    """tf2/model.py: step / warmup_steps x lr from 0, then CosineDecay; tf2/resnet.py ResidualBlock: the block's
    last BatchNormRelu(init_zero=True), torchvision's zero_init_residual."""
    cfg = _cfg(name)
    o = cfg.optim
    assert (o.warmup_form, cfg.zero_init_residual) == ("zero", True)
    total = 100 * o.warmup_steps
    for step in [*range(0, total, 997), 1, o.warmup_steps - 1, o.warmup_steps, total - 1]:
        ours = o.lr * lr_factor(step, total, o.warmup_steps, o.schedule, o.min_lr / o.lr, o.warmup_form)
        assert ours == pytest.approx(simclr_warm_up_and_cosine_decay(step, o.lr, o.warmup_steps, total),
                                     rel=1e-12, abs=1e-18), step
    trunk, _ = build_backbone(cfg.arch, cfg.small_stem, zero_init_residual=cfg.zero_init_residual)
    assert all(bool((w == 0).all()) for w in _last_bns(trunk))


# --- BYOL (google-deepmind/deepmind-research byol/utils/schedules.py, utils/networks.py) ------------------------------


def byol_learning_schedule(global_step, batch_size, base_learning_rate, total_steps, warmup_steps):
    """byol/utils/schedules.py learning_schedule and _cosine_decay, in float64."""
    scaled_lr = base_learning_rate * batch_size / 256.
    learning_rate = global_step / int(warmup_steps) * scaled_lr if warmup_steps > 0 else scaled_lr
    step = min(global_step - warmup_steps, total_steps - warmup_steps)
    decayed = scaled_lr * 0.5 * (1 + math.cos(math.pi * step / (total_steps - warmup_steps)))
    return learning_rate if global_step < warmup_steps else decayed


def test_byol_warms_up_from_zero_and_zero_inits_its_bottlenecks():
    """schedules.py: step / warmup_steps x (0.2 x 4096 / 256) from 0, then a cosine to 0; networks.py ResNet50 is
    haiku's BlockGroup of bottleneck BlockV1s, whose batchnorm_2 starts at scale 0 (torchvision's bn3)."""
    cfg = _cfg("byol_resnet50.yaml")
    o = cfg.optim
    assert (o.warmup_form, o.lr_scaling, cfg.zero_init_residual) == ("zero", "none", True)
    total = 1000 * 312
    for step in [*range(0, total, 1231), 1, o.warmup_steps - 1, o.warmup_steps, total - 1]:
        ours = o.lr * lr_factor(step, total, o.warmup_steps, o.schedule, o.min_lr / o.lr, o.warmup_form)
        assert ours == pytest.approx(byol_learning_schedule(step, 4096, 0.2, total, o.warmup_steps),
                                     rel=1e-12, abs=1e-18), step
    trunk, _ = build_backbone(cfg.arch, zero_init_residual=cfg.zero_init_residual)
    assert all(bool((w == 0).all()) for w in _last_bns(trunk))
