"""Decoding one video into display-oriented frames sampled by presentation timestamp (SPEC §1).

Stream rule: when a file has several video streams, the one with the most pixels (w*h) is used,
ties going to the lowest stream index; the choice is recorded per source in ``dataset.json``.

Timestamps are seconds relative to the first decoded frame of that stream, so a file whose
first pts is not zero still starts at 0. Sampling keeps, for k = 0, 1, 2, ..., the first decoded
frame with pts >= k/fps. A frame that is the answer for several targets (a gap in a
variable-frame-rate file, e.g. an AVI with "repeat previous frame" entries) is delivered once
per target, so a video always gives about duration x fps samples and the segment axis stays
uniform (SPEC §1: one 288 s class = 1440 frames at 5 fps). Frames come out with the container's rotation applied
(PyAV: ``frame.rotation``, counter-clockwise degrees from the display matrix; decord applies
it itself).

A long video can be staged as several time-range units (:mod:`headcam.ingest.split`): a
:class:`Span` decodes from the keyframe a seek lands on and keeps only its own sampling targets,
so the parts together give exactly the frames of one unsplit decode (:func:`resolve_span`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from headcam.ingest.encode import rotate_ccw, scaled_size
from headcam.ingest.pool import cpu_share

DECODERS = ("pyav", "decord", "nvdec")
#: Tolerance in units of the sampling period: timestamps arrive as floats (decord: float32), so a
#: frame meant to sit exactly on k/fps may read a hair early.
_EPS_PERIODS = 1e-3


class NoVideoStream(Exception):
    """The file opened but holds no video stream (e.g. an audio-only file)."""


class SplitError(Exception):
    """A part of a split video cannot be placed exactly (no index, a seek that lands on no keyframe,
    frames without timestamps): the video is staged whole instead."""


class DecodeError(Exception):
    """Decoding failed; ``partial`` tells whether frames before the failure were delivered."""


@dataclass
class Probe:
    stream_index: int
    n_video_streams: int
    codec: str
    width: int  # coded size, before rotation
    height: int
    average_rate: float | None


@dataclass
class Frame:
    pts: float  # seconds since the stream's first decoded frame
    rgb: np.ndarray  # HxWx3 uint8, rotation applied
    repeats: int = 1  # sampling targets this frame answers (>1 only across a timestamp gap)


@dataclass
class DecodeStats:
    """Filled while iterating; read after the iterator is exhausted."""

    first_pts: float | None = None  # absolute pts of the first decoded frame, seconds
    last_pts: float | None = None  # relative pts of the last decoded frame
    n_decoded: int = 0
    frame_duration: float | None = None
    partial_error: str | None = None  # set when decoding stopped early but some frames were kept

    @property
    def duration(self) -> float:
        """Decoded span: last pts - first pts + one frame (what the stream axis uses)."""
        if self.last_pts is None:
            return 0.0
        return self.last_pts + (self.frame_duration or 0.0)


def target_index(t: float, fps: float) -> int:
    """The last sampling target k (k/fps <= t) a frame at ``t`` seconds reaches."""
    return int(np.floor(t * fps + _EPS_PERIODS))


class TimestampSampler:
    """For k = 0, 1, 2, ...: the first frame with pts >= k/fps (never by frame index).

    Equivalently, target k is answered by the first decoded frame whose :func:`target_index` is
    >= k. A part of a split video answers only the targets in [``first_k``, ``stop_k``): given every
    frame from the keyframe it starts at, it picks what one pass over the whole video picks there.
    """

    def __init__(self, fps: float, first_k: int = 0, stop_k: int | None = None):
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = fps
        self.next_k = first_k
        self.stop_k = stop_k

    def take(self, t: float) -> int:
        """How many targets the frame at ``t`` answers (0: skip it); frames must come in pts order."""
        k = target_index(t, self.fps)
        if self.stop_k is not None:
            k = min(k, self.stop_k - 1)
        if k < self.next_k:
            return 0
        n = k - self.next_k + 1
        self.next_k = k + 1
        return n

    @property
    def done(self) -> bool:
        """Every target of a bounded range answered: later frames cannot change the output."""
        return self.stop_k is not None and self.next_k >= self.stop_k


def choose_stream(streams: list[tuple[int, int, int]]) -> int:
    """(index, width, height) of each video stream -> the chosen index (most pixels, then lowest index)."""
    if not streams:
        raise NoVideoStream("no video stream")
    return min(streams, key=lambda s: (-(s[1] * s[2]), s[0]))[0]


def probe_container(container: av.container.InputContainer) -> Probe:
    video = list(container.streams.video)
    index = choose_stream([(s.index, s.codec_context.width, s.codec_context.height) for s in video])
    s = container.streams[index]
    rate = float(s.average_rate) if s.average_rate else None
    return Probe(stream_index=index, n_video_streams=len(video), codec=s.codec_context.name,
                 width=s.codec_context.width, height=s.codec_context.height, average_rate=rate)


def probe(path: str) -> Probe:
    with av.open(path) as container:
        return probe_container(container)


def frame_duration(rate: float | None) -> float | None:
    """Seconds per frame at the stream's average rate (None: unknown)."""
    return 1.0 / rate if rate and rate > 0 else None


