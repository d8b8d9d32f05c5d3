"""The SAY configs (configs/dino_say_*.yaml, configs/mae_say_*.yaml) against the scripts they transcribe.

Each config is compared, key by key, with a dict transcribed here from the reference: the shell script's
arguments over the parser's defaults, and what the code really indexes (eminorhan/dino ``train_dino.py`` at
aee8b85, the code of the 2022 SAY runs; eminorhan/mae ``train_mae.py`` at e52108e). A changed value in a config
fails here. Step counts come from the runs' logs: jobs resumed from their last checkpoint, written every 5000
iterations at ``it % 5000 == 0`` after that iteration's update, so a job logged up to ``it`` contributed
``it + 1`` updates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from headcam.train.config import load_train_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _updates(*job_ends: int) -> int:
    """Updates up to the last checkpoint of a run whose resumed jobs logged up to these ``it``."""
    return sum(end + 1 for end in job_ends)


# eminorhan/dino train_dino.py @ aee8b85: parser defaults and hard-coded values of every SAY DINO run
TRAIN_DINO_PY = {
    "method": "dino",
    "size": 224,  # :368, :375 RandomResizedCrop(224, ...)
    "n_views": 2,  # :367-378 two global crops, the teacher's
    "augment.crop.ratio": (3 / 4, 4 / 3),  # :368, :375 RandomResizedCrop's default ratio
    "augment.crop.interpolation": "bicubic",  # :368, :375, :384 interpolation=Image.BICUBIC (locals too)
    "augment.local.n": 8,  # :75 --local_crops_number default 8
    "augment.local.size": 96,  # :384 RandomResizedCrop(96, ...)
    "augment.local.blur_p": 0.5,  # :386 GaussianBlur(p=0.5)
    "augment.flip_p": 0.5,  # :357 RandomHorizontalFlip(p=0.5)
    "augment.jitter.p": 0.9,  # :358 RandomApply([ColorJitter(0.9, 0.9, 0.9, 0.5)], p=0.9)
    "augment.jitter.brightness": 0.9,
    "augment.jitter.contrast": 0.9,
    "augment.jitter.saturation": 0.9,
    "augment.jitter.hue": 0.5,
    "augment.jitter.order": "random",  # torchvision's ColorJitter applies its four in a random order
    "augment.grayscale_p": 0.2,  # :359 RandomGrayscale(p=0.2)
    "augment.blur.p_views": (1.0, 0.1),  # :370 GaussianBlur(1.0), :377 GaussianBlur(0.1)
    "augment.blur.sigma": (0.1, 2.0),  # dino_utils.py GaussianBlur radius_min=0.1, radius_max=2.
    "augment.solarize.p_views": (0.0, 0.2),  # :378 Solarization(0.2) on the second global crop only
    "augment.mean": (0.485, 0.456, 0.406),  # :363
    "augment.std": (0.229, 0.224, 0.225),
    "optim.betas": (0.9, 0.999),  # :166 torch.optim.AdamW(params_groups): torch's defaults
    "optim.decay_1d": False,  # dino_utils.get_params_groups: no decay on biases and 1-D tensors
    "optim.lr_scaling": "none",  # --lr is the rate (no batch / 256 rule in this train_dino.py)
    "optim.schedule": "constant",  # :219 param_group["lr"] = lr_schedule[0]
    "optim.warmup_steps": 0,  # --warmup_epochs default 0
    "optim.clip_mode": "per_tensor",  # dino_utils.clip_gradients: each parameter's gradient on its own
    "dino.out_dim": 65536,  # :50
    "dino.hidden_dim": 2048,  # vision_transformer.py DINOHead(hidden_dim=2048, bottleneck_dim=256, nlayers=3)
    "dino.bottleneck_dim": 256,
    "dino.norm_last_layer": True,  # :51
    "dino.momentum": 0.9995,  # :52
    "dino.momentum_schedule_steps": 100 * 1000,  # :181 cosine_scheduler(0.9995, 1, epochs=100 (:66), 1000)
    "dino.momentum_stride": 10,  # :255 momentum_schedule[GLOBAL_ITER // 10]
    "dino.warmup_teacher_temp": 0.04,  # :56-58, indexed by the epoch, which stays 0
    "dino.teacher_temp": 0.04,
    "dino.warmup_teacher_temp_steps": 0,
    "dino.student_temp": 0.1,  # :301 DINOLoss(student_temp=0.1, center_momentum=0.9)
    "dino.center_momentum": 0.9,
    "sync_bn": "auto",  # :133-135 SyncBatchNorm wherever the model has BatchNorm
    "shuffle_buffer": 10000,  # :104 .shuffle(10000, initial=10000)
    "seed": 1,  # :83 --seed default 1, :96 fix_random_seeds(args.seed)
    "ckpt_every": 5000,  # :81 --saveckp_freq default 5000
}

# the arguments every SAY DINO command passes (eminorhan/dino scripts/train_dino.sh:105-122 @ 83243f1 and the
# history blocks named below)
TRAIN_DINO_SH = {
    "precision": "fp32",  # --use_fp16 false
    "dino.freeze_last_layer_steps": 0,  # --freeze_last_layer 0
    "optim.lr": 1e-4,  # --lr 0.0001
    "optim.min_lr": 1e-4,  # --min_lr 0.0001
    "augment.crop.scale": (0.2, 1.0),  # --global_crops_scale 0.2 1
    "augment.local.scale": (0.05, 0.2),  # --local_crops_scale 0.05 0.2
    "optim.name": "adamw",  # --optimizer adamw
    "optim.weight_decay": 0.0,  # --weight_decay 0.0
    "optim.weight_decay_end": 0.0,  # --weight_decay_end 0.0
    "optim.clip_grad": 1.0,  # --clip_grad 1.0
}

DINO_SAY = {
    # scripts/train_dino.sh:105-122 @ 83243f1 (= 436f477 train_dino.sh:108-125), 4 GPUs (:3-5);
    # models_vitb14/say_5fps_vitb14_log.txt
    "dino_say_vitb14.yaml": {"arch": "vit_base_patch14", "batch_size": 116, "workers": 8, "drop_path": 0.1,
                             "steps": _updates(135000, 135000, 115000)},
    # train_dino.sh:21-37 @ bb27bd2 (2 GPUs) / a52b3f6 (4 GPUs); models_vits16/say_5fps_vits16_log.txt
    "dino_say_vits16.yaml": {"arch": "vit_small_patch16", "batch_size": 256, "workers": 8, "drop_path": 0.1,
                             "steps": _updates(75000, 125000)},
    # train_dino.sh:21-37 @ f42a7f2, 2 GPUs (first job: 53666d2, 4 x 128); models_vitb16/say_5fps_vitb16_log.txt
    "dino_say_vitb16.yaml": {"arch": "vit_base_patch16", "batch_size": 256, "workers": 4, "drop_path": 0.1,
                             "steps": _updates(130000, 130000)},
    # train_dino.sh:21-37 @ 454bcbd, 4 GPUs; train_dino.py @ 53666d2:125 .shuffle(1000);
    # models_vitl16/say_5fps_vitl16_log.txt
    "dino_say_vitl16.yaml": {"arch": "vit_large_patch16", "batch_size": 52, "workers": 8, "drop_path": 0.1,
                             "steps": _updates(95000, 95000), "shuffle_buffer": 1000},
    # scripts/train_dino_resnext.sh:20-36 @ 83243f1, 4 GPUs (:4-5); train_dino.py:124-127 torchvision model, no
    # drop-path; models_resnext50/say_5fps_resnext50_log.txt
    "dino_say_resnext50.yaml": {"arch": "resnext50_32x4d", "batch_size": 128, "workers": 8, "drop_path": 0.0,
                                "steps": _updates(175000, 155000)},
}

# eminorhan/mae train_mae.py @ e52108e: parser defaults and hard-coded values of every SAY MAE run
TRAIN_MAE_PY = {
    "method": "mae",
    "size": 224,  # :49 --input_size default 224
    "augment.crop.scale": (0.2, 1.0),  # :93 RandomResizedCrop(input_size, scale=(0.2, 1.0), interpolation=3)
    "augment.crop.interpolation": "bicubic",  # interpolation=3
    "augment.flip_p": 0.5,  # :93 RandomHorizontalFlip()
    "augment.jitter.p": 0.0,  # nothing else
    "augment.blur.p": 0.0,
    "augment.grayscale_p": 0.0,
    "augment.mean": (0.485, 0.456, 0.406),
    "augment.std": (0.229, 0.224, 0.225),
    "mae.mask_ratio": 0.75,  # :50
    "mae.norm_pix_loss": False,  # :51-52
    "mae.decoder_width": 512,  # models_mae.py:208-217 *_dec512d8b, aliases :230-232
    "mae.decoder_depth": 8,
    "mae.decoder_heads": 16,
    "optim.name": "adamw",  # :127 torch.optim.AdamW(param_groups, lr=args.lr, betas=(0.9, 0.95))
    "optim.betas": (0.9, 0.95),
    "optim.lr_scaling": "none",  # --lr is absolute; no lr scheduler
    "optim.schedule": "constant",
    "optim.warmup_steps": 0,
    "optim.decay_1d": False,  # :126 timm 0.3.2 add_weight_decay: none on biases and 1-D
    "optim.clip_grad": 0.0,  # :172 loss_scaler(...) without clip_grad
    "shuffle_buffer": 10000,  # :100
    "seed": 0,  # :66 --seed default 0, :83 fix_random_seeds
    "ckpt_every": 5000,  # :67 --saveckp_freq default 5000
}

TRAIN_MAE_SH = {
    "optim.lr": 3e-4,  # --lr 0.0003
    "optim.min_lr": 3e-4,  # --min_lr 0.0003 (no scheduler reads it)
    "optim.weight_decay": 0.0,  # --weight_decay 0.0
}

MAE_SAY = {
    # train_mae.sh:17-27 @ a0d9041, 1 GPU (:4-5); models_vits16/say_5fps_vits16_log.txt
    "mae_say_vits16.yaml": {"arch": "vit_small_patch16", "batch_size": 512, "workers": 8,
                            "steps": _updates(230000, 230000)},
    # train_mae.sh:21-30 @ a50aa1f, 2 GPUs (:5-6); models_vitl16/say_5fps_vitl16_log.txt
    "mae_say_vitl16.yaml": {"arch": "vit_large_patch16", "batch_size": 256, "workers": 4,
                            "steps": _updates(270000, 140000)},
}

EXPECTED = {**{name: {**TRAIN_DINO_PY, **TRAIN_DINO_SH, **own} for name, own in DINO_SAY.items()},
            **{name: {**TRAIN_MAE_PY, **TRAIN_MAE_SH, **own} for name, own in MAE_SAY.items()}}


def _value(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return tuple(cfg) if isinstance(cfg, list) else cfg


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_say_config_is_the_script_it_names(name):
    cfg = load_train_config(CONFIGS / name, ["data=x", "device=cpu"])
    differ = {key: (_value(cfg, key), want) for key, want in EXPECTED[name].items() if _value(cfg, key) != want}
    assert not differ, differ


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_its_comment_names_the_script_commit_and_the_gpus(name):
    head = (CONFIGS / name).read_text().split("\nmethod:")[0]
    repo, script = ("eminorhan/dino", "train_dino") if name.startswith("dino") else ("eminorhan/mae", "train_mae")
    assert repo in head and f"{script}" in head and "GPUs x batch per GPU" in head and "Not transcribable" in head


def test_every_say_config_is_tested():
    others = {"tc_say_resnext50.yaml", "mae_st_say_vith14.yaml"}  # the latter: tests/train/test_mae_st.py
    assert {p.name for p in CONFIGS.glob("*_say_*.yaml")} - others == set(EXPECTED)


def test_the_say_precision_follows_the_script_where_cuda_is_used():
    """--use_fp16 false: fp32 even on CUDA; MAE's train_mae.py: fp16 autocast with a GradScaler."""
    assert load_train_config(CONFIGS / "dino_say_vitb14.yaml", ["data=x", "device=cuda"]).precision == "fp32"
    assert load_train_config(CONFIGS / "mae_say_vits16.yaml", ["data=x", "device=cuda"]).precision == "fp16"
