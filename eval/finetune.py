"""Few-shot fine-tuning (SPEC §10, "Protocols"): a seeded fraction of the labelled training samples tunes
the whole network with a new head, the protocol's test samples score it, and optionally ("1 % ft + linear",
baby-vision's ImageNet protocol) a linear probe on the full training set then reads the tuned trunk, frozen.
How to tune (optimiser, schedule, views, head, mixing, what is reported) is a preset of
:mod:`headcam.eval.finetune_presets`; this module only carries it out.

Why a key filter: skipping samples outside the subset in the tuning loop would decode and augment every
sample of the split each epoch to use 1 % of them, and a batch of 256 would shrink to ~3 subset samples.
So the loader reads the subset's keys only (``LoaderConfig.keys``, :func:`headcam.shards.read.select`):
the reader drops other samples before decoding, reads only the shards that hold subset samples, and
plans each epoch on the subset's own count, so batches are full and ranks stay in step; nothing is
copied to disk. The test samples are read the same way, through the preset's test view (resize + centre
crop, with the preset's ``test_interpolation``), after the last epoch or, where the reference reports its
best epoch, after every epoch.

timm's well-kept parts do what they do in the references: ``param_groups_layer_decay`` (the layer-wise lr decay
of MAE's ``util/lr_decay.py``, fed by :meth:`TunedNet.group_matcher`), ``Mixup``, ``SoftTargetCrossEntropy`` /
``LabelSmoothingCrossEntropy`` and ``create_transform``'s RandAugment and random erasing. Those two run on each
view after headcam's loader cropped and flipped it (timm's own order: crop, then RandAugment, then erasing), per
sample on PIL images, since the loader's batched torch / DALI ops have no RandAugment.

The originals drew the subset unseeded; here it is seeded, optionally class-balanced, or N per class
(``--shots``, :mod:`headcam.eval.fewshot`).

Clips (a spatiotemporal ViT on a video dataset, ``clips=(T, stride)``): the subset and the test side are clip
sides, one row per shard clip (:func:`headcam.eval.fewshot.clip_side`); the loaders read every frame of those
clips and make (B, T, C, H, W) clip views (``LoaderConfig.clip_frames``), which go to the network as
(B, C, T, H, W); a clip is scored once, from its first valid start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from headcam.console import UsageError, progress
from headcam.eval.decode import DecodeOptions, DecodeResult, decode, result_row
from headcam.eval.features import Features, eval_view
from headcam.eval.fewshot import clip_key_map, clip_keys
from headcam.eval.finetune_presets import FinetunePreset, finetune_preset
from headcam.eval.models import EvalModel
from headcam.eval.probes import ProbeResult, topk_accuracy
from headcam.eval.protocols import Plan, Source
from headcam.shards.read import select
from headcam.train.backbones import VIDEO_VITS, VITS, VitProbeFeatures, build_backbone


@dataclass
class FinetuneOptions:
    """The command line's choices: the preset (``recipe``) and the values that override it (None = the
    preset's, per architecture)."""

    recipe: str = "headcam"
    frac: float | None = None
    shots: int | None = None
    balanced: bool = False
    epochs: int | None = None
    lr: float | None = None
    lr_drop_epochs: int | None = None
    batch_size: int | None = None
    then_linear: bool = False
    probe: str = "adam"

    def check(self) -> FinetuneOptions:
        """One line for a value that cannot work, before any data is read."""
        preset = finetune_preset(self.recipe)
        if self.lr_drop_epochs is not None and preset.schedule != "step":
            raise UsageError(f"--lr-drop-epochs: the {self.recipe} recipe's schedule is {preset.schedule}, "
                             "not a step drop")
        self.resolve(None).check()
        return self

    def resolve(self, model: EvalModel | None) -> FinetunePreset:
        """The preset ``model`` runs: by the method that trained it, by its architecture, then these overrides."""
        arch = model.arch if model is not None else None
        method = (model.source.get("method") or model.source.get("format")) if model is not None else None
        preset = finetune_preset(self.recipe).resolve(arch, method, frac=self.frac, epochs=self.epochs, lr=self.lr,
                                                      lr_drop_epochs=self.lr_drop_epochs, batch_size=self.batch_size)
        return preset.check()


