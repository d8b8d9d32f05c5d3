"""Pixel operations shared by every ingest path (video frames and image datasets).

One implementation of rotate / resize / crop / JPEG so that a frame from a head-camera video
and an image from CIFAR-10 or Toybox go through exactly the same steps (SPEC §1).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from headcam.ingest.failures import StageFailure
from headcam.ingest.saliency import encode_saliency_png

#: The SAYCam protocol shifts the centre crop this many pixels up (SPEC §1).
CROP_SHIFT_UP = 16


def rotate_ccw(rgb: np.ndarray, degrees: int) -> np.ndarray:
    """Rotate counter-clockwise by a multiple of 90 degrees (the container display-matrix convention)."""
    if degrees % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {degrees}")
    k = (degrees // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def resize_short_side(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize so the short side is ``size`` px, keeping the aspect ratio.

    Downscaling uses ``INTER_AREA`` (an area average, so no aliasing from fine texture);
    upscaling, rare here, uses bicubic because area interpolation degenerates to nearest.
    """
    h, w = rgb.shape[:2]
    if min(h, w) == size:
        return rgb
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_CUBIC
    return cv2.resize(rgb, scaled_size(w, h, size), interpolation=interp)


def scaled_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after scaling the short side to ``size``: the one rounding rule for every resizer."""
    scale = size / min(width, height)
    return max(size, round(width * scale)), max(size, round(height * scale))


def center_crop(rgb: np.ndarray, crop: int, shift_up: int = 0) -> np.ndarray:
    """A ``crop`` x ``crop`` window at the centre, moved ``shift_up`` px up (clamped to the image)."""
    h, w = rgb.shape[:2]
    if crop > h or crop > w:
        raise ValueError(f"crop {crop} is larger than the image ({w}x{h})")
    top = min(max((h - crop) // 2 - shift_up, 0), h - crop)
    left = (w - crop) // 2
    return rgb[top:top + crop, left:left + crop]


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """RGB uint8 -> baseline JPEG bytes with 4:2:0 chroma subsampling (what DALI and PIL decode fastest)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality), cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
              cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def target_short_side(width: int, height: int, size: int, upscale: bool) -> int:
    """The stored short side: ``size`` (0: native), or at most the native one unless ``upscale``."""
    native = min(width, height)
    if not size:
        return native
    return size if upscale else min(size, native)


def encode_frame(rgb: np.ndarray, size: int, crop: int, crop_shift_up: int, quality: int,
                 saliency: Callable[[np.ndarray], np.ndarray] | None,
                 rotate_cw: int = 0) -> tuple[bytes, bytes | None, int, int]:
    """Display-oriented RGB -> (JPEG, saliency PNG or None, width, height): the steps every video
    frame and every image takes (SPEC §1-2). ``size``: the short side; ``crop``: 0 for none.

    Raises :class:`StageFailure` (``encode`` or ``saliency``) for an input that cannot be stored.
    """
    try:
        img = rotate_ccw(rgb, -rotate_cw) if rotate_cw else rgb
        img = resize_short_side(img, size)
        if crop:
            img = center_crop(img, crop, crop_shift_up)
        jpg = encode_jpeg(img, quality)
    except ValueError as e:
        raise StageFailure("encode", e) from e
    sal = None
    if saliency is not None:
        try:
            sal = encode_saliency_png(saliency(img))
        except Exception as e:  # a user's model can fail in any way; that input is reported
            raise StageFailure("saliency", e) from e
    return jpg, sal, img.shape[1], img.shape[0]