@dataclass(frozen=True)
class Span:
    """A time range of a video staged as a unit of its own: its sampling targets run from the keyframe
    that a seek to ``start`` lands on up to the one a seek to ``stop`` lands on (offsets in the
    stream's time base; None: the video's first frame, its end). Neighbouring parts share a cut."""

    start: int | None
    stop: int | None


@dataclass(frozen=True)
class Targets:
    """A :class:`Span` made exact (:func:`resolve_span`): what its decode needs to pick the frames a
    whole-video decode picks there."""

    first_pts: float  # absolute time of the video's first decoded frame: t = 0 of the sampling rule
    seek: int | None  # the span's start: where to seek (stream time base); None: decode from the first frame
    start_pts: int | None  # the keyframe that seek lands on
    first_k: int  # first sampling target of the part
    stop_k: int | None  # one past its last target; None: to the end


def _seconds(pts: int, time_base) -> float:
    """A pts in seconds, computed as PyAV computes ``frame.time`` (so equal pts give equal floats)."""
    return float(pts) * time_base.numerator / time_base.denominator


def _keyframe_at(container: av.container.InputContainer, stream: av.VideoStream, offset: int) -> int:
    """The pts of the keyframe a backward seek to ``offset`` lands on (the index, no decoding)."""
    container.seek(offset, backward=True, any_frame=False, stream=stream)
    packet = next((p for p in container.demux(stream) if p.size), None)
    if packet is None or packet.pts is None or not packet.is_keyframe:
        raise SplitError(f"a seek to {offset} lands on no keyframe with a timestamp")
    return packet.pts


def resolve_span(path: str, info: Probe, fps: float, span: Span) -> Targets:
    """The exact targets of ``span``, from the video's first frame and the keyframes its cuts land on.

    A cut that lands on keyframe P becomes target k(P) + 1, k(P) = :func:`target_index` of P: every
    frame decoded before P comes before it in time, so it reaches at most k(P), and the first frame
    reaching any later target is decoded from P on. Both parts sharing a cut compute it the same way.
    """
    try:
        with av.open(path) as c:
            stream = c.streams[info.stream_index]
            time_base = stream.time_base
            first = next(c.decode(stream), None)
            if first is None or first.time is None:
                raise SplitError("the first frame has no timestamp")
            first_pts = first.time
            start = _keyframe_at(c, stream, span.start) if span.start is not None else None
            stop = _keyframe_at(c, stream, span.stop) if span.stop is not None else None
    except av.error.FFmpegError as e:  # some are OSErrors too: not the output's fault here
        raise SplitError(f"cannot place the part: {e}") from e

    def cut(pts: int) -> int:
        return max(0, target_index(_seconds(pts, time_base) - first_pts, fps) + 1)

    first_k = cut(start) if start is not None else 0
    stop_k = cut(stop) if stop is not None else None
    if stop_k is not None and stop_k < first_k:
        raise SplitError(f"cuts out of order: targets {first_k}..{stop_k}")
    return Targets(first_pts, span.start, start, first_k, stop_k)


