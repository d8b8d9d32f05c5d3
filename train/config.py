"""The typed config of one training run: every key, its default and what it means, in one place.

``configs/*.yaml`` only override these defaults and ``key=value`` arguments override the file
(:func:`load_train_config`); the resolved config is printed and saved in the run directory as
``config.yaml`` and inside every checkpoint.

The ``augment`` section is the pipelines' own :class:`~headcam.pipelines.spec.AugmentSpec`. Its
base is the preset of ``recipe`` (a name from the one registry, :func:`headcam.pipelines.spec.recipe_names`,
or a recipe YAML path; empty = the method's published recipe), and the YAML's ``augment:`` keys
and ``augment.x.y=v`` arguments change that preset key by key: a file that turns foveation on plus
``augment.blur.p=0`` on the command line gives foveation on and blur off.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from headcam.config import merge_into, read_config
from headcam.console import UsageError
from headcam.pipelines.params import local_side
from headcam.pipelines.spec import AugmentSpec, recipe_spec
from headcam.train.backbones import ARCHS, VITS, check_input_size
from headcam.train.monitor import MonitorConfig
from headcam.train.monitor import check as check_monitor

METHODS = ("tc", "moco", "moco_temporal", "simclr", "byol", "dino", "mae")
DEFAULT_RECIPE = {"tc": "babyvision_tc", "moco": "mocov2", "moco_temporal": "mocov2", "simclr": "simclr",
                  "byol": "byol", "dino": "dino", "mae": "mae"}


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | adamw | sgd | lars
    lr: float = 5e-4  # peak learning rate (after warm-up)
    min_lr: float = 0.0  # where the cosine ends (DINO: 1e-6)
    weight_decay: float = 0.0
    weight_decay_end: float | None = None  # cosine from weight_decay to this (DINO: 0.04 -> 0.4); None = constant
    decay_1d: bool = True  # false: no weight decay on biases and 1-D parameters (norms), as DINO and MAE
    momentum: float = 0.9  # sgd and lars
    betas: tuple[float, float] = (0.9, 0.999)  # adam and adamw (MAE: 0.9, 0.95)
    warmup_steps: int = 0  # linear warm-up from 0 to lr
    schedule: str = "cosine"  # cosine (to min_lr at the last step) | constant
    lars_eta: float = 0.001  # LARS trust coefficient
    clip_grad: float = 0.0  # gradient clipping threshold; 0 = off (DINO: 3.0, SAYCam 1.0)
    clip_mode: str = "per_tensor"  # per_tensor (each gradient on its own, as DINO) | global (one norm)


@dataclass
class MocoConfig:
    dim: int = 128  # output of the projection head
    queue: int = 65536  # K; a multiple of the global batch (batch_size x ranks)
    m: float = 0.999  # momentum of the key encoder
    T: float = 0.2  # temperature
    mlp: bool = True  # MoCo v2 head d -> d -> dim (False: MoCo v1 linear head)


@dataclass
class SimclrConfig:
    T: float = 0.1  # temperature (STL-10 recipe: 0.07)
    proj_hidden: int = 0  # hidden width of the projection MLP; 0 = feature dimension
    proj_dim: int = 128  # output of the projection MLP


@dataclass
class ByolConfig:
    proj_hidden: int = 4096  # projector and predictor: Linear(hidden) -> BN -> ReLU -> Linear(proj_dim)
    proj_dim: int = 256
    pred_hidden: int = 4096
    momentum: float = 0.996  # target EMA τ_base at step 0, to 1 by a cosine (0.99 for runs of <= 300 epochs)


@dataclass
class DinoConfig:
    out_dim: int = 65536  # K, the last layer of the DINO head
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    norm_last_layer: bool = True  # the last layer's weight norm fixed to 1
    student_temp: float = 0.1
    teacher_temp: float = 0.04  # after warm-up (original: 0.07 after 0.04 -> 0.07; SAYCam: 0.04 throughout)
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_steps: int = 0
    momentum: float = 0.996  # teacher EMA at step 0, to 1 by a cosine (SAYCam: 0.9995)
    center_momentum: float = 0.9
    freeze_last_layer_steps: int = 0  # the last layer's gradient dropped for this many steps (original: 1 epoch)


@dataclass
class MaeConfig:
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True  # per-patch normalised pixel targets (SAYCam runs: false)
    decoder_width: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16


@dataclass
class TrainConfig:
    method: str = "simclr"  # tc | moco | moco_temporal | simclr | byol | dino | mae
    data: str = ""  # dataset directory written by headcam-ingest
    split: str = "train"
    out: str = "runs/train"  # run directory: checkpoint.pt, config.yaml, metrics.jsonl, tb/
    backend: str = "torch"  # augmentation backend: torch | dali
    recipe: str = ""  # augmentation recipe (name or YAML path); "" = the method's published one
    augment: AugmentSpec = field(default_factory=AugmentSpec)  # the recipe's preset, changed key by key
    n_views: int = 0  # views per image; 0 = the method's own (tc 1, others 2)
    temporal_window: int = 1  # moco_temporal: key frame within +-w sampled frames of the query
    size: int = 224  # view side in pixels
    arch: str = "resnet18"  # resnet18 | resnet50 | resnext50_32x4d | mobilenet_v2 | vit_small_patch16 | ...
    small_stem: bool = False  # 3x3 stride-1 stem, no max-pool (CIFAR-size images)
    drop_path: float = 0.0  # stochastic depth of a ViT trunk while training (DINO's student: 0.1)
    batch_size: int = 256  # per process (global batch = batch_size x ranks)
    steps: int = 0  # optimiser steps; 0 = epochs x steps of the first epoch
    epochs: int = 1
    optim: OptimConfig = field(default_factory=OptimConfig)
    moco: MocoConfig = field(default_factory=MocoConfig)
    simclr: SimclrConfig = field(default_factory=SimclrConfig)
    byol: ByolConfig = field(default_factory=ByolConfig)
    dino: DinoConfig = field(default_factory=DinoConfig)
    mae: MaeConfig = field(default_factory=MaeConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)  # online kNN monitor (monitor.data, .every)
    workers: int = 4  # DataLoader workers per process
    shuffle_buffer: int = 1000
    seed: int = 0
    deterministic: bool = False  # deterministic kernels (bit-exact resume on CPU)
    ckpt_every: int = 1000  # steps between checkpoints (also saved at the end and on SIGTERM)
    resume: str = "auto"  # auto (OUT/checkpoint.pt if present) | never | PATH
    log_every: int = 20  # steps between metric lines
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = True  # bf16 autocast (CUDA only; shown and saved as false on a run without CUDA)
    channels_last: bool = True  # channels-last memory format (CUDA only; likewise)


def load_train_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """Defaults <- YAML at ``path`` <- ``key=value`` overrides, resolved (:func:`resolve`) and validated:
    every user mistake is a one-line UsageError here, before any model or data is touched."""
    data = read_config(path, overrides)
    augment = data.pop("augment", None)
    if augment is None:
        augment = {}
    if not isinstance(augment, dict):
        raise UsageError(f"config key 'augment' is a section; give its keys (augment.blur.p=0), and name a "
                         f"recipe or a recipe YAML with recipe= (got augment={augment!r})")
    return resolve(merge_into(TrainConfig(), data, TrainConfig), augment)


def resolve(cfg: TrainConfig, augment: dict[str, Any] | None = None) -> TrainConfig:
    """The config a run uses: ``recipe`` named (the method's when empty), ``augment`` = that recipe's preset
    <- the ``augment`` keys given, CUDA-only switches off where CUDA is not used; then validated."""
    if cfg.method not in METHODS:
        raise UsageError(f"method='{cfg.method}' is not one of: {', '.join(METHODS)}")
    augment = dict(augment or {})
    recipe = cfg.recipe or DEFAULT_RECIPE[cfg.method]
    if augment.pop("recipe", Path(recipe).stem) != Path(recipe).stem:  # a saved config.yaml repeats the name
        raise UsageError("name the recipe with recipe=NAME (top level), not augment.recipe")
    spec = merge_into(recipe_spec(recipe), augment, TrainConfig, prefix="augment.")
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    cfg = dataclasses.replace(cfg, recipe=recipe, augment=spec, bf16=cfg.bf16 and cuda,
                              channels_last=cfg.channels_last and cuda)
    validate(cfg)
    return cfg


def resolved_n_views(cfg: TrainConfig) -> int:
    """Views per image (DINO: the global crops, which the teacher sees)."""
    return cfg.n_views or (1 if cfg.method in ("tc", "mae") else 2)


def validate(cfg: TrainConfig) -> None:
    """Reject impossible settings with one line each, before any work starts."""

    def choice(key: str, value: str, options: tuple[str, ...]) -> None:
        if value not in options:
            raise UsageError(f"{key}='{value}' is not one of: {', '.join(options)}")

    choice("method", cfg.method, METHODS)
    choice("backend", cfg.backend, ("torch", "dali"))
    choice("optim.name", cfg.optim.name, ("adam", "adamw", "sgd", "lars"))
    choice("optim.clip_mode", cfg.optim.clip_mode, ("per_tensor", "global"))
    choice("optim.schedule", cfg.optim.schedule, ("cosine", "constant"))
    choice("device", cfg.device, ("auto", "cpu", "cuda"))
    choice("arch", cfg.arch, ARCHS)
    check_input_size(cfg.arch, cfg.size)
    if not cfg.recipe or cfg.augment.recipe != Path(cfg.recipe).stem:
        raise ValueError("an unresolved TrainConfig: build it with load_train_config() or resolve()")
    cfg.augment.validate()
    if not cfg.data:
        raise UsageError("no dataset given: set data=DIR (a directory written by headcam-ingest)")
    positive = {"batch_size": cfg.batch_size, "size": cfg.size, "ckpt_every": cfg.ckpt_every,
                "log_every": cfg.log_every, "epochs": cfg.epochs, "moco.queue": cfg.moco.queue,
                "temporal_window": cfg.temporal_window}
    for key, value in positive.items():
        if value <= 0:
            raise UsageError(f"{key} must be > 0, got {value}")
    if cfg.steps < 0 or cfg.workers < 0 or cfg.optim.warmup_steps < 0:
        raise UsageError("steps, workers and optim.warmup_steps must be >= 0")
    if cfg.optim.lr <= 0:
        raise UsageError(f"optim.lr must be > 0, got {cfg.optim.lr}")
    n_views = resolved_n_views(cfg)
    if cfg.method == "tc" and n_views != 1:
        raise UsageError(f"method tc takes one view per image, got n_views={n_views}")
    if cfg.method in ("moco", "moco_temporal") and n_views != 2:
        raise UsageError(f"method {cfg.method} takes exactly 2 views (query, key), got n_views={n_views}")
    if cfg.method == "simclr" and n_views < 2:
        raise UsageError(f"method simclr needs n_views >= 2, got {n_views}")
    if not 0 <= cfg.moco.m < 1:
        raise UsageError(f"moco.m must be in [0, 1), got {cfg.moco.m}")
    if cfg.moco.T <= 0 or cfg.simclr.T <= 0 or cfg.dino.student_temp <= 0 or cfg.dino.teacher_temp <= 0:
        raise UsageError("temperatures moco.T, simclr.T, dino.student_temp and dino.teacher_temp must be > 0")
    if cfg.method == "byol" and n_views != 2:
        raise UsageError(f"method byol takes exactly 2 views, got n_views={n_views}")
    if not 0 <= cfg.byol.momentum <= 1:
        raise UsageError(f"byol.momentum must be in [0, 1], got {cfg.byol.momentum}")
    if cfg.method == "dino" and n_views < 2:
        raise UsageError(f"method dino needs n_views >= 2 global views, got {n_views}")
    local = cfg.augment.local
    if local.n and cfg.method not in ("simclr", "dino"):
        raise UsageError(f"method {cfg.method} takes no local crops (augment.local.n={local.n}); only dino and "
                         "simclr do: set augment.local.n=0")
    side = local_side(cfg.augment, cfg.size)
    if local.n and cfg.arch in VITS and side % VITS[cfg.arch].patch:
        raise UsageError(f"{cfg.arch} takes views whose side is a multiple of {VITS[cfg.arch].patch} px, and the local "
                         f"crops are {side} px: set augment.local.size (0 = 96/224 of size) to such a side")
    if cfg.method == "mae" and (n_views != 1 or cfg.arch not in VITS):
        raise UsageError(f"method mae takes one view per image and a ViT arch ({', '.join(VITS)}); "
                         f"got n_views={n_views}, arch={cfg.arch}")
    check_monitor(cfg.monitor)
    if not 0 < cfg.mae.mask_ratio < 1:
        raise UsageError(f"mae.mask_ratio must be in (0, 1), got {cfg.mae.mask_ratio}")
    if not 0 <= cfg.dino.momentum <= 1 or not 0 <= cfg.drop_path < 1:
        raise UsageError("dino.momentum must be in [0, 1] and drop_path in [0, 1)")
