"""The typed config of one training run: every key, its default and what it means, in one place.

``configs/*.yaml`` only override these defaults and ``key=value`` arguments override the file
(:func:`load_train_config`); the resolved config is printed and saved in the run directory as
``config.yaml`` and inside every checkpoint.

The ``augment`` section is the pipelines' own :class:`~headcam.pipelines.spec.AugmentSpec`. Its
base is the preset of ``recipe`` (a name from the one registry, :func:`headcam.pipelines.spec.recipe_names`,
or a recipe YAML path; empty = the method's published recipe), and the YAML's ``augment:`` keys
and ``augment.x.y=v`` arguments change that preset key by key: a file that turns foveation on plus
``augment.blur.p=0`` on the command line gives foveation on and blur off.

Method sections (``moco.*``, ``dino.*``, ...) and the method rules are not written here: each
method declares its section and view rule in :mod:`headcam.train.registry`, and ``TrainConfig``
is :class:`RunConfig` plus those sections. Nothing here imports torch, so a config mistake is
reported before torch, timm or DALI load.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headcam.config import merge_into, read_config
from headcam.console import UsageError
from headcam.pipelines.spec import AugmentSpec, recipe_spec
from headcam.slurm import minutes
from headcam.train import registry
from headcam.train.archs import ARCHS, CLIP_FRAMES, TUBELET_FRAMES, VIDEO_VITS, VITS, check_input_size

#: Autocast precisions of a run (``precision``); fp16 adds a GradScaler.
PRECISIONS = ("fp32", "bf16", "fp16")
#: Warm-up forms (``optim.warmup_form``, :func:`headcam.train.optim.lr_factor`).
WARMUP_FORMS = ("ahead", "zero", "linspace")


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | adamw | sgd | lars
    lr: float = 5e-4  # peak learning rate (after warm-up); see lr_scaling
    lr_scaling: str = "none"  # none: lr is the rate | linear: the rate is lr x global batch / 256 (DINO, MAE, BYOL)
    min_lr: float = 0.0  # where the cosine ends, never scaled (DINO: 1e-6)
    weight_decay: float = 0.0
    weight_decay_end: float | None = None  # cosine from weight_decay to this (DINO: 0.04 -> 0.4); None = constant
    decay_1d: bool = True  # false: no weight decay on biases and 1-D parameters (norms), as DINO and MAE
    momentum: float = 0.9  # sgd and lars
    betas: tuple[float, float] = (0.9, 0.999)  # adam and adamw (MAE: 0.9, 0.95)
    warmup_steps: int = 0  # linear warm-up to lr over this many steps
    # where the warm-up starts (optim.lr_factor): ahead = (step + 1) / warmup_steps, lr / warmup_steps at the first
    # step | zero = step / warmup_steps, 0 at the first step (MAE's lr_sched, VICReg's adjust_learning_rate) |
    # linspace = step / (warmup_steps - 1), 0 at the first step and lr at the last (DINO's cosine_scheduler)
    warmup_form: str = "ahead"
    schedule: str = "cosine"  # cosine (to min_lr at the last step) | constant
    lars_eta: float = 0.001  # LARS trust coefficient
    clip_grad: float = 0.0  # gradient clipping threshold; 0 = off (DINO: 3.0, SAYCam 1.0)
    clip_mode: str = "per_tensor"  # per_tensor (each gradient on its own, as DINO) | global (one norm)


@dataclass
class MonitorConfig:
    data: str = ""  # labelled dataset directory for the kNN monitor; "" = no monitor
    every: int = 0  # steps between evaluations (also at step 0 and at the end); 0 = no monitor
    bank_split: str = "train"  # the labelled neighbours
    query_split: str = "val"  # the samples scored
    max_bank: int = 2000
    max_query: int = 1000
    k: int = 20
    T: float = 0.07
    batch_size: int = 128

    @property
    def enabled(self) -> bool:
        return bool(self.data) and self.every > 0

    def check(self) -> None:
        """Config-time checks (the dataset itself is checked when the run opens it)."""
        if self.every < 0 or (self.every > 0) != bool(self.data):
            raise UsageError("the kNN monitor needs both monitor.data=DIR and monitor.every=N (N > 0)")
        if self.enabled and (min(self.max_bank, self.max_query, self.k, self.batch_size) < 1 or self.T <= 0):
            raise UsageError("monitor.max_bank, max_query, k and batch_size must be >= 1 and monitor.T > 0")


@dataclass
class SlurmConfig:
    """Where ``headcam-train`` sends the run: ``nodes`` > 0 submits it to Slurm (through submitit) and returns;
    the job checkpoints on Slurm's warning before ``time`` runs out, requeues itself and resumes (resume=auto)."""

    nodes: int = 0  # nodes to train on; 0 = train here, in this process (no Slurm)
    gpus_per_node: int = 0  # GPUs per node, one task (rank) per GPU; 0 = one task per node (CPU, or no GPU request)
    cpus_per_task: int = 0  # CPUs per task; 0 = workers + 1 (the DataLoader workers and the trainer)
    partition: str = ""  # "" = the cluster's default partition
    time: str | int = ""  # time limit of each job: [D-]HH:MM or minutes; needed to submit
    account: str = ""
    qos: str = ""
    mem: str = ""  # memory per node, e.g. 64G; "" = the partition's default
    folder: str = ""  # submitit's logs and job pickles; "" = OUT/slurm
    requeue_max: int = 30  # requeues at the time limit before giving up (a 3-day run on 4 h slots needs 18)

    def minutes(self) -> int:
        """The time limit in minutes; 0 when not set."""
        return minutes(self.time, "slurm.time")

    def check(self) -> None:
        if min(self.nodes, self.gpus_per_node, self.cpus_per_task, self.requeue_max) < 0:
            raise UsageError("slurm.nodes, gpus_per_node, cpus_per_task and requeue_max must be >= 0")
        if self.mem and not re.fullmatch(r"\d+[KMGT]?", self.mem):
            raise UsageError(f"slurm.mem={self.mem!r}: give a size Slurm reads, e.g. 64G")
        if self.nodes and self.minutes() <= 0:
            raise UsageError("submitting to Slurm needs a time limit per job: slurm.time=HH:MM (e.g. 04:00)")