class _Scaler:
    """RGB of decoded frames; with ``short_side``, scaled by libswscale (area filter) first.

    Scaling in the decoder's own pixel format and converting the small result to RGB is ~1.5x
    faster than scaling and converting in one pass, and ~3x faster than converting at full size
    and resizing with OpenCV (720p). ``frame.reformat`` builds a fresh SwsContext (filter tables
    included) on every call, which cost more than the scaling itself: one reformatter per step is
    kept for the whole stream (same pixels, ~1.2 ms less per sample at 720p), single-threaded since
    workers already run one video per core.
    """

    def __init__(self, short_side: int | None):
        self.short_side = short_side
        self._scale, self._convert = VideoReformatter(), VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        if self.short_side is not None and min(frame.width, frame.height) != self.short_side:
            w, h = scaled_size(frame.width, frame.height, self.short_side)
            frame = self._scale.reformat(frame, width=w, height=h, interpolation="AREA", threads=1)
        return self._convert.reformat(frame, format="rgb24", threads=1).to_ndarray()


def _share_threads(stream: av.VideoStream) -> None:
    """Decoder threads: this process's share of the cores (``pool.cpu_share``). Frame + slice
    threads when it has more than one core; one thread when the pool already gives every core a
    worker, since threads there only add synchronisation (~10% more CPU per frame, measured on
    640x480 H.264). Threading never changes the decoded pixels."""
    share = cpu_share()
    if share > 1:
        stream.thread_type = "AUTO"
    stream.codec_context.thread_count = share


def decode_pyav(path: str, info: Probe, fps: float, stats: DecodeStats, short_side: int | None = None,
                container: av.container.InputContainer | None = None,
                targets: Targets | None = None) -> Iterator[Frame]:
    """``container``: the one already opened to probe (opening costs ~10 ms, a lot for short clips).
    ``targets``: only this part of the video (:func:`resolve_span`), decoded from its keyframe."""
    sampler = TimestampSampler(fps, *((targets.first_k, targets.stop_k) if targets else ()))
    to_rgb = _Scaler(short_side)
    stats.frame_duration = frame_duration(info.average_rate)
    with contextlib.nullcontext(container) if container is not None else av.open(path) as container:
        stream = container.streams[info.stream_index]
        _share_threads(stream)
        try:
            if targets is not None:
                stats.first_pts = targets.first_pts
            packets = _from_keyframe(container, stream, targets) if targets else container.demux(stream)
            for packet in packets:
                for frame in packet.decode():
                    t_abs = frame.time
                    if t_abs is None and targets is not None:
                        raise SplitError("a frame without a timestamp")
                    if t_abs is None:  # no pts at all: assume the nominal rate
                        t_abs = (stats.first_pts or 0.0) + stats.n_decoded * (stats.frame_duration or 1.0 / fps)
                    if stats.first_pts is None:
                        stats.first_pts = t_abs
                    t = t_abs - stats.first_pts
                    stats.n_decoded += 1
                    stats.last_pts = t if stats.last_pts is None else max(stats.last_pts, t)
                    repeats = sampler.take(t)
                    if repeats:
                        yield Frame(t, rotate_ccw(to_rgb(frame), frame.rotation or 0), repeats)
                    if sampler.done:
                        return
        except av.error.FFmpegError as e:
            raise DecodeError(f"decoding stopped after {stats.n_decoded} frames: {e}") from e


