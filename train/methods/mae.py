"""MAE (He et al. 2021) under the loop's hooks: the model is :mod:`headcam.train.mae`."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from headcam.shards.dataset import Dataset
from headcam.train.mae import MAE
from headcam.train.methods.base import Method, MethodContext
from headcam.train.recon import write_reconstructions
from headcam.train.registry import MaeConfig


class MaskedAutoencoder(MAE, Method):
    """The encoder is the trunk (a ViT: the registry's view rule refuses a CNN); leaves ``recon.png``."""

    def __init__(self, trunk: nn.Module, feat_dim: int, cfg: MaeConfig, ctx: MethodContext):
        MAE.__init__(self, trunk, cfg.mask_ratio, cfg.norm_pix_loss, cfg.decoder_width, cfg.decoder_depth,
                     cfg.decoder_heads)

    def write_artifacts(self, out: Path, dataset: Dataset, size: int, seed: int) -> None:
        write_reconstructions(self, dataset, out / "recon.png", size, seed=seed)