@dataclass
class RunConfig:
    """The keys every run has; :data:`TrainConfig` adds one section per method of the registry."""

    method: str = "simclr"  # a name of headcam.train.registry (headcam-train --help lists them)
    data: str = ""  # dataset directory written by headcam-ingest
    split: str = "train"
    out: str = "runs/train"  # run directory: checkpoint.pt, config.yaml, metrics.jsonl, tb/
    backend: str = "torch"  # augmentation backend: torch | dali
    recipe: str = ""  # augmentation recipe (name or YAML path); "" = the method's published one
    augment: AugmentSpec = field(default_factory=AugmentSpec)  # the recipe's preset, changed key by key
    n_views: int = 0  # views per image; 0 = the method's own (tc 1, others 2)
    temporal_window: int = 1  # moco_temporal: key frame within +-w sampled frames of the query
    # a clip method (mae_st): frames per clip (0 = 16, the reference's --num_frames; a multiple of the trunk's
    # tubelet depth 2) and their distance in the shard's sampled frames (the SAYCam script's --sampling_rate 8 at
    # --target_fps 30 puts frames 0.282 s apart: shards ingested at 3.54 fps, clip_stride 1); frame methods leave
    # both as they are
    clip_frames: int = 0
    clip_stride: int = 1
    size: int = 224  # view side in pixels
    arch: str = "resnet18"  # resnet18 | resnet50 | resnext50_32x4d | mobilenet_v2 | vit_small_patch16 | ...
    small_stem: bool = False  # 3x3 stride-1 stem, no max-pool (CIFAR-size images)
    # ResNets: each residual block's last BatchNorm weight starts at 0, so every block starts as the identity
    # (torchvision's zero_init_residual; VICReg, Barlow Twins, SimCLR's and BYOL's ResNets do it)
    zero_init_residual: bool = False
    drop_path: float = 0.0  # stochastic depth of a ViT trunk while training (DINO's student: 0.1)
    # how a ViT resamples its position embeddings at another side: dino (interpolate_pos_encoding) | mae
    # (interpolate_pos_embed); "" = the method's reference: MAE's for mae, DINO's otherwise
    pos_interp: str = ""
    batch_size: int = 256  # per process (global batch = batch_size x ranks)
    steps: int = 0  # optimiser steps; 0 = epochs x steps of the first epoch
    epochs: int = 1
    optim: OptimConfig = field(default_factory=OptimConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)  # online kNN monitor (monitor.data, .every)
    workers: int = 4  # DataLoader workers per process (fewer when the shards allow fewer; said in one line)
    shuffle_buffer: int = 1000
    seed: int = 0
    deterministic: bool = False  # deterministic kernels (bit-exact resume on CPU)
    ckpt_every: int = 1000  # steps between checkpoints (also saved at the end and on SIGTERM)
    resume: str = "auto"  # auto (OUT/checkpoint.pt if present) | never | PATH
    log_every: int = 20  # steps between metric lines
    device: str = "auto"  # auto | cpu | cuda
    # autocast precision: fp32 (none) | bf16 | fp16 (with a GradScaler: loss scaled, gradients unscaled before
    # clipping, a step with inf/NaN gradients skipped, as DINO's --use_fp16 and MAE's NativeScaler). CUDA only:
    # shown and saved as fp32 on a run without CUDA. The old key bf16=true|false still reads as bf16|fp32.
    precision: str = "bf16"
    channels_last: bool = True  # channels-last memory format (CUDA only; likewise)
    # BatchNorm statistics over all ranks: auto = as the method's reference (DINO, BYOL, SimCLR, VICReg: on;
    # MoCo keeps its shuffle-BN, tc per-process BN) when several processes train a model with BatchNorm
    sync_bn: str = "auto"  # auto | on | off
    slurm: SlurmConfig = field(default_factory=SlurmConfig)  # slurm.nodes=N ... submits the run (see SlurmConfig)


