"""Phase 1 of a video ingest: a video, or a time range of a long one -> a staged unit (:mod:`headcam.ingest.engine`).

Runs in a worker process, one unit per task. Frames stream straight from the decoder into
``STAGING/<unit key>.tar`` (members ``<i:06d>.jpg`` and ``<i:06d>.sal.png``, ``i`` = sampled
frame index in the unit), so a video is never held in memory; ``<unit key>.json`` lists per frame the pts,
size and the byte ranges of its members, so phase 2 can read any frame
with one seek. Both files are written atomically: a killed worker leaves only temp files.
A part of a split video (:mod:`headcam.ingest.split`) also records its sampling targets, so
phase 2 can check that the parts meet exactly.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av

from headcam.ingest import decode as dec
from headcam.ingest.encode import CROP_SHIFT_UP, encode_frame
from headcam.ingest.failures import StageFailure, failure_row, one_line
from headcam.ingest.prefetch import prefetched
from headcam.ingest.saliency import saliency_fn
from headcam.ingest.staged import StagedTar, output_error, write_unit_index


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


@dataclass(frozen=True)
class VideoUnit:
    """What a worker stages: a whole video (``span`` None) or one time range of it."""

    path: str
    span: dec.Span | None = None


def _stage_frames(path: str, info: dec.Probe, p: FrameParams, tar_path: Path, stats: dec.DecodeStats,
                  container: av.container.InputContainer, targets: dec.Targets | None) -> list[dict[str, Any]]:
    saliency = saliency_fn(p.saliency)
    frames: list[dict[str, Any]] = []
    with StagedTar(tar_path) as tar:
        try:
            decoded = dec.decode(path, info, p.fps, p.decoder, stats, short_side=p.size, container=container,
                                 targets=targets)
            for fr in prefetched(decoded):  # decoding overlaps the encoding of earlier frames
                jpg, sal, w, h = encode_frame(fr.rgb, p.size, p.crop or 0, CROP_SHIFT_UP, p.quality, saliency,
                                              rotate_cw=p.rotate)
                for _ in range(fr.repeats):  # a frame held across a timestamp gap answers several targets
                    i = len(frames)
                    frames.append({"pts": fr.pts, "w": w, "h": h,
                                   "jpg": tar.add(f"{i:06d}.jpg", jpg),
                                   "sal": tar.add(f"{i:06d}.sal.png", sal) if sal is not None else None})
        except dec.SplitError as e:
            raise StageFailure("decode", e) from e
        except dec.DecodeError as e:
            if not frames:
                raise StageFailure("decode", e) from e
            stats.partial_error = str(e)  # keep the frames before the failure, report the rest
    return frames


def stage_video(unit: VideoUnit, key: str, staging_dir: str, params: FrameParams) -> dict[str, Any]:
    """Decode, sample, encode one video or part of one into the staging area; never raises for a bad file.

    Returns the unit's journal record. A decode error after some frames keeps those frames and
    adds a ``PartialDecode`` failure row (the video is then also listed in failures.parquet). A part
    may hold no frames (a range between two cuts that land on one keyframe); any failure of a part
    has the video staged whole instead (:mod:`headcam.ingest.split`), so its rows never reach the output.
    """
    staging = Path(staging_dir)
    path = unit.path
    base = {"path": path, "key": key}
    try:
        with contextlib.ExitStack() as stack:
            try:
                container = stack.enter_context(av.open(path))
                info = dec.probe_container(container)
            except Exception as e:  # NoVideoStream, or one of PyAV's many errors for unreadable containers
                raise StageFailure("probe", e) from e
            try:
                targets = dec.resolve_span(path, info, params.fps, unit.span) if unit.span else None
            except dec.SplitError as e:
                raise StageFailure("decode", e) from e
            stats = dec.DecodeStats()
            frames = _stage_frames(path, info, params, staging / f"{key}.tar", stats, container, targets)
        if not frames and targets is None:
            raise StageFailure("decode", dec.DecodeError("no frames could be decoded"))
    except OSError as e:  # the input's own read errors are StageFailures (probe) or DecodeErrors
        raise output_error(staging, e) from None
    except StageFailure as f:
        (staging / f"{key}.tar").unlink(missing_ok=True)
        return {**base, "n_samples": 0, "failures": [failure_row(path, f.stage, f.exc)]}
    failures = []
    if stats.partial_error:
        failures.append({"path": path, "stage": "decode", "error_type": "PartialDecode",
                         "message": one_line(stats.partial_error) + " (earlier frames kept)"})
    summary = {**base, "n_samples": len(frames), "failures": failures, "duration": stats.duration,
               "first_pts": stats.first_pts, "n_decoded": stats.n_decoded, "probe": asdict(info)}
    if targets is not None:
        summary["targets"] = [targets.first_k, targets.stop_k]
    try:
        write_unit_index(staging, key, {**summary, "frames": frames})
    except OSError as e:
        raise output_error(staging, e) from None
    return summary
