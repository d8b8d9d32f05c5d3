"""Phase 1 of a video ingest: one video -> a staging tar of encoded frames + a JSON index.

Runs in a worker process, one video per task. Frames stream straight from the decoder into
``STAGING/<video_key>.tar`` (members ``<i:06d>.jpg`` and ``<i:06d>.sal.png``, ``i`` = sampled
frame index), so a video is never held in memory; ``<video_key>.json`` lists per frame the pts,
decoded frame index, size and the byte ranges of its members, so phase 2 can read any frame
with one seek. Both files are written atomically: a killed worker leaves only temp files.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from headcam.ingest import decode as dec
from headcam.ingest.encode import CROP_SHIFT_UP, center_crop, encode_jpeg, resize_short_side, rotate_ccw
from headcam.ingest.saliency import SaliencyModel, encode_saliency_png, spectral_residual_saliency
from headcam.shards.atomic import atomic_open, atomic_write_bytes

_TAR_HEADER = 512  # ustar header size for the short member names used here


@dataclass(frozen=True)
class FrameParams:
    """Everything that decides the bytes of a staged frame."""

    fps: float = 5.0
    size: int = 256
    crop: int | None = None
    rotate: int = 0  # extra clockwise rotation in degrees, after the container's own
    quality: int = 90
    saliency: str = "spectral"  # "spectral" | "none" | path to a TorchScript model
    decoder: str = "pyav"


class OutputError(Exception):
    """Writing the output failed (disk full, quota, file-size limit, read-only): the run stops, since
    every other file would fail the same way; nothing is journaled, so re-running resumes."""


def output_error(where: str | Path, e: OSError) -> OutputError:
    return OutputError(f"cannot write to {where}: {e.strerror or e} (errno {e.errno}); fix that (e.g. free space) "
                       "and run the same command again to resume")


class _StageFailure(Exception):
    def __init__(self, stage: str, exc: BaseException):
        super().__init__(str(exc))
        self.stage, self.exc = stage, exc


_MODEL_CACHE: dict[str, SaliencyModel] = {}


def _saliency_fn(spec: str):
    if spec == "none":
        return None
    if spec == "spectral":
        return spectral_residual_saliency
    if spec not in _MODEL_CACHE:  # loaded once per worker process
        _MODEL_CACHE[spec] = SaliencyModel(spec)
    return _MODEL_CACHE[spec]


def process_frame(rgb: np.ndarray, p: FrameParams, saliency) -> tuple[bytes, bytes | None, int, int]:
    """Display-oriented RGB -> (JPEG, saliency PNG or None, width, height) per SPEC §1-2."""
    try:
        img = rotate_ccw(rgb, -p.rotate) if p.rotate else rgb
        img = resize_short_side(img, p.size)
        if p.crop:
            img = center_crop(img, p.crop, CROP_SHIFT_UP)
        jpg = encode_jpeg(img, p.quality)
    except ValueError as e:
        raise _StageFailure("encode", e) from e
    sal = None
    if saliency is not None:
        try:
            sal = encode_saliency_png(saliency(img))
        except Exception as e:  # a user's model can fail in any way; that frame's video is reported
            raise _StageFailure("saliency", e) from e
    return jpg, sal, img.shape[1], img.shape[0]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> list[int]:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = len(data), 0, 0o444
    offset = tar.offset + _TAR_HEADER
    tar.addfile(ti, io.BytesIO(data))
    return [offset, len(data)]


def _write_tar(path: str, info: dec.Probe, p: FrameParams, tar_path: Path, stats: dec.DecodeStats,
               container: av.container.InputContainer) -> list[dict[str, Any]]:
    saliency = _saliency_fn(p.saliency)
    frames: list[dict[str, Any]] = []
    with atomic_open(tar_path, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        try:
            for fr in dec.decode(path, info, p.fps, p.decoder, stats, short_side=p.size, container=container):
                jpg, sal, w, h = process_frame(fr.rgb, p, saliency)
                for _ in range(fr.repeats):  # a frame held across a timestamp gap answers several targets
                    i = len(frames)
                    rec = {"pts": fr.pts, "decoded": fr.decoded_index, "w": w, "h": h,
                           "jpg": _add(tar, f"{i:06d}.jpg", jpg),
                           "sal": _add(tar, f"{i:06d}.sal.png", sal) if sal is not None else None}
                    frames.append(rec)
        except dec.DecodeError as e:
            if not frames:
                raise _StageFailure("decode", e) from e
            stats.partial_error = str(e)  # keep the frames before the failure, report the rest
    return frames


def stage_video(path: str, key: str, staging_dir: str, params: FrameParams) -> dict[str, Any]:
    """Decode, sample, encode one video into the staging area; never raises for a bad file.

    Returns a record for the journal: ``{"ok": True, ...summary}`` or ``{"ok": False, "stage",
    "error_type", "message"}``. A decode error after some frames keeps those frames and adds a
    ``warning`` (the video is then also listed in failures.parquet).
    """
    staging = Path(staging_dir)
    base = {"path": path, "key": key}
    try:
        with contextlib.ExitStack() as stack:
            try:
                container = stack.enter_context(av.open(path))
                info = dec.probe_container(container)
            except Exception as e:  # NoVideoStream, or one of PyAV's many errors for unreadable containers
                raise _StageFailure("probe", e) from e
            stats = dec.DecodeStats()
            frames = _write_tar(path, info, params, staging / f"{key}.tar", stats, container)
        if not frames:
            raise _StageFailure("decode", dec.DecodeError("no frames could be decoded"))
    except OSError as e:  # the input's own read errors are _StageFailures (probe) or DecodeErrors
        raise output_error(staging, e) from None
    except _StageFailure as f:
        (staging / f"{key}.tar").unlink(missing_ok=True)
        return {**base, "ok": False, "stage": f.stage, "error_type": type(f.exc).__name__,
                "message": _one_line(str(f.exc))}
    summary = {**base, "ok": True, "n_frames": len(frames), "duration": stats.duration,
               "first_pts": stats.first_pts, "n_decoded": stats.n_decoded, "probe": asdict(info),
               "warning": _one_line(stats.partial_error) if stats.partial_error else None}
    try:
        # plain json + atomic write: importing the dataset module would pull pyarrow into every worker
        atomic_write_bytes(staging / f"{key}.json", json.dumps({**summary, "frames": frames}).encode())
    except OSError as e:
        raise output_error(staging, e) from None
    return summary


def _one_line(message: str, limit: int = 300) -> str:
    """Decoder messages can be multi-line C++ dumps; keep one readable line."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    text = " | ".join(lines) if lines else message
    return text if len(text) <= limit else text[: limit - 3] + "..."