#: The typed config of a run: :class:`RunConfig` plus one field per method section of the registry
#: (``moco``, ``simclr``, ``byol``, ``dino``, ``mae``, ``vicreg``, ...), each defaulting to its dataclass.
TrainConfig = dataclasses.make_dataclass(
    "TrainConfig", [(name, cls, field(default_factory=cls)) for name, cls in registry.sections().items()],
    bases=(RunConfig,))
TrainConfig.__module__ = __name__
TrainConfig.__doc__ = "A run's config: RunConfig's keys and one section per registered method (see the module doc)."


def load_train_config(path: str | Path | None = None, overrides: list[str] = ()) -> Any:
    """Defaults <- YAML at ``path`` <- ``key=value`` overrides, resolved (:func:`resolve`) and validated:
    every user mistake is a one-line UsageError here, before any model or data is touched."""
    return train_config(read_config(path, overrides))


def train_config(data: dict[str, Any]) -> Any:
    """The resolved config from raw settings (:func:`headcam.config.read_config`'s mapping). A Slurm job gets
    these and resolves them where it runs, so ``device=auto`` and the precision follow the compute node's GPUs."""
    data = dict(data)
    if "bf16" in data:  # the deprecated key of the first checkpoints and configs; precision wins where both are given
        bf16 = data.pop("bf16")
        if not isinstance(bf16, bool):
            raise UsageError(f"config key 'bf16' (deprecated: use precision=fp32|bf16|fp16) wants bool, got {bf16!r}")
        data.setdefault("precision", "bf16" if bf16 else "fp32")
    augment = data.pop("augment", None)
    if augment is None:
        augment = {}
    if not isinstance(augment, dict):
        raise UsageError(f"config key 'augment' is a section; give its keys (augment.blur.p=0), and name a "
                         f"recipe or a recipe YAML with recipe= (got augment={augment!r})")
    return resolve(merge_into(TrainConfig(), data, TrainConfig), augment)


def cuda_wanted(device: str) -> bool:
    """Whether a run with ``device`` uses CUDA (imports torch only for ``auto``)."""
    if device != "auto":
        return device == "cuda"
    import torch

    return torch.cuda.is_available()


