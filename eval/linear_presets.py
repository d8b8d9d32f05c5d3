"""The linear-probe protocols behind published numbers, as data: ``headcam-eval linear --recipe NAME``.

One frozen :class:`LinearPreset` per protocol, transcribed from the code that produced the numbers (file:line
in ``configs/REFERENCES.md`` and beside each value below). The CLI offers :data:`LINEAR_RECIPES`, the probe
(:mod:`headcam.eval.linear`, :mod:`headcam.eval.probes`) trains what a preset says and the report records
:meth:`LinearPreset.settings`; nothing else decides a protocol value.

- ``headcam``: today's probe (default): centre-crop features (bilinear) extracted once and cached, standardised,
  Adam.
- ``dino``: facebookresearch/dino ``eval_linear.py``: random-resized-crop + flip views through the frozen trunk
  every epoch, SGD with the linear scaling rule and a cosine schedule, ViT features by size; best test epoch.
- ``eminorhan``: eminorhan/dino ``eval_linear.py`` (and its ``eval_scripts``): the same views, the last CLS
  token, Adam, epochs by dataset; best test epoch. A MAE-trained trunk gets eminorhan/mae's variant
  (``eminorhan-mae``: a parameter-free BatchNorm before the linear layer, fp16 autocast).
- ``baby-vision``: eminorhan/baby-vision ``linear_decoding.py``: fixed features, raw, Adam, batch 256, the
  score after the final epoch.

This module imports nothing heavy: ``--help`` lists the presets without torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from headcam.console import UsageError
from headcam.train.archs import VITS

#: ``--recipe`` choices of ``headcam-eval linear``; ``headcam`` is the default.
LINEAR_RECIPES = ("headcam", "dino", "eminorhan", "baby-vision")

#: The train views of the DINO / eminorhan probes: torchvision's ``RandomResizedCrop(224)`` defaults (scale
#: 0.08-1, ratio 3/4-4/3, bilinear) and ``RandomHorizontalFlip()`` (p 0.5), nothing else: the ``mae`` view recipe
#: (crop and flip only) with its crop scale widened to torchvision's default and its (bicubic) crop made bilinear.
RRC_FLIP = ("mae", ("crop.scale=[0.08, 1.0]", "crop.interpolation=bilinear"))


@dataclass(frozen=True)
class LinearPreset:
    """Every setting of a linear-probe protocol that changes its numbers.

    ``views``: ``None`` = features of the eval view (resize to size/0.875, centre crop) extracted once (and
    cached); else ``(view recipe, overrides)`` whose random views go through the frozen trunk every epoch.
    ``test_interpolation``: the eval view's resize filter (``bilinear`` or ``bicubic``, antialiased), the
    reference's test ``Resize``: the test split's and, with ``views`` None, the cached train features' too.
    ``vit_features``: a ViT's probe features (:func:`~headcam.train.backbones.parse_vit_features`) by arch-name
    prefix, first match wins, ``""`` matching every ViT; ``None`` = ``--vit-features`` decides.
    ``head_init``: ``torch`` (``nn.Linear``'s own), ``normal`` (N(0, 0.01), bias 0) or ``trunc_normal``
    (truncated N(0, 0.01), bias 0). ``lr_scale_batch``: the effective lr is ``lr × batch / lr_scale_batch``
    (the linear scaling rule), ``None``: ``lr`` as given. ``schedule``: ``constant`` or ``cosine`` (per epoch,
    to 0 at the end, as ``CosineAnnealingLR(opt, epochs, eta_min=0)`` stepped once per epoch).
    ``epochs_by_protocol``: epochs where the reference scripts differ by dataset (``--protocol`` name), else
    ``epochs``. ``reports_best``: the reference prints the best test epoch (tested every epoch); the final
    epoch is always reported too. ``precision``: the trunk's arithmetic on CUDA (CPU is always fp32).
    ``by_method``: a trunk trained by that method follows another preset (eminorhan's MAE files).
    ``probe_label``: the report's ``probe`` column (default: the preset's name).
    ``deviations``: what headcam does differently from the reference, said in every report.
    """

    name: str
    reference: str
    views: tuple[str, tuple[str, ...]] | None
    vit_features: tuple[tuple[str, str], ...] | None
    standardise: bool
    batchnorm: bool
    head_init: str
    optimizer: str
    lr: float
    lr_scale_batch: int | None
    schedule: str
    momentum: float
    weight_decay: float
    batch_size: int
    epochs: int
    reports_best: bool
    precision: str
    test_interpolation: str
    epochs_by_protocol: tuple[tuple[str, int], ...] = ()
    by_method: tuple[tuple[str, str], ...] = ()
    probe_label: str = ""
    deviations: tuple[str, ...] = field(default=())

    def epochs_for(self, protocol: str) -> int:
        return dict(self.epochs_by_protocol).get(protocol, self.epochs)

    def effective_lr(self, lr: float, batch_size: int) -> float:
        """The learning rate the optimiser starts at: ``lr`` scaled by the batch where the reference does."""
        return lr * batch_size / self.lr_scale_batch if self.lr_scale_batch else lr

    def vit_features_for(self, arch: str | None, asked: str) -> str:
        """The probe features a ViT ``arch`` gets: the preset's by size, or ``asked`` (``--vit-features``)
        where the preset leaves it to the user, the user asked for something other than the default, or
        ``arch`` is no ViT (which ignores it)."""
        if self.vit_features is None or asked != "cls" or arch not in VITS:
            return asked
        return next((feats for prefix, feats in self.vit_features if (arch or "").startswith(prefix)), "cls")

    def for_method(self, method: str | None) -> LinearPreset:
        """The preset a trunk trained by ``method`` gets (itself unless ``by_method`` names another)."""
        other = dict(self.by_method).get(method or "")
        return LINEAR_PRESETS[other] if other else self

    def settings(self) -> dict[str, Any]:
        """What a report records of the preset: every field but the bookkeeping ones."""
        out = dataclasses.asdict(self)
        for key in ("by_method", "epochs_by_protocol"):
            out[key] = dict(out[key])
        if out["vit_features"] is not None:
            out["vit_features"] = {prefix or "other ViTs": feats for prefix, feats in out["vit_features"]}
        out["views"] = f"eval view (resize + centre crop, {self.test_interpolation}), extracted once" \
            if self.views is None else {
            "recipe": self.views[0], "overrides": list(self.views[1]), "recomputed": "every epoch"}
        out["trunk"] = "frozen, eval mode (BatchNorm keeps its running statistics: SPEC §7)"
        return out


#: The eval view every preset tests on (and the cached ones train on): the centre box of 0.875 of the short side
#: resized to ``size`` in one step, where the references' ``Resize(256)`` + ``CenterCrop(224)`` take two: the same
#: pixels for the same box (max 1 level), but ours is a box of whole source pixels, floored
#: (tests/eval/test_preset_views.py).
ONE_STEP_NOTE = ("test view: the centre box resized in one step with the reference's filter (its Resize + CenterCrop "
                 "give the same pixels for the same box); the box's corners are whole source pixels, floored, where "
                 "the reference's crop, rounded in the resized image, lands on fractional ones: under 1 pixel of the "
                 "resized image apart, mean |diff| 3.9-5.6 / 255 on real frames")
_STREAM_NOTE = ("train views: every sample once per epoch in shard order, then the epoch's features shuffled "
                "(seeded) into batches, the last one partial, as the reference's sampler")

LINEAR_PRESETS: dict[str, LinearPreset] = {p.name: p for p in (
    LinearPreset(
        name="headcam", reference="headcam (SPEC §7); the probe of earlier headcam reports",
        views=None, vit_features=None, standardise=True, batchnorm=False, head_init="torch",
        optimizer="adam", lr=5e-4, lr_scale_batch=None, schedule="constant", momentum=0.0, weight_decay=0.0,
        batch_size=1024, epochs=100, reports_best=False, precision="bf16", probe_label="adam",
        test_interpolation="bilinear",  # headcam's own eval view, as earlier reports (SPEC §7)
        deviations=("features standardised with the training split's mean and spread",
                    "features of one centre crop per sample, extracted once (no train augmentation)")),
    LinearPreset(
        name="dino", reference="facebookresearch/dino@7c446df eval_linear.py",
        views=RRC_FLIP,  # :86-87 RandomResizedCrop(224), RandomHorizontalFlip()
        # :256-259 parser defaults n_last_blocks 4, avgpool False (ViT-S); README.md:340 ViT-B: 1 + avgpool
        vit_features=(("vit_base", "last1+avgpool"), ("", "last4")),
        standardise=False, batchnorm=False,
        head_init="normal",  # :243-244 normal_(0, 0.01), bias 0
        optimizer="sgd", lr=1e-3, lr_scale_batch=256,  # :103-107 lr × batch × world / 256, momentum 0.9, wd 0
        schedule="cosine", momentum=0.9, weight_decay=0.0,  # :109 CosineAnnealingLR(epochs, eta_min=0)
        batch_size=1024,  # :270 128 per GPU × 8 GPUs (README.md:261-263 runs --nproc_per_node=8)
        epochs=100,  # :265
        reports_best=True,  # :131-135 tested every epoch (val_freq 1), best_acc = max(...)
        precision="fp32",  # no autocast in eval_linear.py
        test_interpolation="bicubic",  # :66-67 Resize(256, interpolation=3), CenterCrop(224)
        deviations=(ONE_STEP_NOTE, _STREAM_NOTE,
                    "ViT-B's CLS and patch-average are concatenated, the reference interleaves them (:168-170): "
                    "a permutation of the features, the same linear probe")),
    LinearPreset(
        name="eminorhan", reference="eminorhan/dino@83243f1 eval_linear.py + eval_scripts/eval_linear_*.sh",
        views=RRC_FLIP,  # :72-77
        vit_features=(("", "cls"),),  # :175-176 get_intermediate_layers(inp) with n = 1: the last CLS, normed
        standardise=False, batchnorm=False,
        head_init="normal",  # :277-278
        optimizer="adam", lr=5e-4, lr_scale_batch=None,  # :120 Adam(lr); scripts --lr 0.0005
        schedule="constant", momentum=0.0, weight_decay=0.0,
        batch_size=1024,  # scripts --batch_size 1024
        epochs=50,  # eval_linear_{core50,ecoset,imagenet,places365}.sh --epochs 50
        epochs_by_protocol=(("labeled-s", 300), ("konkle-objects", 300)),  # eval_linear_{labeled_s,konkle}.sh
        reports_best=True,  # :140-144 best_acc = max(...), :158 prints it
        precision="fp32", by_method=(("mae", "eminorhan-mae"),),
        test_interpolation="bicubic",  # :65-66 Resize(256, interpolation=3), CenterCrop(224)
        deviations=(ONE_STEP_NOTE, _STREAM_NOTE)),
    LinearPreset(
        name="eminorhan-mae", reference="eminorhan/mae@a0d9041 eval_linear.py + eval_scripts/eval_linear_*.sh",
        views=RRC_FLIP,  # :93-98
        vit_features=(("", "cls"),),  # models_vit.py:783-785 global_pool False: norm(x)[:, 0]
        standardise=False,
        batchnorm=True,  # :169 BatchNorm1d(affine=False, eps=1e-6) before the head, train mode while training
        head_init="trunc_normal",  # :165 trunc_normal_(std=0.01); bias 0 (models_vit.py:223-228)
        optimizer="adam", lr=5e-4, lr_scale_batch=None,  # :186 Adam(head, lr); scripts --lr 0.0005
        schedule="constant", momentum=0.0, weight_decay=0.0,
        batch_size=1024, epochs=50, epochs_by_protocol=(("labeled-s", 300), ("konkle-objects", 300)),
        reports_best=True,  # :207-210 max_accuracy
        precision="fp16",  # engine_finetune.py:42, :97 torch.cuda.amp.autocast()
        test_interpolation="bicubic",  # eval_linear.py:86-87 Resize(256, interpolation=3), CenterCrop(224)
        deviations=(ONE_STEP_NOTE, _STREAM_NOTE, "on CUDA only the trunk runs under fp16 autocast; the reference's "
                    "autocast covers the BatchNorm and linear head too (headcam trains the head in fp32)")),
    LinearPreset(
        name="baby-vision", reference="eminorhan/baby-vision@f0340ac linear_decoding.py",
        views=None,  # :62-66 ToTensor + Normalize of images resized offline: no augmentation
        vit_features=None, standardise=False, batchnorm=False,
        head_init="torch",  # :130, :158, :167 a fresh nn.Linear
        optimizer="adam", lr=5e-4, lr_scale_batch=None,  # :31-32, :171 Adam(lr 5e-4, wd 0)
        schedule="constant", momentum=0.0, weight_decay=0.0,
        batch_size=256,  # :28
        epochs=100,  # :26
        reports_best=False,  # :181-189 validated once, after the last epoch
        precision="fp32",
        # no resize in linear_decoding.py; the repository's frame reader (read_saycam.py:52-69) resizes the short
        # side to 256 with cv2.INTER_CUBIC and crops 224: bicubic, the eval view's 0.875
        test_interpolation="bicubic",
        deviations=("trunk in eval mode: the reference trains with model.train() (:213), so the frozen "
                    "trunk's BatchNorm normalises with batch statistics and its running statistics adapt to the "
                    "probe's data; headcam keeps them (SPEC §7)",
                    "images resized (bicubic, antialiased) and centre-cropped by the eval view; the reference reads "
                    "images resized offline by a script outside its repository (the repository's frame reader, "
                    "read_saycam.py:52-69, resizes with cv2's INTER_CUBIC, not antialiased, to a short side of 256 "
                    "and crops 224, 16 px above the centre)")),
)}


def linear_preset(name: str) -> LinearPreset:
    """The preset called ``name``, or a one-line UsageError listing them."""
    if name not in LINEAR_PRESETS:
        raise UsageError(f"unknown linear recipe '{name}'; one of {', '.join(LINEAR_RECIPES)}")
    return LINEAR_PRESETS[name]


__all__ = ["LINEAR_PRESETS", "LINEAR_RECIPES", "LinearPreset", "ONE_STEP_NOTE", "RRC_FLIP", "linear_preset"]