def few_shot_subset(src: Source, frac: float, *, balanced: bool, seed: int, class_names: list[str],
                    count: str = "round") -> Source:
    """A seeded ``frac`` of ``src``'s samples, in ``src``'s order; ``count`` ``round`` or ``floor`` (the
    references' ``int(frac * n)``); ``balanced``: the same count per class (``frac`` of the samples spread evenly
    over the classes present), or a UsageError naming a short class."""
    rng = np.random.default_rng(seed)
    rounded = round if count == "round" else int
    if balanced:
        classes, counts = np.unique(src.labels, return_counts=True)
        per_class = max(1, rounded(frac * len(src.keys) / len(classes)))
        short = np.flatnonzero(counts < per_class)
        if len(short):
            c = short[0]
            more = f" (and {len(short) - 1} more classes)" if len(short) > 1 else ""
            raise UsageError(f"--balanced --frac {frac:g}: needs {per_class} training samples per class, but class "
                             f"'{class_names[classes[c]]}' has {counts[c]}{more}; use a smaller --frac or drop "
                             "--balanced")
        idx = np.concatenate([rng.choice(np.flatnonzero(src.labels == c), per_class, replace=False) for c in classes])
    else:
        idx = rng.choice(len(src.keys), max(1, rounded(frac * len(src.keys))), replace=False)
    idx = np.sort(idx)
    return dataclasses.replace(src, keys=[src.keys[i] for i in idx], labels=src.labels[idx])


def subset_summary(src: Source, class_names: list[str]) -> dict[str, Any]:
    """What the report records of a subset: its size, count per class and a hash of its keys."""
    counts = np.bincount(src.labels, minlength=len(class_names))
    return {"n": len(src.keys), "per_class": {class_names[c]: int(n) for c, n in enumerate(counts) if n},
            "keys_sha256": hashlib.sha256("\n".join(sorted(src.keys)).encode()).hexdigest()}