def resolve(cfg: Any, augment: dict[str, Any] | None = None) -> Any:
    """The config a run uses: ``recipe`` named (the method's when empty), ``augment`` = that recipe's preset
    <- the ``augment`` keys given, CUDA-only switches off where CUDA is not used; then validated."""
    method = registry.entry(cfg.method)
    augment = dict(augment or {})
    recipe = cfg.recipe or method.recipe
    if augment.pop("recipe", Path(recipe).stem) != Path(recipe).stem:  # a saved config.yaml repeats the name
        raise UsageError("name the recipe with recipe=NAME (top level), not augment.recipe")
    spec = merge_into(recipe_spec(recipe), augment, TrainConfig, prefix="augment.")
    cfg = dataclasses.replace(cfg, recipe=recipe, augment=spec)
    validate(cfg)  # before the CUDA check below, which imports torch: a usage error stays fast
    cuda = cuda_wanted(cfg.device)
    clip = method.views.clip  # channels-last is a 4-D layout: clips (B, C, T, H, W) and Conv3d weights have none
    return dataclasses.replace(cfg, precision=cfg.precision if cuda else "fp32",
                               channels_last=cfg.channels_last and cuda and not clip)


def effective_lr(optim: OptimConfig, global_batch: int) -> float:
    """The peak rate a run uses: ``optim.lr`` as given, or scaled by global batch / 256 (DINO's and MAE's rule)."""
    return optim.lr * global_batch / 256 if optim.lr_scaling == "linear" else optim.lr


def describe_lr(optim: OptimConfig, global_batch: int) -> str:
    """The rate for the run summary, with the rule that produced it."""
    lr = effective_lr(optim, global_batch)
    rule = f" = {optim.lr:g} x {global_batch}/256" if optim.lr_scaling == "linear" else " (absolute)"
    return f"{optim.name} lr {lr:.4g}{rule}"


def resolved_n_views(cfg: Any) -> int:
    """Views per image (DINO: the global crops, which the teacher sees)."""
    return cfg.n_views or registry.entry(cfg.method).views.views


def resolved_clip_frames(cfg: Any) -> int:
    """Frames per sample: 0 for a frame method, ``clip_frames`` (0 = :data:`~headcam.train.archs.CLIP_FRAMES`)
    for a clip one."""
    if not registry.entry(cfg.method).views.clip:
        return 0
    return cfg.clip_frames or CLIP_FRAMES


def _check_clips(cfg: Any, rule: registry.ViewRule) -> None:
    if cfg.clip_frames < 0 or cfg.clip_stride < 1:
        raise UsageError(f"clip_frames must be >= 0 and clip_stride >= 1, got {cfg.clip_frames}, {cfg.clip_stride}")
    if not rule.clip:
        if cfg.clip_frames or cfg.clip_stride != 1:
            takers = [e.name for e in registry.ENTRIES if e.views.clip]
            raise UsageError(f"method {cfg.method} takes frames, not clips: leave clip_frames and clip_stride unset "
                             f"(only {' and '.join(takers)} take clips)")
        return
    if cfg.arch not in VIDEO_VITS:
        raise UsageError(f"method {cfg.method} needs a video ViT arch ({', '.join(VIDEO_VITS)}), got arch={cfg.arch}")
    if resolved_clip_frames(cfg) % TUBELET_FRAMES:
        raise UsageError(f"method {cfg.method} cuts clips into tubelets of {TUBELET_FRAMES} frames: clip_frames must "
                         f"be a multiple of {TUBELET_FRAMES}, got {cfg.clip_frames}")
    if cfg.backend != "torch":
        raise UsageError(f"method {cfg.method} takes clips, which only backend=torch loads")


def _views_wanted(rule: registry.ViewRule) -> str:
    if rule.max_views == rule.min_views:
        return f"exactly {rule.min_views} view{'s' * (rule.min_views > 1)} per image"
    return f"at least {rule.min_views} views per image"


