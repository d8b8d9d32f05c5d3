"""The typed config of one training run: every key, its default and what it means, in one place.

``configs/*.yaml`` only override these defaults and ``key=value`` arguments override the file
(:func:`headcam.config.load_config`); the resolved config is printed and saved in the run
directory as ``config.yaml`` and inside every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from headcam.console import UsageError

METHODS = ("tc", "moco", "moco_temporal", "simclr")
RECIPES = ("simclr", "mocov2", "babyvision_tc", "eval")
DEFAULT_RECIPE = {"tc": "babyvision_tc", "moco": "mocov2", "moco_temporal": "mocov2", "simclr": "simclr"}


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | sgd | lars
    lr: float = 5e-4  # peak learning rate (after warm-up)
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd and lars; adam uses its default betas
    warmup_steps: int = 0  # linear warm-up from 0 to lr
    schedule: str = "cosine"  # cosine (to 0 at the last step) | constant
    lars_eta: float = 0.001  # LARS trust coefficient


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
class TrainConfig:
    method: str = "simclr"  # tc | moco | moco_temporal | simclr
    data: str = ""  # dataset directory written by headcam-ingest
    split: str = "train"
    out: str = "runs/train"  # run directory: checkpoint.pt, config.yaml, metrics.jsonl, tb/
    backend: str = "torch"  # augmentation backend: torch | dali
    recipe: str = ""  # augmentation recipe; "" = the method's published one
    augment: dict[str, Any] = field(default_factory=dict)  # overrides passed to the loader's augmentation
    n_views: int = 0  # views per image; 0 = the method's own (tc 1, others 2)
    temporal_window: int = 1  # moco_temporal: key frame within +-w sampled frames of the query
    size: int = 224  # view side in pixels
    arch: str = "resnet18"  # resnet18 | resnet50 | resnext50_32x4d | mobilenet_v2
    small_stem: bool = False  # 3x3 stride-1 stem, no max-pool (CIFAR-size images)
    batch_size: int = 256  # per process (global batch = batch_size x ranks)
    steps: int = 0  # optimiser steps; 0 = epochs x steps of the first epoch
    epochs: int = 1
    optim: OptimConfig = field(default_factory=OptimConfig)
    moco: MocoConfig = field(default_factory=MocoConfig)
    simclr: SimclrConfig = field(default_factory=SimclrConfig)
    workers: int = 4  # DataLoader workers per process
    shuffle_buffer: int = 1000
    seed: int = 0
    deterministic: bool = False  # deterministic kernels (bit-exact resume on CPU)
    ckpt_every: int = 1000  # steps between checkpoints (also saved at the end and on SIGTERM)
    resume: str = "auto"  # auto (OUT/checkpoint.pt if present) | never | PATH
    log_every: int = 20  # steps between metric lines
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = True  # bf16 autocast (CUDA only)
    channels_last: bool = True  # channels-last memory format (CUDA only)


def resolved_recipe(cfg: TrainConfig) -> str:
    return cfg.recipe or DEFAULT_RECIPE[cfg.method]


def resolved_n_views(cfg: TrainConfig) -> int:
    return cfg.n_views or (1 if cfg.method == "tc" else 2)


def validate(cfg: TrainConfig) -> None:
    """Reject impossible settings with one line each, before any work starts."""

    def choice(key: str, value: str, options: tuple[str, ...]) -> None:
        if value not in options:
            raise UsageError(f"{key}='{value}' is not one of: {', '.join(options)}")

    choice("method", cfg.method, METHODS)
    choice("backend", cfg.backend, ("torch", "dali"))
    choice("optim.name", cfg.optim.name, ("adam", "sgd", "lars"))
    choice("optim.schedule", cfg.optim.schedule, ("cosine", "constant"))
    choice("device", cfg.device, ("auto", "cpu", "cuda"))
    if cfg.recipe:
        choice("recipe", cfg.recipe, RECIPES)
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
    if cfg.moco.T <= 0 or cfg.simclr.T <= 0:
        raise UsageError("temperatures moco.T and simclr.T must be > 0")
