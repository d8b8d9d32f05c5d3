"""The one place a training method is named.

Each :class:`MethodEntry` says everything the rest of headcam needs to know about a method: its
class (imported only when a run builds it, so ``headcam-train --help`` and config errors stay
fast), its config section (a dataclass: ``TrainConfig`` grows one field per section, so
``vicreg.sim_weight=25`` works as soon as the entry exists), its default view recipe, its view
rule (views per image, local crops, temporal pairs, architectures) and what its checkpoint
stores. ``TrainConfig``'s method list, config validation, ``--help``, the checkpoint code and the
tests' method list all read this table; adding a method is a loss file, a method module, a
section and an entry here, and a YAML in ``configs/``.

Nothing here imports torch.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any

from headcam.console import UsageError

# ----------------------------------------------------------------------------- config sections


@dataclass
class MocoConfig:
    dim: int = 128  # output of the projection head
    queue: int = 65536  # K; a multiple of the global batch (batch_size x ranks)
    m: float = 0.999  # momentum of the key encoder
    T: float = 0.2  # temperature
    mlp: bool = True  # MoCo v2 head d -> d -> dim (False: MoCo v1 linear head)

    def check(self) -> None:
        if not 0 <= self.m < 1 or self.T <= 0 or self.queue <= 0:
            raise UsageError(f"moco.m must be in [0, 1), moco.T > 0 and moco.queue > 0 (got {self.m}, {self.T}, "
                             f"{self.queue})")


@dataclass
class SimclrConfig:
    T: float = 0.1  # temperature (STL-10 recipe: 0.07)
    proj_hidden: int = 0  # hidden width of the projection MLP; 0 = feature dimension
    proj_dim: int = 128  # output of the projection MLP

    def check(self) -> None:
        if self.T <= 0:
            raise UsageError(f"simclr.T must be > 0, got {self.T}")


@dataclass
class ByolConfig:
    proj_hidden: int = 4096  # projector and predictor: Linear(hidden) -> BN -> ReLU -> Linear(proj_dim)
    proj_dim: int = 256
    pred_hidden: int = 4096
    momentum: float = 0.996  # target EMA τ_base at step 0, to 1 by a cosine (0.99 for runs of <= 300 epochs)

    def check(self) -> None:
        if not 0 <= self.momentum <= 1:
            raise UsageError(f"byol.momentum must be in [0, 1], got {self.momentum}")


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
    # The cosine has momentum_schedule_steps entries (0 = the run's steps) and step k reads entry
    # k // momentum_stride. SAYCam (eminorhan/dino train_dino.py): cosine_scheduler(0.9995, 1, 100, 1000) read at
    # GLOBAL_ITER // 10, i.e. 100000 entries and stride 10: the teacher stays near 0.9995 for the whole run.
    momentum_schedule_steps: int = 0
    momentum_stride: int = 1
    center_momentum: float = 0.9
    freeze_last_layer_steps: int = 0  # the last layer's gradient dropped for this many steps (original: 1 epoch)

    def check(self) -> None:
        if self.student_temp <= 0 or self.teacher_temp <= 0 or self.warmup_teacher_temp <= 0:
            raise UsageError("dino.student_temp, dino.teacher_temp and dino.warmup_teacher_temp must be > 0")
        if not 0 <= self.momentum <= 1:
            raise UsageError(f"dino.momentum must be in [0, 1], got {self.momentum}")
        if self.momentum_schedule_steps < 0 or self.momentum_stride < 1:
            raise UsageError("dino.momentum_schedule_steps must be >= 0 and dino.momentum_stride >= 1")


@dataclass
class MaeConfig:
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True  # per-patch normalised pixel targets (SAYCam runs: false)
    decoder_width: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16

    def check(self) -> None:
        if not 0 < self.mask_ratio < 1:
            raise UsageError(f"mae.mask_ratio must be in (0, 1), got {self.mask_ratio}")


@dataclass
class MaeStConfig:
    """Spatiotemporal MAE (facebookresearch/mae_st ``main_pretrain.py`` + PRETRAIN.md; the SAYCam values are in
    ``configs/mae_st_say_vith14.yaml``). Frames per clip and their spacing are the run's ``clip_frames`` and
    ``clip_stride``; the tubelet depth is the trunk's (``t_patch_size`` 2)."""

    mask_ratio: float = 0.9  # --mask_ratio 0.9 (PRETRAIN.md and the SAYCam script)
    norm_pix_loss: bool = True  # PRETRAIN.md's --norm_pix_loss (SAYCam: false, pixel targets)
    decoder_width: int = 512  # --decoder_embed_dim
    decoder_depth: int = 4  # --decoder_depth 4 (PRETRAIN.md and SAYCam; the argparse default is 8)
    decoder_heads: int = 16  # --decoder_num_heads
    pred_t_dim: int = 0  # target frames the decoder predicts (--pred_t_dim): 0 = every frame of the clip (SAYCam
    # 16 of 16); PRETRAIN.md's Kinetics recipe predicts 8 of 16 (one frame per tubelet)

    def check(self) -> None:
        if not 0 < self.mask_ratio < 1:
            raise UsageError(f"mae_st.mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.pred_t_dim < 0:
            raise UsageError(f"mae_st.pred_t_dim must be >= 0 (0 = every frame), got {self.pred_t_dim}")
        if min(self.decoder_width, self.decoder_depth, self.decoder_heads) < 1 or \
                self.decoder_width % self.decoder_heads:
            raise UsageError(f"mae_st.decoder_width must be a positive multiple of mae_st.decoder_heads (got "
                             f"{self.decoder_width}, {self.decoder_heads}) and decoder_depth >= 1")


@dataclass
class VicregConfig:
    # facebookresearch/vicreg main_vicreg.py: --mlp 8192-8192-8192, --sim-coeff 25, --std-coeff 25, --cov-coeff 1
    expander: tuple[int, ...] = (8192, 8192, 8192)  # widths: Linear -> BN -> ReLU per hidden layer, last bias-free
    sim_weight: float = 25.0  # λ, invariance (MSE between the two embeddings)
    var_weight: float = 25.0  # μ, variance hinge at std 1 (ε = 1e-4)
    cov_weight: float = 1.0  # ν, squared off-diagonal covariance / d

    def check(self) -> None:
        if not self.expander or min(self.expander) < 1:
            raise UsageError(f"vicreg.expander must list positive widths, got {list(self.expander)}")
        if min(self.sim_weight, self.var_weight, self.cov_weight) < 0:
            raise UsageError("vicreg.sim_weight, var_weight and cov_weight must be >= 0")


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class ViewRule:
    """Which views a method takes per image: ``views`` global crops by default (``n_views=0``), any
    count in [``min_views``, ``max_views``] (None: no upper bound) when set."""

    views: int = 2
    min_views: int = 2
    max_views: int | None = 2
    local_crops: bool = False  # augment.local.n > 0 allowed (multi-crop)
    temporal: bool = False  # views[1] is another frame of views[0]'s clip (the loader's temporal pair)
    vit_only: bool = False  # the method needs a ViT trunk (patches)
    whole_patches: bool = False  # view sides must be whole patches (MAE's patchify); else the patch conv floors
    clip: bool = False  # every sample is a clip of clip_frames frames (B, T, C, H, W); needs a video ViT trunk


@dataclass(frozen=True)
class MethodEntry:
    name: str
    summary: str  # one line for --help
    impl: str  # "module:Class"; the class takes (trunk, feat_dim, section config or None, MethodContext)
    recipe: str  # the published view recipe, used when recipe= is empty
    views: ViewRule
    section: str | None = None  # the TrainConfig key of its config section
    config: type | None = None  # that section's dataclass (with a ``check()`` for its own values)
    needs_labels: bool = False  # every sample of the split must carry a class label
    trunk: str = "the trunk"  # which network the checkpoint's ``backbone`` holds
    head: bool = False  # the checkpoint's ``head`` holds the method's ``classifier``
    sync_bn: bool = False  # the reference computes BatchNorm statistics over all GPUs (sync_bn=auto follows it)

    def load(self) -> type:
        """The method class (imports torch and the method's module)."""
        module, cls = self.impl.split(":")
        return getattr(importlib.import_module(module), cls)


_M = "headcam.train.methods."
_ONE = ViewRule(views=1, min_views=1, max_views=1)
_PAIR = ViewRule()

ENTRIES = (
    MethodEntry("tc", "temporal classification: which segment of the stream a frame is from (Orhan et al. 2020)",
                _M + "tc:TemporalClassification", "babyvision_tc", _ONE, needs_labels=True,
                trunk="the classifier's trunk", head=True),
    MethodEntry("moco", "MoCo v2: query vs momentum-encoded key and a queue of negatives (Chen et al. 2020)",
                _M + "moco:MoCo", "mocov2", _PAIR, "moco", MocoConfig, trunk="the query encoder"),
    MethodEntry("moco_temporal", "MoCo v2 whose key is another frame of the query's clip (within ±temporal_window)",
                _M + "moco:MoCo", "mocov2", ViewRule(temporal=True), "moco", MocoConfig, trunk="the query encoder"),
    MethodEntry("simclr", "SimCLR: NT-Xent over all views, negatives gathered across ranks (Chen et al. 2020)",
                _M + "simclr:SimCLR", "simclr", ViewRule(max_views=None, local_crops=True), "simclr", SimclrConfig,
                sync_bn=True),
    MethodEntry("byol", "BYOL: online predictor regresses an EMA target's projection (Grill et al. 2020)",
                _M + "byol:BYOL", "byol", _PAIR, "byol", ByolConfig, trunk="the online encoder", sync_bn=True),
    MethodEntry("dino", "DINO: student matches an EMA teacher's centred, sharpened outputs (Caron et al. 2021)",
                _M + "dino:DINO", "dino", ViewRule(max_views=None, local_crops=True), "dino", DinoConfig,
                trunk="the teacher's trunk", sync_bn=True),
    MethodEntry("mae", "MAE: reconstruct the pixels of masked patches (He et al. 2021); ViT only",
                _M + "mae:MaskedAutoencoder", "mae", ViewRule(views=1, min_views=1, max_views=1, vit_only=True,
                                                                    whole_patches=True),
                "mae", MaeConfig, trunk="the encoder"),
    MethodEntry("mae_st", "spatiotemporal MAE: reconstruct masked tubelets of clips (Feichtenhofer et al. 2022); "
                "video ViT only", _M + "mae_st:MaskedAutoencoderST", "mae_st",
                ViewRule(views=1, min_views=1, max_views=1, whole_patches=True, clip=True),
                "mae_st", MaeStConfig, trunk="the encoder"),
    MethodEntry("vicreg", "VICReg: invariance + variance + covariance regularisation (Bardes et al. 2022)",
                _M + "vicreg:VICReg", "byol", _PAIR, "vicreg", VicregConfig, sync_bn=True),
)
REGISTRY: dict[str, MethodEntry] = {e.name: e for e in ENTRIES}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def entry(name: str) -> MethodEntry:
    """The entry of ``name``; an unknown name is a one-line UsageError with the near matches, never a fallback."""
    if name in REGISTRY:
        return REGISTRY[name]
    close = difflib.get_close_matches(name, REGISTRY, n=2)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    raise UsageError(f"method='{name}' is not one of: {', '.join(REGISTRY)}{hint}")


def sections() -> dict[str, type]:
    """Config section name -> its dataclass, in table order (a section shared by two methods appears once)."""
    out: dict[str, type] = {}
    for e in ENTRIES:
        if e.section is not None and out.setdefault(e.section, e.config) is not e.config:
            raise TypeError(f"config section '{e.section}' is declared with two different dataclasses")
    return out


def help_table() -> str:
    """One line per method for ``headcam-train --help``."""
    width = max(map(len, REGISTRY))
    return "\n".join(f"  {e.name:<{width}}  {e.summary} [recipe {e.recipe}]" for e in ENTRIES)


def section_of(cfg: Any, name: str) -> Any:
    """The config section of method ``name`` in a TrainConfig (None for a method without one)."""
    e = entry(name)
    return getattr(cfg, e.section) if e.section else None