class PooledViT(nn.Module):
    """MAE's fine-tuning features (``models_vit.py:27-32``, ``:46-48``, ``global_pool=True``): the mean of the last
    block's patch tokens (no CLS) through a new LayerNorm (eps 1e-6, ``fc_norm``); the trunk's final norm is
    dropped, as MAE's ``del self.norm``."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        vit.norm = nn.Identity()
        self.vit, self.fc_norm = vit, nn.LayerNorm(vit.embed_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.vit.forward_features(x)
        return self.fc_norm(tokens[:, getattr(self.vit, "num_prefix_tokens", 1):].mean(dim=1))


class TunedNet(nn.Module):
    """``head(features(x))``: the network a preset tunes. Its :meth:`group_matcher` is timm's model interface that
    ``timm.optim.param_groups_layer_decay`` reads, written so that the groups are MAE's ``get_layer_id_for_vit``:
    stem (``cls_token``, ``pos_embed``, ``patch_embed``) 0, block i i + 1, everything after the blocks last."""

    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @property
    def vit_prefix(self) -> str:
        """The parameter-name prefix of the ViT inside."""
        return "features.vit." if isinstance(self.features, PooledViT) else "features."

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        vit = self.vit_prefix.replace(".", r"\.")
        # no capture groups but the block's (timm reads them as ordinals); whatever matches neither (fc_norm, head)
        # is timm's trailing group, MAE's `num_layers`. No (99999,) entry: timm merges that into the last block.
        return {"stem": rf"^{vit}(?:cls_token|pos_embed|patch_embed)", "blocks": [(rf"^{vit}blocks\.(\d+)", None)]}


def _vit(trunk: nn.Module) -> nn.Module:
    return trunk.vit if isinstance(trunk, VitProbeFeatures) else trunk


def _with_drop_path(trunk: nn.Module, arch: str, rate: float) -> nn.Module:
    """``trunk`` rebuilt with drop path ``rate`` (linspace(0, rate, depth) per block, as MAE's and mae_st's ViTs)
    and its weights copied in."""
    if arch in VIDEO_VITS:
        rebuilt, _ = build_backbone(arch, drop_path=rate, num_frames=trunk.num_frames,
                                    t_patch_size=trunk.t_patch_size)
    else:
        rebuilt, _ = build_backbone(arch, drop_path=rate, pos_interp=trunk.pos_interp)
    rebuilt.load_state_dict(trunk.state_dict())
    return rebuilt


def build_net(model: EvalModel, preset: FinetunePreset, n_classes: int) -> TunedNet:
    """``model``'s trunk (features as the preset reads them; rebuilt with the preset's drop path) and a new head.
    A video ViT's own features are already its final-norm CLS token (eminorhan/mae_st's pooling)."""
    trunk, dim = model.trunk, model.feat_dim
    vit = model.arch in VITS or model.arch in VIDEO_VITS
    if vit and (preset.features == "cls" or preset.head == "avgpool"):
        trunk = _vit(trunk)
        dim = trunk.embed_dim
    if preset.drop_path and vit:
        trunk = _with_drop_path(trunk, model.arch, preset.drop_path)
    features = PooledViT(trunk) if preset.head == "avgpool" else trunk
    linear = nn.Linear(dim, n_classes)
    with torch.no_grad():
        if preset.head_init == "trunc_normal":
            from timm.layers import trunc_normal_

            trunc_normal_(linear.weight, std=preset.head_std)
            linear.bias.zero_()
        elif preset.head_init == "normal":  # mae_st models_vit.py:101: the weight only
            nn.init.normal_(linear.weight, std=preset.head_std)
    layers = ([nn.BatchNorm1d(dim, affine=False, eps=1e-6)] if preset.head == "batchnorm-linear" else []) + \
        ([nn.Dropout(preset.head_dropout)] if preset.head_dropout else []) + [linear]
    net = TunedNet(features, nn.Sequential(*layers) if len(layers) > 1 else linear)
    net.requires_grad_(True)
    return net


#: The ViT tensors without weight decay beside the 1-D ones: MAE's ``no_weight_decay()`` (``pos_embed``,
#: ``cls_token``) and mae_st's (``models_vit.py:104-111``: also the separable ``pos_embed_*`` tables).
NO_WEIGHT_DECAY = ("pos_embed", "cls_token", "pos_embed_spatial", "pos_embed_temporal", "pos_embed_class")


def param_groups(net: TunedNet, preset: FinetunePreset) -> list[dict[str, Any]]:
    """The optimiser's groups, each with its ``lr_scale``: MAE's layer-wise decay through timm's
    ``param_groups_layer_decay`` (no weight decay on 1-D tensors and :data:`NO_WEIGHT_DECAY`), else one group of
    every parameter at the preset's weight decay."""
    if preset.layer_decay is None:
        return [{"params": list(net.parameters()), "lr_scale": 1.0, "weight_decay": preset.weight_decay}]
    from timm.optim import param_groups_layer_decay

    no_decay = [f"{net.vit_prefix}{name}" for name in NO_WEIGHT_DECAY]
    return param_groups_layer_decay(net, preset.weight_decay, no_weight_decay_list=no_decay,
                                    layer_decay=preset.layer_decay)


