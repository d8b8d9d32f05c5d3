"""Phase 1 of an image ingest: one task of a reader (a chunk of images, a Toybox clip) -> a staged unit.

Runs in a worker process (:mod:`headcam.ingest.engine`). Every image goes through the steps a
video frame takes (:func:`headcam.ingest.encode.encode_frame`): short side, optional centre
crop, JPEG, saliency. Images are never upscaled unless asked (``upscale``): the short side is
min(native, ``size``). The unit's ``.json`` holds per sample its manifest fields and the byte
range of its finished shard members (:class:`~headcam.shards.writer.SampleBlock`) in the
unit's ``.tar``, so phase 2 only copies bytes; a bad image is a failure row and the rest go on,
except in an atomic task (a clip), where any failure drops the whole task.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from headcam.ingest.encode import encode_frame, target_short_side
from headcam.ingest.failures import StageFailure, failure_row
from headcam.ingest.image_formats.base import Failure, Task
from headcam.ingest.saliency import saliency_fn
from headcam.ingest.staged import StagedTar, output_error, write_unit_index
from headcam.shards.writer import Sample, sample_block


@dataclass(frozen=True)
class Params:
    """Everything that decides the output bytes (saved in dataset.json; a re-run must match it)."""

    format: str
    size: int  # short side; 0 = native
    upscale: bool  # False: short side = min(native, size)
    crop: int  # centre crop side; 0 = none
    crop_shift_up: int
    saliency: str
    quality: int
    seed: int
    shard_size: int | None  # samples per shard, or
    shards: int | None  # shards per split, of near-equal size
    fps: float | None  # toybox only


def stage_task(task: Task, key: str, staging_dir: str, p: Params) -> dict[str, Any]:
    """Decode and encode one task into ``staging_dir/<key>.tar|json``; returns its journal record."""
    staging = Path(staging_dir)
    saliency = saliency_fn(p.saliency)
    samples: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    try:
        with StagedTar(staging / f"{key}.tar") as tar:
            for item in task.decode():
                if isinstance(item, Failure):
                    failures.append(asdict(item))
                    continue
                h, w = item.rgb.shape[:2]
                try:
                    jpg, sal, w, h = encode_frame(item.rgb, target_short_side(w, h, p.size, p.upscale), p.crop,
                                                  p.crop_shift_up, p.quality, saliency)
                except StageFailure as f:  # e.g. an image smaller than the crop: record it, go on
                    failures.append(failure_row(item.source, f.stage, f.exc))
                    continue
                meta = {"source": item.source, "frame_index": item.frame_index, "label": item.label,
                        "split": item.split, **item.extra}
                if not math.isnan(item.pts):  # a video frame (Toybox)
                    meta["pts"] = item.pts
                block = sample_block(Sample(key=item.key, jpg=jpg, label=item.label, meta=meta, saliency_png=sal))
                samples.append({"key": item.key, "split": item.split, "label": item.label, "source": item.source,
                                "frame_index": item.frame_index, "pts": meta.get("pts"), "extra": item.extra,
                                "w": w, "h": h, "has_saliency": sal is not None,
                                "block": [tar.add_block(block), len(block.data)], "members": block.members})
        if failures and task.atomic:
            samples = []
        if samples:
            write_unit_index(staging, key, {"samples": samples})
        else:
            (staging / f"{key}.tar").unlink(missing_ok=True)
    except OSError as e:  # reading inputs fails inside task.decode() as Failure rows: this is the output
        raise output_error(staging, e) from None
    return {"key": key, "path": task.inputs()[0], "n_samples": len(samples),
            "split": samples[0]["split"] if samples else None, "failures": failures}
