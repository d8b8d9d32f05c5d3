"""Gaussian blurs with a different kernel per image, batched.

Two kernels for the same maths (separable taps, torch-style reflect padding of k//2):

- :func:`blur_with_taps`: one grouped convolution; each image's taps are zero-padded to the
  batch's widest kernel. With reflect padding of half that width the result equals blurring each
  image with its own kernel and its own k//2 padding (the extra taps are zero).
- :class:`SpectralBlur`: the reflect-padded batch is Fourier-transformed once, then every blur
  (foveation's rings) is a product with the kernels' spectra and one inverse FFT. The padding is
  at least every kernel's half width, so the circular convolution never wraps into the output
  window: the result equals the direct convolution up to rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from headcam.pipelines import maths


def blur_with_taps(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Blur B×C×H×W ``x`` with per-image 1-D ``taps`` (B×k, k odd), separably, reflect padding."""
    b, c, h, w = x.shape
    k = taps.shape[1]
    if k == 1:
        return x
    pad = k // 2
    weight = taps.to(x).repeat_interleave(c, dim=0)  # (B*C)×k
    flat = x.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), weight.view(b * c, 1, 1, k), groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="reflect"), weight.view(b * c, 1, k, 1), groups=b * c)
    return flat.view(b, c, h, w)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Blur each image with its own sigma (B,) and odd kernel size (B,)."""
    width = int(k.max().item()) if k.numel() else 1
    return blur_with_taps(x, maths.gaussian_taps(sigma.to(x.device), k.to(x.device), width, x.dtype))


def blur_kernel_size(side: int, fraction: float) -> int:
    """SimCLR's kernel: ``fraction`` of the side, made odd."""
    k = max(1, int(side * fraction))
    return k if k % 2 else k + 1


def fft_length(n: int) -> int:
    """The smallest 2^a·3^b·5^c >= n."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


class SpectralBlur:
    """Many per-image Gaussian blurs of one batch from a single forward FFT.

    ``pad`` must be at least the largest k//2 that :meth:`blur` will see (and less than H and W,
    as torch's reflect padding requires).
    """

    def __init__(self, x: torch.Tensor, pad: int):
        _, _, self.h, self.w = x.shape
        self.pad = min(pad, self.h - 1, self.w - 1)
        padded = F.pad(x, (self.pad,) * 4, mode="reflect") if self.pad else x
        # Zeros beyond the reflect padding are never read by an output pixel, so the transform may
        # use the next 5-smooth length, where FFTs are fastest.
        self.lh, self.lw = (fft_length(n) for n in padded.shape[-2:])
        self.spectrum = torch.fft.rfft2(padded, s=(self.lh, self.lw))

    def _kernel_spectrum(self, taps: torch.Tensor, length: int, real: bool) -> torch.Tensor:
        k = taps.shape[1]
        line = torch.zeros((taps.shape[0], length), dtype=taps.dtype, device=taps.device)
        shifts = torch.arange(k, device=taps.device) - k // 2
        line[:, shifts % length] = taps
        return torch.fft.rfft(line) if real else torch.fft.fft(line)

    def blur(self, index: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
        """Images ``index`` of the batch, each blurred with its own taps (len(index)×k, k odd, k//2 <= pad)."""
        if taps.shape[1] // 2 > self.pad:
            raise ValueError(f"kernel of {taps.shape[1]} taps needs padding {taps.shape[1] // 2} > {self.pad}")
        kh = self._kernel_spectrum(taps, self.lh, real=False)
        kw = self._kernel_spectrum(taps, self.lw, real=True)
        prod = self.spectrum[index] * (kh[:, None, :, None] * kw[:, None, None, :])
        out = torch.fft.irfft2(prod, s=(self.lh, self.lw))
        return out[..., self.pad:self.pad + self.h, self.pad:self.pad + self.w]