def _from_keyframe(container: av.container.InputContainer, stream: av.VideoStream,
                   targets: Targets) -> Iterator[av.Packet]:
    """The stream's packets from the part's keyframe on, checking that the seek lands where it landed
    for :func:`resolve_span` (in another container)."""
    if targets.seek is not None:
        container.seek(targets.seek, backward=True, any_frame=False, stream=stream)
    packets = container.demux(stream)
    if targets.seek is not None:
        first = next((p for p in packets if p.size), None)
        if first is None or first.pts != targets.start_pts or not first.is_keyframe:
            raise SplitError(f"the seek to {targets.seek} landed elsewhere than on keyframe {targets.start_pts}")
        yield first
    yield from packets


def decode_decord(path: str, info: Probe, fps: float, stats: DecodeStats, chunk: int = 16) -> Iterator[Frame]:
    """Same sampling with decord. decord picks the stream itself (FFmpeg's "best" stream), so a
    file where that differs from our rule is refused rather than silently mixed."""
    import decord

    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=0)
        times = reader.get_frame_timestamp(range(len(reader)))[:, 0].astype(np.float64)
    except decord.DECORDError as e:
        raise DecodeError(f"decord could not read the file: {_decord_reason(e)}") from e
    if len(times) == 0:
        return
    stats.first_pts = float(times[0])
    times = times - times[0]
    stats.n_decoded = len(times)
    stats.last_pts = float(times.max())
    stats.frame_duration = frame_duration(info.average_rate) or frame_duration(reader.get_avg_fps())
    sampler = TimestampSampler(fps)
    repeats = {i: n for i, t in enumerate(times) if (n := sampler.take(float(t)))}
    picked = sorted(repeats)
    shape = reader[0].shape if picked else None
    if shape is not None and sorted(shape[:2]) != sorted((info.height, info.width)):
        raise DecodeError(f"decord decodes a {shape[1]}x{shape[0]} stream, not the chosen stream "
                          f"{info.stream_index} ({info.width}x{info.height}); use --decoder pyav")
    for start in range(0, len(picked), chunk):
        idx = picked[start:start + chunk]
        try:
            batch = reader.get_batch(idx).asnumpy()
        except decord.DECORDError as e:
            raise DecodeError(f"decord stopped at frame {idx[0]}: {e}") from e
        for i, rgb in zip(idx, batch, strict=True):
            yield Frame(float(times[i]), rgb, repeats[i])


def _decord_reason(e: Exception) -> str:
    """decord's errors carry a C++ source location and check expression; keep the human part."""
    text = str(e).strip()
    return text.rsplit("ERROR ", 1)[-1].strip() if "ERROR " in text else text.splitlines()[-1] if text else "error"


def decode(path: str, info: Probe, fps: float, decoder: str, stats: DecodeStats, short_side: int | None = None,
           container: av.container.InputContainer | None = None, targets: Targets | None = None) -> Iterator[Frame]:
    """Sampled, display-oriented frames of the chosen stream; fills ``stats`` as it goes.

    ``short_side`` lets a decoder that can scale while converting (PyAV) deliver frames already
    resized; others (decord, NVDEC) deliver full size and the caller resizes (same size rule, see ``scaled_size``).
    ``targets`` (a part of a split video) only with PyAV: decord and NVDEC read the whole file, so
    :mod:`headcam.ingest.split` never splits for them.
    """
    if targets is not None and decoder != "pyav":
        raise ValueError(f"only the pyav decoder decodes a part of a video, not {decoder!r}")
    if decoder == "pyav":
        return decode_pyav(path, info, fps, stats, short_side, container, targets)
    if decoder == "decord":
        return decode_decord(path, info, fps, stats)
    if decoder == "nvdec":
        from headcam.ingest.nvdec import decode_nvdec  # DALI and CUDA only when asked for

        return decode_nvdec(path, info, fps, stats)
    raise ValueError(f"unknown decoder {decoder!r}; one of {DECODERS}")
