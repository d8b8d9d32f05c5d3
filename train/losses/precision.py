"""Loss arithmetic precision: reductions in float32 under bf16/fp16 autocast, float64 kept for reference tests."""

from __future__ import annotations

import torch


def full(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is half precision, else unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
