"""Long videos as several time-range units, so one recording keeps every worker busy.

With one unit per video, a single long recording ran on one worker however many there were, and
two files finished when the longer one did. :func:`plan` cuts a video into parts of about
``--unit-frames`` sampled frames, the cuts evenly spaced over the container's duration; each part
is staged by a worker of its own (:func:`headcam.ingest.stage.stage_video`), which seeks to the
keyframe a cut lands on and keeps only its own sampling targets
(:func:`headcam.ingest.decode.resolve_span`), so the parts together hold exactly the frames and
bytes of one unsplit decode. Phase 2 takes each video's records from :func:`video_records`.

- The plan depends only on the file, ``--fps`` and ``--unit-frames``, never on ``--workers``: a
  resumed run, another ``--part`` or a merge finds the same unit keys. A whole video keeps the key
  it always had (its video key); part j of n is ``<video key>-<j>of<n>``.
- Split: PyAV decoding of the container formats with an index that seeks exactly (MP4/MOV,
  Matroska/WebM, AVI). decord and NVDEC read whole files and other formats seek by searching, so
  their videos stay one unit each.
- The duration estimate only spaces the cuts: a wrong one (a decoder that misreports it) makes
  parts uneven or empty, never wrong; the last part runs to the end of the stream.
- A part that fails (a seek that lands elsewhere, a decode error, a crash), or parts whose targets
  do not meet: the video is staged again whole (:func:`restage_whole`), so a bad file gives exactly
  the frames and failure rows of an unsplit ingest.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import av

from headcam.ingest.decode import Span, probe_container

#: Sampled frames per part when ``--unit-frames`` is not given. A part costs two container opens, the
#: first frame's decode and a seek; on a 10-minute 640x480 H.264 video at 5 fps (bench/ingest.py, 30
#: parts, 1 worker) that was 15.71 CPU ms per frame against 15.58 unsplit (~1%), and parts this small
#: leave 2 workers at most one part (~20 s of video) apart at the end.
UNIT_FRAMES = 100

#: FFmpeg demuxers (``container.format.name``) whose seeks use an index and land on a keyframe.
SPLIT_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi"})

_PART = "of"


def unit_key(video: str, j: int, n: int) -> str:
    """The unit key of part ``j`` of ``n`` of a video (a whole video: its video key); dot-free."""
    return video if n == 1 else f"{video}-{j:04d}{_PART}{n:04d}"


def _parse(key: str) -> tuple[str, int, int]:
    """(video key, j, n) of a unit key."""
    video, sep, part = key.partition("-")
    if not sep:
        return key, 0, 1
    j, n = part.split(_PART)
    return video, int(j), int(n)


def plan(path: str, fps: float, unit_frames: int, decoder: str) -> tuple[list[Span | None], float]:
    """The parts of a video (``[None]``: one whole unit) and the sampled frames expected per part.

    A file this cannot open or measure stays whole: its worker then reports it as it always did.
    """
    try:
        with av.open(path) as c:
            stream = c.streams[probe_container(c).stream_index]
            tb = stream.time_base
            start = stream.start_time or 0
            if stream.duration:
                length = stream.duration
            elif c.duration and tb:
                length = int(c.duration / av.time_base / tb)
            else:
                return [None], 0.0
            splittable = decoder == "pyav" and c.format.name in SPLIT_FORMATS and tb is not None
    except Exception:  # noqa: BLE001 - any unreadable file: the worker's probe reports it
        return [None], 0.0
    frames = float(length * tb) * fps
    n = math.floor(frames / unit_frames) if splittable and unit_frames > 0 else 1
    if n < 2:
        return [None], frames
    cuts = [start + length * j // n for j in range(1, n)]
    return [Span(a, b) for a, b in zip([None, *cuts], [*cuts, None], strict=True)], frames / n


def _by_video(records: Iterable[dict[str, Any]]) -> dict[str, dict[int, dict[int, dict[str, Any]]]]:
    """Unit records as video key -> n parts -> j -> record."""
    out: dict[str, dict[int, dict[int, dict[str, Any]]]] = {}
    for rec in records:
        video, j, n = _parse(rec["key"])
        out.setdefault(video, {}).setdefault(n, {})[j] = rec
    return out


def _meet(parts: list[dict[str, Any]]) -> bool:
    """Whether staged parts cover every sampling target once: no failures, each starts where the one
    before stops, the first at target 0, the last open-ended, all on one time axis."""
    if any(r["failures"] or "targets" not in r for r in parts):
        return False
    targets = [r["targets"] for r in parts]
    return (targets[0][0] == 0 and targets[-1][1] is None and len({r["first_pts"] for r in parts}) == 1
            and all(a[1] == b[0] for a, b in zip(targets, targets[1:], strict=False)))


def video_records(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per video key, the unit records that make up the video, in time order: its whole-video record
    if it has one, else the parts of a split whose parts all meet (the fewest parts if several
    plans were staged; each gives the same frames). Videos with neither are left out."""
    out = {}
    for video, plans in _by_video(records).items():
        if 1 in plans:
            out[video] = [plans[1][0]]
            continue
        for n in sorted(plans):
            parts = [plans[n].get(j) for j in range(n)]
            if all(parts) and _meet(parts):
                out[video] = parts
                break
    return out


def restage_whole(records: Iterable[dict[str, Any]], videos: Iterable[str]) -> list[str]:
    """Videos (keys) whose staged parts cannot make them up (a part failed, or they do not meet)."""
    usable = video_records(records)
    return [v for v in videos if v not in usable]


def duration(parts: list[dict[str, Any]]) -> float:
    """A video's decoded span from its parts: the last part decodes to the end of the stream, and every
    frame before a part's keyframe comes earlier, so the largest span of any part is the video's."""
    return max(float(r["duration"]) for r in parts)
