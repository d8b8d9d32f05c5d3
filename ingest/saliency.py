"""Per-frame saliency maps (SPEC §2): spectral residual by default, or a user's TorchScript model.

Stored maps are *densities*: non-negative, max-normalised to 255, small (long side 64 px),
single-channel 8-bit PNG. Pipelines turn them into fixation distributions p ∝ (m + ε)^(1/T).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

#: Long side of every stored saliency map, in pixels.
MAP_LONG_SIDE = 64
#: Gaussian smoothing of the spectral-residual map at 64 px (OpenCV's StaticSaliencySpectralResidual
#: uses sigma 3 at 64x64); scaled with ``long_side``.
SMOOTH_SIGMA_AT_64 = 3.0
#: Mirror padding of 1/PAD_FRACTION of each side before the DFT (see spectral_residual_saliency).
PAD_FRACTION = 4


def _small_grey(rgb: np.ndarray, long_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    # float64 on purpose: numpy's vectorised float32 log/exp differ from its scalar loop by an ulp,
    # and which elements take which loop depends on the array's memory alignment, so a float32 map
    # could round differently in a resumed run and break byte-identical shards.
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0


def _to_uint8_density(density: np.ndarray) -> np.ndarray:
    density = np.maximum(density, 0.0)
    peak = float(density.max())
    if not np.isfinite(peak) or peak <= 0:
        return np.full(density.shape, 255, np.uint8)  # flat frame: every location equally salient
    return np.round(255.0 * density / peak).astype(np.uint8)


def spectral_residual_saliency(rgb: np.ndarray, long_side: int = MAP_LONG_SIDE) -> np.ndarray:
    """Hou & Zhang (CVPR 2007) spectral residual saliency of an RGB (or grey) uint8 image.

    On the grey image downsampled to ``long_side``: log amplitude spectrum minus its 3x3 local mean
    is the "residual"; back-transformed with the original phase and squared it gives the saliency,
    then Gaussian smoothing. Returns a uint8 map (long side ``long_side``, max 255).
    """
    grey = _small_grey(rgb, long_side)
    if float(grey.max() - grey.min()) < 1.0 / 255:  # no structure: the residual would be numerical noise
        return np.full(grey.shape, 255, np.uint8)
    # The DFT treats the image as periodic, so the jump between opposite edges reads as salient
    # (on the shared media up to 42% of the mass sat in a 4 px frame). Mirror padding makes the
    # periodic image continuous; the map is cut back to the frame afterwards.
    h, w = grey.shape
    ph, pw = h // PAD_FRACTION, w // PAD_FRACTION
    grey = cv2.copyMakeBorder(grey, ph, ph, pw, pw, cv2.BORDER_REFLECT)
    # exp(residual + i*phase) = F * exp(residual) / |F|: no angle or complex exponential needed
    spectrum = cv2.dft(grey, flags=cv2.DFT_COMPLEX_OUTPUT)
    amplitude = cv2.magnitude(spectrum[..., 0], spectrum[..., 1]) + 1e-9
    log_amp = np.log(amplitude)
    residual = log_amp - cv2.blur(log_amp, (3, 3), borderType=cv2.BORDER_REPLICATE)
    spectrum *= (np.exp(residual) / amplitude)[..., None]
    back = cv2.idft(spectrum)  # unscaled: the map is max-normalised below
    sal = cv2.magnitude(back[..., 0], back[..., 1]) ** 2
    sigma = SMOOTH_SIGMA_AT_64 * long_side / MAP_LONG_SIDE
    sal = cv2.GaussianBlur(sal, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
    return _to_uint8_density(sal[ph:ph + h, pw:pw + w])


def encode_saliency_png(saliency: np.ndarray) -> bytes:
    """uint8 single-channel map -> PNG bytes (lossless, so the density survives exactly)."""
    if saliency.dtype != np.uint8 or saliency.ndim != 2:
        raise ValueError(f"saliency map must be a 2-D uint8 array, got {saliency.dtype} {saliency.shape}")
    ok, buf = cv2.imencode(".png", saliency)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


class SaliencyModel:
    """A user's saliency network as a TorchScript file (``--saliency PATH``); nothing is downloaded.

    Input: a 1x3xHxW float32 tensor in [0, 1] (RGB, the frame at ``input_long_side``). Output: one
    map per image (1x1xhxw, 1xhxw or hxw). With ``outputs="logits"`` (how saliency networks are
    usually trained) the stored density is exp(s - max s), which keeps the paper's meaning of the
    fixation temperature (SPEC §2); with ``outputs="density"`` the output is stored as is.
    """

    def __init__(self, path: str | Path, outputs: str = "logits", input_long_side: int = 256):
        import torch

        if outputs not in ("logits", "density"):
            raise ValueError(f"outputs must be 'logits' or 'density', got {outputs!r}")
        self.path = Path(path)
        self.outputs = outputs
        self.input_long_side = input_long_side
        self._torch = torch
        self.module = torch.jit.load(str(self.path), map_location="cpu").eval()

    def __call__(self, rgb: np.ndarray, long_side: int = MAP_LONG_SIDE) -> np.ndarray:
        torch = self._torch
        h, w = rgb.shape[:2]
        scale = self.input_long_side / max(h, w)
        small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1)[None].float() / 255.0
        with torch.inference_mode():
            out = self.module(x)
        s = out.detach().float().squeeze().cpu().numpy().astype(np.float64)
        if s.ndim != 2:
            raise ValueError(f"saliency model {self.path} returned shape {tuple(out.shape)}, expected one 2-D map")
        density = np.exp(s - s.max()) if self.outputs == "logits" else s
        oh, ow = (long_side, max(1, round(long_side * w / h))) if h >= w else (max(1, round(long_side * h / w)),
                                                                            long_side)
        return _to_uint8_density(cv2.resize(density, (ow, oh), interpolation=cv2.INTER_AREA))


_MODELS: dict[str, SaliencyModel] = {}


def saliency_fn(spec: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """``--saliency``: "spectral", "none" (None), or a TorchScript file, loaded once per worker process."""
    if spec == "none":
        return None
    if spec == "spectral":
        return spectral_residual_saliency
    if spec not in _MODELS:
        _MODELS[spec] = SaliencyModel(spec)
    return _MODELS[spec]
