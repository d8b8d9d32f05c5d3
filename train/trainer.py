"""The training loop: one loop for every method, readable from top to bottom.

``train(cfg)`` = set up (process group, seeds, dataset checks, model, loader, optimiser) ->
maybe resume -> ``for step``: next batch, forward under autocast, backward, optimiser and
schedule step, log, checkpoint -> summary. A method (``train/methods.py``) supplies only its
model wrapper and loss. CPU-GPU sync points are marked ``# sync``.

Stopping: SIGTERM (preemption) or Ctrl-C finishes the current step, saves and returns
``stopped="preempted"`` (exit code 3 from the CLI). A non-finite loss raises :class:`NonFiniteLoss` before anything is
saved, so the last good checkpoint stays on disk.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
import yaml

from headcam.config import to_dict
from headcam.console import UsageError, progress
from headcam.pipelines.loader import LoaderConfig, build_loader
from headcam.shards.atomic import remove_stale_temps
from headcam.shards.dataset import Dataset, DatasetError, open_dataset
from headcam.train import checkpoint, dist, ema, registry, sync_bn
from headcam.train.archs import CLIP_FRAMES
from headcam.train.backbones import build_backbone
from headcam.train.config import (
    TrainConfig,
    describe_lr,
    effective_lr,
    resolved_clip_frames,
    resolved_n_views,
    validate,
)
from headcam.train.methods.base import build_method
from headcam.train.monitor import open_monitor
from headcam.train.optim import build_optimizer, build_schedule, scaled_step, set_weight_decay
from headcam.train.utils import MetricsLog, StopRequest


class NonFiniteLoss(Exception):
    """The loss became NaN or infinite; the run stopped without saving over the last good checkpoint."""


@dataclass
class RunResult:
    step: int  # optimiser steps done in total (including before a resume)
    steps_run: int  # steps run by this invocation
    total_steps: int
    seconds: float
    images_per_s: float
    last_loss: float
    checkpoint: Path
    stopped: str  # "done" | "preempted" | "nothing to do"
    skipped: dict[str, int] = field(default_factory=dict)  # loader counters (corrupt, read_errors, ...) > 0


@dataclass
class DataPosition:
    """Where the data stream is: epoch and batches of it already consumed (saved for exact resume)."""

    epoch: int = 0
    batches: int = 0


def endless_batches(loader: Any, pos: DataPosition) -> Iterator[Any]:
    """Batches across epochs, keeping ``pos`` current; starts at ``pos`` (skipping what was consumed)."""
    while True:
        loader.set_epoch(pos.epoch, skip_batches=pos.batches)
        for batch in loader:
            pos.batches += 1
            yield batch
        pos.epoch, pos.batches = pos.epoch + 1, 0


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def open_checked(cfg: TrainConfig) -> tuple[Dataset, int | None]:
    """Open the dataset and check it has what ``cfg.method`` needs; returns it and the class count (methods
    that need labels)."""
    try:
        ds = open_dataset(cfg.data)
    except DatasetError as e:
        raise UsageError(str(e)) from None
    if cfg.split not in ds.splits:
        raise UsageError(f"{cfg.data}: no split '{cfg.split}' (splits here: {', '.join(ds.splits)})")
    if not registry.entry(cfg.method).needs_labels:
        return ds, None
    labels = ds.manifest.filter(pc.equal(ds.manifest.column("split"), cfg.split)).column("label")
    unlabelled = pc.sum(pc.less(labels, 0)).as_py() or 0
    if unlabelled:
        raise UsageError(f"method {cfg.method} needs a label on every sample, but {unlabelled} of {len(labels)} "
                         f"samples in split '{cfg.split}' of {cfg.data} are unlabelled (-1)")
    n_classes = ds.n_classes
    top = pc.max(labels).as_py()
    if not n_classes:
        raise UsageError(f"{cfg.data}: dataset.json declares no classes; method {cfg.method} needs them")
    if top >= n_classes:
        raise UsageError(f"{cfg.data}: label {top} in split '{cfg.split}' but dataset.json declares "
                         f"{n_classes} classes")
    return ds, n_classes


#: Autocast dtypes of the reduced precisions (``precision``; fp32 runs without autocast).
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The forward pass's autocast: none for fp32 and off CUDA (:func:`~headcam.train.config.resolve` has already
    shown such a run as fp32)."""
    if device.type != "cuda" or precision not in AUTOCAST_DTYPES:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=AUTOCAST_DTYPES[precision])


