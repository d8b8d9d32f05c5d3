"""Cross-replica BatchNorm: statistics over the global batch, as DINO (CNN trunks), BYOL, SimCLR and VICReg train.

On CUDA this is PyTorch's :class:`torch.nn.SyncBatchNorm`. PyTorch's op refuses CPU tensors, and a
multi-process CPU run (gloo) should mean the same thing as a GPU one, so on CPU the BatchNorm
layers become :class:`GlobalBatchNorm`: per-channel sums, sums of squares and counts all-reduced
with autograd (``torch.distributed.nn.functional.all_reduce``, whose backward all-reduces the
gradients), then the ordinary BatchNorm arithmetic on the global mean and (biased) variance, and
the running statistics updated with the unbiased global variance, as ``nn.BatchNorm`` does.
In eval mode, or on one process, both are plain BatchNorm.
"""

from __future__ import annotations

import torch
import torch.distributed as tdist
from torch import nn


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm{1,2,3}d over the batch of every rank (CPU; see the module docstring)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        local = torch.cat([x.sum(dims), (x * x).sum(dims), x.new_full((1,), x.numel() / c)])
        total = all_reduce(local)
        n = total[-1]
        mean = total[:c] / n
        var = total[c:2 * c] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1), m)
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def convert(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm layer of ``model`` synchronised across ranks (same parameters and buffers, so the
    optimiser and the checkpoint keys are unchanged)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _to_global(model)


def _to_global(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out
    for name, child in module.named_children():
        module.add_module(name, _to_global(child))
    return module


__all__ = ["GlobalBatchNorm", "convert", "has_batch_norm"]