def validate(cfg: Any) -> None:
    """Reject impossible settings with one line each, before any work starts. The method's own rules come
    from its registry entry (view rule) and its section's ``check()``."""

    def choice(key: str, value: str, options: tuple[str, ...]) -> None:
        if value not in options:
            raise UsageError(f"{key}='{value}' is not one of: {', '.join(options)}")

    method = registry.entry(cfg.method)
    choice("backend", cfg.backend, ("torch", "dali"))
    choice("optim.lr_scaling", cfg.optim.lr_scaling, ("none", "linear"))
    choice("sync_bn", cfg.sync_bn, ("auto", "on", "off"))
    choice("optim.name", cfg.optim.name, ("adam", "adamw", "sgd", "lars"))
    choice("optim.clip_mode", cfg.optim.clip_mode, ("per_tensor", "global"))
    choice("optim.schedule", cfg.optim.schedule, ("cosine", "constant"))
    choice("optim.warmup_form", cfg.optim.warmup_form, WARMUP_FORMS)
    choice("precision", cfg.precision, PRECISIONS)
    choice("device", cfg.device, ("auto", "cpu", "cuda"))
    choice("arch", cfg.arch, ARCHS)
    if cfg.pos_interp not in ("", "dino", "mae"):
        raise UsageError(f"pos_interp='{cfg.pos_interp}' is not one of: dino, mae (or empty: the method's reference)")
    if cfg.method == "mae" and cfg.pos_interp == "dino":  # MAE's fixed sin-cos table is always resampled its way
        raise UsageError("method mae resamples its sin-cos position table MAE's way: leave pos_interp empty or 'mae'")
    check_input_size(cfg.arch, cfg.size, whole_patches=method.views.whole_patches)
    if cfg.zero_init_residual and not cfg.arch.startswith(("resnet", "resnext")):
        raise UsageError(f"zero_init_residual is a ResNet switch (blocks' last BatchNorm): arch={cfg.arch} has none")
    if not cfg.recipe or cfg.augment.recipe != Path(cfg.recipe).stem:
        raise ValueError("an unresolved TrainConfig: build it with load_train_config() or resolve()")
    cfg.augment.validate()
    if not cfg.data:
        raise UsageError("no dataset given: set data=DIR (a directory written by headcam-ingest)")
    positive = {"batch_size": cfg.batch_size, "size": cfg.size, "ckpt_every": cfg.ckpt_every,
                "log_every": cfg.log_every, "epochs": cfg.epochs, "temporal_window": cfg.temporal_window}
    for key, value in positive.items():
        if value <= 0:
            raise UsageError(f"{key} must be > 0, got {value}")
    if cfg.steps < 0 or cfg.workers < 0 or cfg.optim.warmup_steps < 0:
        raise UsageError("steps, workers and optim.warmup_steps must be >= 0")
    if cfg.optim.lr <= 0:
        raise UsageError(f"optim.lr must be > 0, got {cfg.optim.lr}")
    if not 0 <= cfg.drop_path < 1:
        raise UsageError(f"drop_path must be in [0, 1), got {cfg.drop_path}")
    rule, n_views = method.views, resolved_n_views(cfg)
    if n_views < rule.min_views or (rule.max_views is not None and n_views > rule.max_views):
        raise UsageError(f"method {cfg.method} takes {_views_wanted(rule)}, got n_views={n_views}")
    _check_clips(cfg, rule)
    if rule.vit_only and cfg.arch not in VITS:
        raise UsageError(f"method {cfg.method} needs a ViT arch ({', '.join(VITS)}), got arch={cfg.arch}")
    local = cfg.augment.local
    if local.n and not rule.local_crops:
        takers = [e.name for e in registry.ENTRIES if e.views.local_crops]
        raise UsageError(f"method {cfg.method} takes no local crops (augment.local.n={local.n}); only "
                         f"{' and '.join(takers)} do: set augment.local.n=0")
    if local.n and cfg.arch in VITS:  # a side that is not whole patches is floored, as DINO's patch conv does
        from headcam.pipelines.params import local_side  # imports torch: only for a ViT with local crops

        side = local_side(cfg.augment, cfg.size)
        if side < VITS[cfg.arch].patch:
            raise UsageError(f"{cfg.arch} cuts views into {VITS[cfg.arch].patch} px patches, and the local crops are "
                             f"{side} px, smaller than one: set augment.local.size (0 = 96/224 of size) larger")
    cfg.monitor.check()
    cfg.slurm.check()
    section = registry.section_of(cfg, cfg.method)
    if section is not None:
        section.check()