class TimmViewAugment:
    """timm's ``create_transform(..., separate=True)`` stages 2 and 3 (RandAugment; ToTensor, Normalize, random
    erasing) on each view of a batch whose stage 1 (random resized crop, flip) headcam's loader made: each view is
    turned back into the 8-bit image it was cropped from (the loader's crops are 8-bit before normalising, as
    timm's PIL crops are), augmented by timm, normalised again."""

    def __init__(self, size: int, policy: str | None, reprob: float, mean: tuple[float, ...], std: tuple[float, ...]):
        from timm.data import create_transform

        _, self.second, self.third = create_transform(
            size, is_training=True, color_jitter=None, auto_augment=policy, interpolation="bicubic",
            re_prob=reprob, re_mode="pixel", re_count=1, mean=mean, std=std, separate=True)
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

    def __call__(self, views: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.functional import to_pil_image

        pixels = ((views.detach().float().cpu() * self.std + self.mean) * 255).round().clamp(0, 255).to(torch.uint8)
        return torch.stack([self.third(self.second(to_pil_image(img))) for img in pixels]).to(views.device)


def as_input(views: torch.Tensor) -> torch.Tensor:
    """A loader view as the network takes it: a clip batch (B, T, C, H, W) as (B, C, T, H, W), as the reference's
    models read clips; images as they are."""
    return views.permute(0, 2, 1, 3, 4) if views.ndim == 5 else views


def _autocast(device: str, precision: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast("cuda", dtype=dtype, enabled=device.startswith("cuda") and dtype is not None)


def _criterion(preset: FinetunePreset) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """MAE's choice (``main_finetune.py:290-296``): soft targets after mixing, else smoothed, else plain CE."""
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if preset.mixing:
        return SoftTargetCrossEntropy()
    if preset.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=preset.label_smoothing)
    return nn.functional.cross_entropy


def build_mixup(preset: FinetunePreset, n_classes: int) -> Any:
    """timm's ``Mixup`` as MAE builds it (``main_finetune.py:218-225``: prob 1, switch 0.5, per batch, the label
    smoothing folded into the soft targets), or None where the preset mixes nothing."""
    from timm.data import Mixup

    if not preset.mixing:
        return None
    return Mixup(mixup_alpha=preset.mixup, cutmix_alpha=preset.cutmix, cutmix_minmax=None, prob=1.0, switch_prob=0.5,
                 mode="batch", label_smoothing=preset.label_smoothing, num_classes=n_classes)


def tune(net: TunedNet, batches: Any, preset: FinetunePreset, *, batch_size: int, n_classes: int, device: str,
         label_map: np.ndarray | None = None, augment: TimmViewAugment | None = None,
         after_epoch: Callable[[int], None] | None = None) -> tuple[list[float], list[float]]:
    """The preset's optimiser over every parameter, network in train mode (BatchNorm updates its statistics,
    drop path is on), one update every ``preset.accum_iter`` batches (gradients accumulated, the loss divided by
    it, a partial accumulation at the end of an epoch dropped, as the references' ``engine_finetune.py``), the
    learning rate set before each (``preset.lr_at`` x the group's ``lr_scale``), gradients clipped to
    ``preset.clip_grad`` after unscaling (mae_st's ``NativeScalerWithGradNormCount``); ``batch_size``: the
    effective batch of one update; ``batches`` is a loader with ``set_epoch``; ``label_map``: stored label -> the
    protocol's class (None: the same). Returns the mean loss and the learning rate at the start of each epoch."""
    to_class = None if label_map is None else torch.as_tensor(label_map)
    groups = param_groups(net, preset)
    opt = (torch.optim.AdamW if preset.optimizer == "adamw" else torch.optim.Adam)(groups, lr=preset.lr_at(0, 1))
    mix = build_mixup(preset, n_classes)
    criterion = _criterion(preset)
    scaler = torch.amp.GradScaler("cuda", enabled=device.startswith("cuda") and preset.precision == "fp16")
    steps, accum = max(len(batches), 1), preset.accum_iter
    losses, lrs = [], []
    for epoch in progress(range(preset.epochs), desc="fine-tuning", unit="epoch"):
        batches.set_epoch(epoch)
        net.train()
        opt.zero_grad(set_to_none=True)
        total, n = 0.0, 0
        lrs.append(preset.lr_at(epoch, batch_size))
        for step, batch in enumerate(batches):
            if step % accum == 0:  # per update, as MAE's engine_finetune.py:46-47 (mae_st's :50-51)
                lr = preset.lr_at(epoch + step / steps, batch_size)
                for group in opt.param_groups:
                    group["lr"] = lr * group["lr_scale"]
            x = as_input(batch.views[0] if augment is None else augment(batch.views[0]))
            target = batch.label if to_class is None else to_class.to(batch.label.device)[batch.label]
            if mix is not None:
                x, target = mix(x, target)
            with _autocast(device, preset.precision):
                loss = criterion(net(x), target)
            scaler.scale(loss / accum).backward()
            total += loss.item()  # CPU-GPU sync, once per step
            n += 1
            if (step + 1) % accum:
                continue
            if preset.clip_grad is not None:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(net.parameters(), preset.clip_grad)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
        losses.append(total / max(n, 1))
        if after_epoch is not None:
            after_epoch(epoch)
    return losses, lrs


@torch.inference_mode()
def score(net: nn.Module, batches: Any, test: Source, device: str, precision: str,
          key_map: dict[str, str] | None = None) -> Features:
    """Class scores of the test samples (network in eval mode), rows in ``test``'s key order and classes;
    ``key_map``: a batch key -> its row's key in ``test`` (clips: any frame -> its clip's row)."""
    net.eval()
    keys: list[str] = []
    labels, out = [], []
    for batch in batches:
        with _autocast(device, precision):
            logits = net(as_input(batch.views[0].to(device)))
        out.append(logits.float().cpu().numpy())
        labels.append(batch.label.cpu().numpy().astype(np.int64))
        keys += [key_map[k] for k in batch.keys] if key_map is not None else list(batch.keys)
    width = _linear(net).out_features
    feats = np.concatenate(out) if out else np.zeros((0, width), dtype=np.float32)
    got = Features(np.array(keys, dtype=str), np.concatenate(labels) if labels else np.zeros(0, np.int64), feats,
                   stats=dict(getattr(batches, "stats", {}) or {})).select(test.keys)
    if test.label_map is not None:
        got.labels = test.label_map[got.labels]
    return got


_BEST_RULES = {"max": ", best epoch (best_top1, best_epoch) and the best top-5 over the epochs on its own (best_top5), "
                      "as the reference prints them",
               "at_best_top1": ", best epoch (best_top1, best_epoch; best_top5 = top-5 of that epoch)",
               "selects": ", best epoch by top-5 (best_top5, best_epoch; best_top1 = top-1 of that epoch), the "
                          "checkpoint the reference keeps"}


def _best(per_epoch: list[tuple[float, float]], rule: str) -> dict[str, Any]:
    """The best test epoch (1-based, the first of equals) by top-1 (by top-5 for ``selects``), and top-5 by
    ``rule``."""
    by = 1 if rule == "selects" else 0
    epoch = max(range(len(per_epoch)), key=lambda e: (per_epoch[e][by], -e))
    top5 = max(t5 for _, t5 in per_epoch) if rule == "max" else per_epoch[epoch][1]
    return {"best_epoch": epoch + 1, "best_top1": round(per_epoch[epoch][0], 2), "best_top5": round(top5, 2),
            "top1_per_epoch": [round(t1, 2) for t1, _ in per_epoch],
            "top5_per_epoch": [round(t5, 2) for _, t5 in per_epoch]}


def finetune(model: EvalModel, plan: Plan, subset: Source, opts: DecodeOptions, preset: FinetunePreset, *,
             then_linear: bool = False, probe: str = "adam", clips: tuple[int, int] | None = None,
             label: str | None = None) -> list[DecodeResult]:
    """Tune ``model`` with ``preset`` (resolved for it: :meth:`FinetuneOptions.resolve`) and a new head on
    ``subset`` (read by key), score it on ``plan.test``; with ``then_linear`` also a linear ``probe`` on the tuned
    trunk over the full ``plan.train``. ``opts`` sizes the views and the scoring batches and (``then_linear``)
    the probe; nothing is cached, since the tuned weights exist only in this run. ``clips``: (frames, stride) of
    the clips the loaders make; ``subset`` and ``plan.test`` are then clip sides (module docstring). ``label``: the
    report's ``probe`` column (default :meth:`FinetunePreset.label` of the preset's fraction)."""
    from headcam.pipelines.loader import LoaderConfig, build_loader
    from headcam.pipelines.spec import resolve_spec

    if model.kind != "network":
        raise UsageError(f"finetune needs a network (checkpoint or random:ARCH); '{model.name}' has nothing to tune")
    opts = dataclasses.replace(opts, cache_dir=None)
    torch.manual_seed(opts.seed)
    random.seed(opts.seed)  # timm's RandAugment, random erasing and Mixup draw from random / numpy
    np.random.seed(opts.seed)
    net = build_net(model, preset, plan.n_classes).to(opts.device)
    n = len(subset.keys)
    frames, stride = clips or (0, 1)
    train_keys = clip_keys(subset) if clips else frozenset(subset.keys)
    test_keys = clip_keys(plan.test) if clips else frozenset(plan.test.keys)
    # every (worker) slot needs a shard holding subset samples and a full batch of them; mixing pairs samples
    workers = min(opts.workers, len(select(subset.dataset, subset.splits, sorted(train_keys)).shards))
    batch_size = min(preset.batch_size, n // max(workers, 1))
    batch_size -= batch_size % 2 if preset.mixing else 0
    if batch_size < 1:
        raise UsageError(f"--recipe {preset.name}: {n} tuning sample(s) cannot fill a batch")
    if n // batch_size < preset.accum_iter:
        raise UsageError(f"--recipe {preset.name} updates every {preset.accum_iter} batches: {n} tuning sample(s) in "
                         f"batches of {batch_size} never reach one update an epoch; use a smaller --tune-batch-size")
    spec = resolve_spec(preset.views[0], [*preset.views[1], *preset.view_norm])
    loader = build_loader(subset.dataset, subset.splits, LoaderConfig(
        spec, batch_size=batch_size, size=opts.size, device=opts.device, workers=workers, seed=opts.seed, train=True,
        keys=train_keys, clip_frames=frames, clip_stride=stride))
    augment = TimmViewAugment(opts.size, preset.rand_augment, preset.reprob, spec.mean, spec.std) \
        if preset.rand_augment or preset.reprob else None
    test_spec = eval_view(preset.test_interpolation, [f"resize_ratio={preset.test_ratio(opts.size)}",
                                                      *preset.view_norm])
    test_loader = build_loader(plan.test.dataset, plan.test.splits, LoaderConfig(  # clips: --batch-size frames
        test_spec, batch_size=max(1, opts.batch_size // max(frames, 1)), size=opts.size, device=opts.device,
        workers=opts.workers, seed=opts.seed, train=False, keys=test_keys, clip_frames=frames, clip_stride=stride))
    key_map = clip_key_map(plan.test) if clips else None
    unseen = np.bincount(subset.labels, minlength=plan.n_classes) == 0
    per_epoch: list[tuple[float, float]] = []
    last: list[Features] = []
    t_score = 0.0

    def test_now(epoch: int) -> None:
        nonlocal t_score
        if not preset.reports_best and epoch < preset.epochs - 1:
            return
        t = time.perf_counter()
        got = score(net, test_loader, plan.test, opts.device, preset.precision, key_map)
        if preset.mask_unseen:  # like the linear probes: a class absent from the tuning samples is never predicted
            got.feats[:, unseen] = -np.inf
        per_epoch.append((topk_accuracy(got.feats, got.labels, 1), topk_accuracy(got.feats, got.labels, 5)))
        last[:] = [got]
        t_score += time.perf_counter() - t

    t0 = time.perf_counter()
    losses, lrs = tune(net, loader, preset, batch_size=batch_size * preset.accum_iter, n_classes=plan.n_classes,
                       device=opts.device,
                       label_map=subset.label_map, augment=augment, after_epoch=test_now)
    test = last[0]
    scores = test.feats.astype(np.float64)
    res = ProbeResult(scores=scores, top1=per_epoch[-1][0], top5=per_epoch[-1][1])
    tuned = Features(np.array(subset.keys, dtype=str), subset.labels, np.zeros((n, 0), dtype=np.float32),
                     stats=dict(loader.stats))
    label = label or preset.label(preset.frac)
    row = {**result_row(model, dataclasses.replace(plan, train=subset), label, res, tuned, test,
                        feature_seconds=t_score, probe_seconds=time.perf_counter() - t0 - t_score),
           "feat_dim": model.feat_dim, "recipe": preset.name, "epochs": preset.epochs, "batch_size": batch_size,
           "accum_iter": preset.accum_iter, "lr": preset.effective_lr(batch_size * preset.accum_iter),
           "lr_per_epoch": lrs, "train_loss": [round(x, 4) for x in losses],
           "reported": "final epoch (top1, top5)" + (_BEST_RULES[preset.best_top5] if preset.reports_best else "")}
    if clips:
        row.update(clip_frames=frames, clip_stride=stride, samples="clips")
    if preset.reports_best:
        row.update(_best(per_epoch, preset.best_top5))
    results = [DecodeResult(row=row, probe=res, y_test=test.labels, stats=row["loader_stats"])]
    if then_linear:  # the tuned trunk, frozen: decode reads it in eval mode, without gradients
        tuned_model = dataclasses.replace(model, trunk=net.features, feat_dim=_linear(net).in_features)
        lin = decode(tuned_model, plan, opts, probe)
        lin.row["probe"] = f"{label}+{probe}"
        results.append(lin)
    return results


def _linear(net: TunedNet) -> nn.Linear:
    return net.head if isinstance(net.head, nn.Linear) else net.head[-1]


__all__ = ["NO_WEIGHT_DECAY", "FinetuneOptions", "PooledViT", "TimmViewAugment", "TunedNet", "as_input", "build_mixup",
           "build_net", "few_shot_subset", "finetune", "param_groups", "score", "subset_summary", "tune"]