def checkpoint_to_resume(cfg: TrainConfig, out: Path) -> Path | None:
    if cfg.resume == "never":
        return None
    if cfg.resume == "auto":
        path = out / checkpoint.FILENAME
        return path if path.exists() else None
    path = Path(cfg.resume)
    if not path.is_file():
        raise UsageError(f"resume={cfg.resume}: no such checkpoint file")
    return path


def check_compatible(ckpt: dict[str, Any], cfg: TrainConfig, n_classes: int | None, path: Path) -> None:
    for key, want in (("method", cfg.method), ("arch", cfg.arch), ("small_stem", cfg.small_stem)):
        if ckpt[key] != want:
            raise UsageError(f"cannot resume from {path}: it has {key}={ckpt[key]!r}, this run {key}={want!r} "
                             "(use resume=never or another out=)")
    frames = resolved_clip_frames(cfg)
    if frames and (ckpt["config"].get("clip_frames") or CLIP_FRAMES) != frames:  # the trunk's time table
        raise UsageError(f"cannot resume from {path}: it was trained on clips of {ckpt['config'].get('clip_frames')} "
                         f"frames, this run has clip_frames={frames} (use resume=never or another out=)")
    if ckpt["n_classes"] != n_classes:
        raise UsageError(f"cannot resume from {path}: it was trained with {ckpt['n_classes']} classes, this "
                         f"dataset has {n_classes}")


