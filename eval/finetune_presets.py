"""The fine-tuning protocols behind published numbers, as data: ``headcam-eval finetune --recipe NAME``.

One frozen :class:`FinetunePreset` per protocol, transcribed from the code that produced the numbers (file:line
beside each value and in ``configs/REFERENCES.md``). The tuning loop (:mod:`headcam.eval.finetune`) does what the
resolved preset says and the report records :meth:`FinetunePreset.settings`; nothing else decides a protocol value.

- ``headcam`` (default): SPEC §10: Adam, batch 256, 25 epochs, 1e-4 for ViTs, 5e-4 for CNNs with the last 2
  epochs at x0.2, random resized crop 0.2-1 + flip, scored once after the last epoch; every view bilinear.
- ``eminorhan``: eminorhan/dino ``eval_finetune.py`` + ``eval_scripts/eval_finetune_imagenet_sayavakepicutego4d.sh``:
  whole network, Adam lr 1e-4, wd 0, batch 256, 25 epochs, 1.0147 % of the training images, crop 0.08-1 (bilinear)
  + flip, tested after every epoch on a bicubic ``Resize(side + 16)`` + centre crop, the best epoch reported. A
  MAE-trained trunk gets eminorhan/mae's ``eval_finetune.py`` instead (``eminorhan-mae``: AdamW wd 0.05, a
  parameter-free BatchNorm before the head, ``Resize(side + 32)``, fp16, batch 128, 50 epochs, 2 %).
- ``mae``: facebookresearch/mae ``main_finetune.py`` + ``FINETUNE.md``: AdamW on layer-wise decayed groups, warm-up
  then half-cycle cosine per step, drop path, bicubic crops, RandAugment, random erasing, mixup / cutmix with label
  smoothing, a global-average-pooled head with its own LayerNorm, the whole training set, the best epoch reported.
- ``mae_st``: the few-shot video fine-tuning of Orhan et al. (2024), eminorhan/mae_st ``finetune.py`` +
  ``scripts/finetune/finetune_sayavakepicutego4d_{ssv2,kinetics}.sh``: clips of 16 frames 0.282 s apart, a random
  resized crop (0.08-1, bilinear) + flip per clip, AdamW 1.2e-3 x 32 / 256 on layer-wise decayed groups (0.8),
  label smoothing 0.1, drop path 0.1, dropout 0.3 before the head on the final-norm CLS token, gradients clipped at
  5, tested after every epoch, the epoch of the best top-5 kept (the reference saves that checkpoint).

Per-architecture values (``by_arch``) are matched by arch-name prefix, first match wins. This module imports
nothing heavy: ``--help`` lists the presets without torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from headcam.console import UsageError
from headcam.eval.linear_presets import ONE_STEP_NOTE, RRC_FLIP

#: ``--recipe`` choices of ``headcam-eval finetune``; ``headcam`` is the default.
FINETUNE_RECIPES = ("headcam", "eminorhan", "mae", "mae_st")

#: timm's ``create_transform(is_training=True, interpolation='bicubic')`` crop: ``RandomResizedCropAndInterpolation``
#: (area 0.08-1, ratio 3/4-4/3, bicubic) + flip 0.5.
RRC_FLIP_BICUBIC = ("mae", ("crop.scale=[0.08, 1.0]", "crop.interpolation=bicubic"))
_SEEDED = "the subset is drawn seeded (--seed); the reference's np.random.shuffle is unseeded"
_LAST_BATCH = ("the training loader yields full batches only; the reference keeps the last partial batch of "
               "its subset")
#: eminorhan/mae_st@ad89b29 (2024-07-15); ``sh``: scripts/finetune/finetune_sayavakepicutego4d_{ssv2,kinetics}.sh,
#: the few-shot runs of the paper's HVM-1 model (the ``_448`` scripts are the same but for the checkpoint).
MAE_ST_REF = ("eminorhan/mae_st@ad89b29 finetune.py + scripts/finetune/finetune_sayavakepicutego4d_{ssv2,kinetics}.sh "
              "(Orhan et al. 2024, few-shot SSv2 / Kinetics-700)")
#: util/kinetics.py:85-86: the video loader's normalisation, (0.45, 0.45, 0.45) / (0.225, 0.225, 0.225).
KINETICS_NORM = ("mean=[0.45, 0.45, 0.45]", "std=[0.225, 0.225, 0.225]")


def interval_stride(interval: float, fps: float | None) -> int:
    """Sampled frames of a dataset ingested at ``fps`` between clip frames ``interval`` seconds apart: rounded, at
    least 1 (1 where either is unknown)."""
    return max(1, round(interval * fps)) if interval and fps else 1


@dataclass(frozen=True)
class FinetunePreset:
    """Every setting of a fine-tuning protocol that changes its numbers.

    ``frac``: the fraction of the protocol's training samples that tune (``--frac`` overrides), counted ``round``
    (headcam) or ``floor`` (``int(frac * n)``, the references). ``views``: (view recipe, overrides) of the training
    views, made by headcam's loader. ``rand_augment`` / ``reprob``: timm's RandAugment policy and random-erasing
    probability, applied after the crop and flip on each view (``create_transform(..., separate=True)``'s second and
    third stages); ``None`` / 0 = off. ``test_resize_add``: the test view's short side is ``size + add`` (eminorhan);
    else ``size / test_resize_ratio``, a ratio of 1 above ``full_view_above`` px (MAE's ``crop_pct``). ``head``:
    ``linear`` (trunk features -> Linear), ``batchnorm-linear`` (a parameter-free BatchNorm1d(eps 1e-6) first) or
    ``avgpool`` (ViT: the mean of the last block's patch tokens -> a new LayerNorm -> Linear, the trunk's final norm
    dropped); ``head_dropout``: a Dropout of that rate before the Linear (0: none); ``head_init`` ``torch``
    (``nn.Linear``'s own), ``trunc_normal`` (std ``head_std``, bias 0) or ``normal`` (``nn.init.normal_`` of the weight
    only, the bias left as ``nn.Linear`` drew it). ``features``: ``trunk`` (whatever the trunk gives, ``--vit-features``
    included) or ``cls`` (a ViT's final-norm CLS token). ``lr``: the base learning rate; the optimiser's is
    ``lr x batch / lr_scale_batch`` where that is set (MAE's ``blr``). ``schedule``: ``step`` (x ``lr_drop`` for the
    last ``lr_drop_epochs`` epochs), ``constant`` or ``warmup-cosine`` (MAE ``util/lr_sched.py``, per step), its cosine
    ``schedule_epochs`` long where that is set (a reference that stops at a time limit long before its ``--epochs``),
    else ``epochs``. ``clip_grad``: the gradients' global norm is clipped to it (None: never). ``accum_iter``: batches
    of ``batch_size`` per optimiser update (gradients accumulated); the effective batch, which scales ``lr``, is their
    product. ``layer_decay``: the lr of block i is scaled by ``layer_decay ** (depth - i)`` (None: off). ``precision``:
    the arithmetic on CUDA (``fp16`` with a gradient scaler; CPU is always fp32). ``reports_best``: tested after every
    epoch and the best epoch reported beside the final one; ``best_top5``: ``max`` (the best epoch by top-1, top-5
    maximised on its own, as the reference prints it), ``at_best_top1`` (the best epoch by top-1, its top-5) or
    ``selects`` (the best epoch is the one of the highest top-5, its top-1 beside it: the reference keeps that epoch's
    checkpoint). ``clip_frames`` / ``frame_interval``: video recipes tune and test on clips of that many frames, that
    many seconds apart (the loader's ``clip_stride`` is the interval in the dataset's sampled frames); 0: frames.
    ``view_norm``: view-spec overrides (mean, std) of both the training and the test views. ``test_interpolation``:
    the test view's resize filter (``bilinear`` or ``bicubic``, antialiased), the reference's test ``Resize``; the
    training views' is their recipe's ``crop.interpolation``, stated in ``views`` where it is not the recipe's.
    ``mask_unseen``: a class absent from the tuning samples is never predicted (headcam's rule for every readout).
    ``by_arch`` / ``by_method``: per-architecture values and the preset a trunk trained by a method follows.
    ``deviations``: what headcam does differently, in every report.
    """

    name: str
    reference: str
    frac: float
    subset_count: str
    views: tuple[str, tuple[str, ...]]
    head: str
    head_init: str
    optimizer: str
    lr: float
    schedule: str
    weight_decay: float
    batch_size: int
    epochs: int
    precision: str
    reports_best: bool
    test_interpolation: str
    test_resize_ratio: float = 0.875
    test_resize_add: int | None = None
    full_view_above: int | None = None
    head_std: float = 0.0
    head_dropout: float = 0.0
    features: str = "trunk"
    lr_scale_batch: int | None = None
    lr_drop: float = 1.0
    lr_drop_epochs: int = 0
    warmup_epochs: int = 0
    min_lr: float = 0.0
    schedule_epochs: int | None = None
    clip_grad: float | None = None
    accum_iter: int = 1
    layer_decay: float | None = None
    drop_path: float = 0.0
    rand_augment: str | None = None
    reprob: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    label_smoothing: float = 0.0
    best_top5: str = "max"
    clip_frames: int = 0
    frame_interval: float = 0.0
    view_norm: tuple[str, ...] = ()
    mask_unseen: bool = False
    vit_only: bool = False
    by_arch: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    by_method: tuple[tuple[str, str], ...] = ()
    deviations: tuple[str, ...] = ()

    def resolve(self, arch: str | None, method: str | None = None, **overrides: Any) -> FinetunePreset:
        """The preset one model runs: another preset where ``by_method`` names one for ``method``, this one's
        ``by_arch`` values for ``arch`` (None: not known yet), then the command line's ``overrides`` (None values
        ignored)."""
        other = dict(self.by_method).get(method or "")
        if other:
            return FINETUNE_PRESETS[other].resolve(arch, None, **overrides)
        if self.vit_only and arch is not None and not arch.startswith("vit"):
            raise UsageError(f"--recipe {self.name} fine-tunes ViTs (layer-wise lr decay by block, a pooled token "
                             f"head); '{arch}' is not one")
        values = next((dict(v) for prefix, v in self.by_arch if (arch or "").startswith(prefix)), {})
        values.update({k: v for k, v in overrides.items() if v is not None})
        return dataclasses.replace(self, by_arch=(), by_method=(), **values)

    def check(self) -> FinetunePreset:
        """One line for a value that cannot work, before any data is read."""
        if not 0 < self.frac <= 1:
            raise UsageError(f"--frac {self.frac}: the fraction of training samples must be in (0, 1]")
        if self.epochs < 1 or self.batch_size < 1:
            raise UsageError(f"--epochs and --tune-batch-size must be >= 1 (got {self.epochs}, {self.batch_size})")
        if self.lr <= 0 or self.lr_drop_epochs < 0:
            raise UsageError(f"--lr must be > 0 and --lr-drop-epochs >= 0 (got {self.lr}, {self.lr_drop_epochs})")
        if self.mixing and self.batch_size < 2:
            raise UsageError(f"--recipe {self.name} mixes pairs of samples (mixup / cutmix): --tune-batch-size "
                             "must be >= 2")
        return self

    @property
    def mixing(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def effective_lr(self, batch_size: int) -> float:
        """The peak learning rate of the optimiser: ``lr`` scaled by the batch where the reference does."""
        return self.lr * batch_size / self.lr_scale_batch if self.lr_scale_batch else self.lr

    def lr_at(self, t: float, batch_size: int) -> float:
        """The learning rate at ``t`` epochs (fractional: ``epoch + step / steps_per_epoch``), before any layer
        scale. ``warmup-cosine`` is MAE's ``adjust_learning_rate`` (``util/lr_sched.py:9-21``) term for term."""
        lr = self.effective_lr(batch_size)
        if self.schedule == "step":
            return lr * (self.lr_drop if int(t) >= self.epochs - self.lr_drop_epochs else 1.0)
        if self.schedule == "constant":
            return lr
        if t < self.warmup_epochs:
            return lr * t / self.warmup_epochs
        length = self.schedule_epochs or self.epochs
        return self.min_lr + (lr - self.min_lr) * 0.5 * (
            1.0 + math.cos(math.pi * (t - self.warmup_epochs) / (length - self.warmup_epochs)))

    def test_ratio(self, size: int) -> float:
        """``resize_ratio`` of the test view at ``size`` px: the centre crop's share of the resized short side."""
        if self.test_resize_add is not None:
            return size / (size + self.test_resize_add)
        return 1.0 if self.full_view_above is not None and size > self.full_view_above else self.test_resize_ratio

    def label(self, frac: float) -> str:
        """The report's ``probe`` column: ``finetune1%`` (headcam), ``finetune1.0147%/eminorhan`` ..."""
        return f"finetune{100 * frac:g}%" + ("" if self.name == "headcam" else f"/{self.name}")

    def settings(self) -> dict[str, Any]:
        """What a report records of the preset: every field, the per-architecture and per-method tables as dicts."""
        out = dataclasses.asdict(self)
        out["by_arch"] = {prefix or "other": dict(v) for prefix, v in self.by_arch}
        out["by_method"] = dict(self.by_method)
        out["views"] = {"recipe": self.views[0], "overrides": list(self.views[1])}
        out["reported"] = (f"final epoch and best epoch by {'top-5' if self.best_top5 == 'selects' else 'top-1'} "
                           "(tested after every epoch)" if self.reports_best else "final epoch")
        return out

    def clip_stride(self, fps: float | None) -> int:
        """The loader's ``clip_stride`` on a dataset sampled at ``fps``: :func:`interval_stride`."""
        return interval_stride(self.frame_interval, fps)


FINETUNE_PRESETS: dict[str, FinetunePreset] = {p.name: p for p in (
    FinetunePreset(
        name="headcam", reference="headcam (SPEC §10); the fine-tuning of earlier headcam reports",
        frac=0.01, subset_count="round",
        views=("mae", ("crop.interpolation=bilinear",)),  # random resized crop 0.2-1 + flip, bilinear
        test_interpolation="bilinear",  # headcam's own eval view, as earlier reports
        head="linear", head_init="torch", optimizer="adam",  # test view: resize to size / 0.875, centre crop
        lr=5e-4, schedule="step", lr_drop=0.2, lr_drop_epochs=2, weight_decay=0.0,  # CNNs: x0.2 for the last 2
        batch_size=256, epochs=25, precision="bf16", reports_best=False, mask_unseen=True,
        by_arch=(("vit", (("lr", 1e-4), ("lr_drop_epochs", 0))),),  # ViTs: Adam 1e-4, constant
        deviations=()),
    FinetunePreset(
        name="eminorhan",
        reference="eminorhan/dino@83243f1 eval_finetune.py + eval_scripts/eval_finetune_imagenet_sayavakepicutego4d.sh",
        frac=0.010147,  # script --frac_retained 0.010147 (:39)
        subset_count="floor",  # eval_finetune.py:84 indices[:int(frac_retained * num_train)]
        views=RRC_FLIP,  # :64-71 RandomResizedCrop(input_size) (bilinear), RandomHorizontalFlip()
        test_resize_add=16, test_interpolation="bicubic",  # :56-58 Resize(input_size + 16, interpolation=3), CenterCrop
        head="linear", features="cls",  # vision_transformer.py:199-204 head(norm(x)[:, 0]); :32 resnext model.fc
        head_init="torch",  # :32 a fresh nn.Linear(2048, num_labels) for the ResNeXt
        optimizer="adam", lr=1e-4, schedule="constant",  # :96 Adam(model.parameters(), lr, weight_decay=0.0); --lr
        weight_decay=0.0,
        batch_size=256, epochs=25,  # script --batch_size 256 --epochs 25
        precision="fp32",  # no autocast in eval_finetune.py
        reports_best=True, best_top5="max",  # :106-112 tested every epoch (val_freq 1), best_acc_1/_5 = max(...)
        by_arch=(("vit", (("head_init", "trunc_normal"), ("head_std", 0.02))),),  # vision_transformer.py _init_weights
        by_method=(("mae", "eminorhan-mae"),),
        deviations=(ONE_STEP_NOTE, _LAST_BATCH, _SEEDED)),
    FinetunePreset(
        name="eminorhan-mae",
        reference="eminorhan/mae@a0d9041 eval_finetune.py + eval_scripts/eval_finetune_imagenet_{s,b}.sh",
        frac=0.02,  # scripts --frac_retained 0.02
        subset_count="floor",  # :99
        views=RRC_FLIP,  # :82-87 RandomResizedCrop(input_size) (bilinear), RandomHorizontalFlip()
        test_resize_add=32, test_interpolation="bicubic",  # :74-76 Resize(input_size + 32, interpolation=3)
        head="batchnorm-linear", features="cls",  # :112 global_pool False (parser default), :141 BN(affine=False)
        head_init="trunc_normal", head_std=0.01,  # :138 trunc_normal_(head.weight, std=0.01); bias 0 (timm init)
        optimizer="adamw", lr=1e-4, schedule="constant",  # :158 AdamW(model.parameters(), lr, weight_decay=0.05)
        weight_decay=0.05,
        batch_size=128, epochs=50,  # eval_finetune_imagenet_{s,b}.sh --batch_size 128 --epochs 50 --lr 0.0001
        precision="fp16",  # engine_finetune.py:42, :97 torch.cuda.amp.autocast()
        reports_best=True, best_top5="max",  # :182-186 max_accuracy_1 / _5
        deviations=(ONE_STEP_NOTE, _LAST_BATCH, _SEEDED)),
    FinetunePreset(
        name="mae", reference="facebookresearch/mae@efb2a80 main_finetune.py + FINETUNE.md",
        frac=1.0,  # the whole ImageNet training set (util/datasets.py build_dataset)
        subset_count="floor",
        views=RRC_FLIP_BICUBIC,  # util/datasets.py:37-48 create_transform(is_training=True, interpolation='bicubic')
        rand_augment="rand-m9-mstd0.5-inc1", reprob=0.25,  # main_finetune.py:82-89 --aa, --reprob (remode pixel)
        test_resize_ratio=224 / 256, full_view_above=224,  # util/datasets.py:53-61 crop_pct 224/256, 1.0 above 224
        test_interpolation="bicubic",  # util/datasets.py:59 Resize(size, interpolation=PIL.Image.BICUBIC)
        head="avgpool",  # :114-115 global_pool True; models_vit.py:27-32, :46-48 fc_norm(mean of patch tokens)
        head_init="trunc_normal", head_std=2e-5,  # :257 trunc_normal_(model.head.weight, std=2e-5)
        optimizer="adamw",  # :283-287 AdamW(param_groups_lrd(...), lr)
        lr=1e-3, lr_scale_batch=256,  # :68-70 blr 1e-3, :269-270 lr = blr * eff_batch / 256
        schedule="warmup-cosine", warmup_epochs=5, min_lr=1e-6,  # :73-77; engine_finetune.py:46-47 per step
        weight_decay=0.05, layer_decay=0.75, drop_path=0.1,  # :57, :63, :70 parser defaults
        mixup=0.8, cutmix=1.0,  # FINETUNE.md:73 --mixup 0.8 --cutmix 1.0 (main_finetune.py:222-225 Mixup(...))
        label_smoothing=0.1,  # main_finetune.py:84 --smoothing 0.1, handed to Mixup (:225), SoftTargetCE (:290-292)
        batch_size=1024,  # FINETUNE.md:67-77 32 per GPU x 4 nodes x 8 GPUs
        epochs=50,  # :46
        precision="fp16",  # engine_finetune.py:55 torch.cuda.amp.autocast() + NativeScaler
        reports_best=True, best_top5="at_best_top1",  # :325-328 max_accuracy (top-1 only)
        vit_only=True,
        by_arch=(("vit_base", (("lr", 5e-4), ("layer_decay", 0.65), ("epochs", 100), ("drop_path", 0.1))),  # :68-74
                 ("vit_large", (("lr", 1e-3), ("layer_decay", 0.75), ("epochs", 50), ("drop_path", 0.2)))),  # :84-93
        deviations=(ONE_STEP_NOTE, "RandAugment and random erasing run on each crop after headcam's loader made it, "
                    "per sample on the CPU (timm's stages 2 and 3; the crop is stage 1, bicubic)",
                    "other ViTs than B and L take main_finetune.py's parser defaults (blr 1e-3, layer decay 0.75, 50 "
                    "epochs, drop path 0.1): FINETUNE.md gives no recipe for them")),
    FinetunePreset(
        name="mae_st", reference=MAE_ST_REF,
        frac=1.0,  # the whole N-shot training folder (sh --train_dir .../train_${SHOT}shot); --shots draws it here
        subset_count="floor",
        clip_frames=16,  # sh --num_frames 16 (a model whose temporal embedding is another length keeps its own)
        # sh --sampling_rate 8, util/kinetics.py:74 target_fps 30: a window of 8 * 16 / 30 s (:329 clip_sz), 16 frames
        # by linspace over its first to last frame (:330-338; decoder.py temporal_sampling): (128 - 1) / 15 frames of
        # 30 fps video apart
        frame_interval=127 / 450,
        # finetune.py:119-120 jitter_scales_relative [0.08, 1], aspect [0.75, 1.3333]: util/decoder/utils.py:124-132
        # random_resized_crop, bilinear (transform.py:434), flip 0.5 (:133-134); one draw for all frames of a clip
        views=("mae", ("crop.scale=[0.08, 1.0]", "crop.ratio=[0.75, 1.3333]", "crop.interpolation=bilinear")),
        view_norm=KINETICS_NORM,  # util/kinetics.py:85-86, :340
        test_resize_ratio=224 / 256,  # kinetics.py:252-256 test crop: short side 256 (train_jitter_scales[0]), 224
        test_interpolation="bilinear",  # util/decoder/transform.py:73 interpolate(mode="bilinear")
        head="linear", features="cls",  # models_vit.py:167-171 head(dropout(norm(x[:, 0]))), global_pool unused
        head_dropout=0.3,  # finetune.py:46 --dropout 0.3 (models_vit.py:97 nn.Dropout(dropout))
        head_init="normal", head_std=0.02,  # models_vit.py:101 torch.nn.init.normal_(self.head.weight, std=0.02)
        optimizer="adamw",  # finetune.py:235-236 AdamW(param_groups_lrd(...), lr)
        lr=0.0012, lr_scale_batch=256,  # sh --blr 0.0012; finetune.py:226-227 lr = blr * eff_batch_size / 256
        batch_size=16, accum_iter=2,  # sh --batch_size_per_gpu 16 --accum_iter 2, 1 GPU: 32 an update (:222)
        # full batches only, as finetune.py:201 DataLoader(..., drop_last=True)
        schedule="warmup-cosine", warmup_epochs=0, min_lr=1e-5,  # finetune.py:55-56; engine_finetune.py:50-51
        schedule_epochs=100000,  # sh --epochs 100000: the cosine barely moves (the logs' train_lr 1.49999990e-4)
        epochs=20,  # the runs stopped at the Slurm limit: 14-20 epochs in models_finetuned/new/sayavakepicutego4d_*
        weight_decay=1e-4, layer_decay=0.8,  # finetune.py:51, :54 parser defaults
        drop_path=0.1,  # finetune.py:47
        label_smoothing=0.1,  # finetune.py:61 --smoothing 0.1 -> LabelSmoothingCrossEntropy (:245-246); sh mixup 0
        clip_grad=5.0,  # sh --clip_grad 5.0 (util/misc.py:239-242 after unscale_)
        precision="fp16",  # finetune.py:117-118 fp32 False: engine_finetune.py:69 torch.cuda.amp.autocast()
        reports_best=True, best_top5="selects",  # finetune.py:266-274 tested every epoch, saved on a top-5 rise
        vit_only=True,
        deviations=(
            "the test view is one clip per shard clip, its first valid start, short side resized to size x 256 / 224 "
            "and centre-cropped (the reference's test mode with one clip and one crop takes the centre clip); the "
            "reference's per-epoch val pass (val_mode val) draws a random clip, scale 256-320, crop and flip instead",
            "a clip's frames are the shard's sampled frames, clip_stride apart (frame_interval x the ingest fps, "
            "rounded): the reference picks 16 of the video's own frames by linspace over an 8 x 16 / 30 s window, "
            "(128 x fps / 30 - 1) / 15 frames apart, the frame indices truncated",
            "crops are antialiased; the reference's torch interpolate (bilinear) is not",
            "a clip shorter than 16 frames at the stride is skipped and counted (the report's clips.too_short); the "
            "reference's temporal_sampling (util/decoder/decoder.py) clamps the frame indices, repeating the last "
            "frame of a short video",
            "the subset is drawn seeded per class (--shots, nested: the 10-shot clips are among the 50-shot ones); "
            "the reference's 10- / 50-shot folders were made outside its code (SSv2: the first file names per "
            "class, Kinetics: a random draw)",
            "epochs: 20 (the reference runs --epochs 100000 until its time limit, 14-20 epochs for HVM-1)")),
)}


def finetune_preset(name: str) -> FinetunePreset:
    """The preset called ``name``, or a one-line UsageError listing them."""
    if name not in FINETUNE_RECIPES:
        raise UsageError(f"unknown finetune recipe '{name}'; one of {', '.join(FINETUNE_RECIPES)}")
    return FINETUNE_PRESETS[name]


__all__ = ["FINETUNE_PRESETS", "FINETUNE_RECIPES", "FinetunePreset", "RRC_FLIP", "RRC_FLIP_BICUBIC", "finetune_preset",
           "interval_stride"]