def describe_precision(cfg: TrainConfig) -> str:
    """The precision for the run summary (a run without CUDA was resolved to fp32)."""
    return {"fp32": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast + loss scaling"}[cfg.precision]


def describe_run(cfg: TrainConfig, ds: Dataset, world: int, workers: int, step: int, total: int, out: Path,
                 synced: bool) -> str:
    """The compact summary printed before training (the whole resolved config is in ``out/config.yaml``)."""
    o = cfg.optim
    where = f"from step {step} of {total}" if step else f"{total} step{'s' * (total != 1)}"
    warmup = f", {o.warmup_steps} warm-up steps ({o.warmup_form})" if o.warmup_steps else ""
    frames = resolved_clip_frames(cfg)
    clips = f" clips of {frames} frames {cfg.clip_stride} apart," if frames else ""
    return (f"{cfg.method} {cfg.arch}{' (small stem)' * cfg.small_stem} at {cfg.size} px,{clips} "
            f"batch {cfg.batch_size} x {world} rank(s){' (BatchNorm synchronised)' * synced}, {where}; "
            f"recipe {cfg.recipe}; "
            f"{describe_lr(o, cfg.batch_size * world)}, {o.schedule} schedule{warmup}; {describe_precision(cfg)}; "
            f"data {cfg.data} ({cfg.split}: {ds.count(cfg.split)} samples, {workers} worker(s)); "
            f"out {out} (full config: {out / 'config.yaml'})")


def train(cfg: TrainConfig, announce: Callable[[str], None] | None = None) -> RunResult:
    """Run (or resume) one training run as described by ``cfg``; see the module docstring. ``announce``
    gets a few lines describing the run once everything is checked and built, before the first step."""
    validate(cfg)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device=cuda but no CUDA device is available (use device=auto or cpu)")
    env = dist.setup(cfg.device)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        return _train(cfg, env, announce)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        dist.teardown()


def _train(cfg: TrainConfig, env: dist.DistEnv, announce: Callable[[str], None] | None) -> RunResult:
    seed_everything(cfg.seed, cfg.deterministic)
    cuda = env.device.type == "cuda"
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if env.is_main:
        remove_stale_temps(out)  # a checkpoint write cut short by a kill; the last complete one is intact
    ds, n_classes = open_checked(cfg)
    method = registry.entry(cfg.method)
    loader = build_loader(ds, cfg.split, LoaderConfig(
        augment=cfg.augment, batch_size=cfg.batch_size, n_views=resolved_n_views(cfg), size=cfg.size,
        backend=cfg.backend, device=str(env.device), workers=cfg.workers, seed=cfg.seed, rank=env.rank,
        world=env.world, train=True, shuffle_buffer=cfg.shuffle_buffer,
        temporal_window=cfg.temporal_window if method.views.temporal else None,
        clip_frames=resolved_clip_frames(cfg), clip_stride=cfg.clip_stride))
    monitor = open_monitor(cfg.monitor, cfg.size, env.device) if env.is_main else None

    trunk, feat_dim = build_backbone(cfg.arch, cfg.small_stem, cfg.drop_path, cfg.pos_interp, method=cfg.method,
                                     num_frames=resolved_clip_frames(cfg) or CLIP_FRAMES,
                                     zero_init_residual=cfg.zero_init_residual)
    model = build_method(cfg, trunk, feat_dim, n_classes=n_classes, world=env.world)
    synced = env.world > 1 and sync_bn.has_batch_norm(model) and (
        cfg.sync_bn == "on" or (cfg.sync_bn == "auto" and method.sync_bn))
    if synced:
        model = sync_bn.convert(model, env.device)
    model = model.to(env.device)
    memory_format = torch.channels_last if cuda and cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    total = cfg.steps or cfg.epochs * len(loader)  # build_loader refused a split with no full batch
    o = cfg.optim
    lr = effective_lr(o, cfg.batch_size * env.world)
    optimizer = build_optimizer(model, o.name, lr, o.weight_decay, o.momentum, o.lars_eta, o.betas, o.decay_1d)
    scheduler = build_schedule(optimizer, total, o.warmup_steps, o.schedule, o.min_lr / lr, o.warmup_form)
    scaler = torch.amp.GradScaler(env.device.type, enabled=cfg.precision == "fp16")

    step, pos = 0, DataPosition()
    ckpt_path = out / checkpoint.FILENAME
    resume_from = checkpoint_to_resume(cfg, out)
    if resume_from is not None:
        try:
            ckpt = checkpoint.load(resume_from)
        except checkpoint.CheckpointError as e:
            raise UsageError(str(e)) from None
        check_compatible(ckpt, cfg, n_classes, resume_from)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):  # empty from a run without fp16: this one starts its loss scale afresh
            scaler.load_state_dict(ckpt["scaler"])
        checkpoint.restore_rng(ckpt["rng"])
        step, pos = ckpt["step"], DataPosition(**ckpt["data"])
        del ckpt

    config = to_dict(cfg)
    if env.is_main:
        (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        if announce is not None:
            announce(describe_run(cfg, ds, env.world, loader.workers, step, total, out, synced))
            if monitor is not None and (note := model.monitor_note()):
                announce(note)
    if step >= total:
        return RunResult(step, 0, total, 0.0, 0.0, float("nan"), ckpt_path, "nothing to do")

    ddp = model
    if env.world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[env.device] if cuda else None,
                                                        broadcast_buffers=False)

    def save(at_step: int) -> None:
        if env.is_main:
            checkpoint.save(checkpoint.make_checkpoint(
                model, arch=cfg.arch, small_stem=cfg.small_stem, feat_dim=feat_dim, method=cfg.method,
                config=config, step=at_step, n_classes=n_classes, optimizer=optimizer, scheduler=scheduler,
                scaler=scaler, epoch=pos.epoch, batches=pos.batches, world=env.world), ckpt_path)
        dist.barrier()

    autocast = autocast_for(cfg.precision, env.device)
    batches = endless_batches(loader, pos)
    model.train()
    start, last_loss, stopped = step, float("nan"), "done"
    loss_sum = torch.zeros((), device=env.device)
    window_steps, data_wait, t_window, t_start = 0, 0.0, time.perf_counter(), time.perf_counter()
    last_good = start if resume_from is not None else None
    bar_desc = f"train {cfg.method} {cfg.arch}"
    with StopRequest() as stop, contextlib.closing(MetricsLog(out, enabled=env.is_main)) as log:
        if monitor is not None and start == 0:
            log.write(0, monitor.evaluate(model.trunk))  # the step-0 network: where the learning curve starts
        for step in progress(range(start, total), desc=bar_desc, total=total - start, unit="step"):
            t0 = time.perf_counter()
            # torch's DataLoader draws a seed from torch's generator each time an epoch starts: that draw stays out
            # of the stream a method's own randomness (MAE masks, drop-path) comes from, so a resumed run, whose
            # first epoch starts after its generator is restored, draws what the uninterrupted run drew
            with torch.random.fork_rng(devices=[]):
                batch = next(batches)
            data_wait += time.perf_counter() - t0
            views = [v.to(env.device, non_blocking=True).contiguous(memory_format=memory_format)
                     for v in batch.views]
            labels = batch.label.to(env.device, non_blocking=True)
            scheduled = model.begin_step(step, total)
            if o.weight_decay_end is not None:
                scheduled["weight_decay"] = ema.cosine(step, total, o.weight_decay, o.weight_decay_end)
                set_weight_decay(optimizer, scheduled["weight_decay"])
            with autocast:
                loss = ddp(views, labels)
            optimizer.zero_grad(set_to_none=True)
            scaled_step(loss, optimizer, scaler, model, o.clip_grad, o.clip_mode,
                        functools.partial(model.before_optimizer_step, step))
            model.end_step()
            lr = optimizer.param_groups[0]["lr"]  # the rate this step used
            scheduler.step()
            loss_sum += loss.detach()
            window_steps += 1
            done = step + 1
            preempted = dist.any_rank(stop.requested, env.device)  # sync (only with several ranks)
            want_ckpt = done % cfg.ckpt_every == 0 or done == total or preempted
            if done % cfg.log_every == 0 or want_ckpt:
                mean_loss = (loss_sum / window_steps).item()  # sync
                if dist.any_rank(not np.isfinite(mean_loss), env.device):
                    kept = f"last good checkpoint (step {last_good}) kept" if last_good is not None else \
                        "no checkpoint was saved yet"
                    raise NonFiniteLoss(f"loss is {mean_loss} within steps {done - window_steps + 1}-{done}; "
                                        f"stopped; {kept} in {ckpt_path}")
                elapsed = time.perf_counter() - t_window
                scalars = {"loss": mean_loss, "lr": lr, **scheduled,
                           "img_per_s": window_steps * cfg.batch_size * env.world / elapsed,
                           "data_wait_frac": data_wait / elapsed, "epoch": pos.epoch,
                           **{f"data_{k}": v for k, v in loader.stats.items()}}  # skipped/corrupt so far
                log.write(done, scalars)
                last_loss = mean_loss
                loss_sum.zero_()
                window_steps, data_wait, t_window = 0, 0.0, time.perf_counter()
            if monitor is not None and (done % cfg.monitor.every == 0 or done == total):
                log.write(done, monitor.evaluate(model.trunk))
            if want_ckpt:
                save(done)
                last_good = done
            if preempted:
                stopped = "preempted"
                break
    seconds = time.perf_counter() - t_start
    steps_run = done - start
    if env.is_main:
        model.write_artifacts(out, ds, cfg.size, cfg.seed)  # e.g. MAE's recon.png
    return RunResult(done, steps_run, total, seconds, steps_run * cfg.batch_size * env.world / seconds, last_loss,
                     ckpt_path, stopped, {k: v for k, v in loader.stats.items() if v and k != "padded"})
