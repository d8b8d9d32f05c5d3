"""``--decoder nvdec``: video frames decoded in hardware (NVDEC) by DALI, sampled by PyAV's rule.

Why DALI: it is already a dependency (the training pipelines use it), and its
``fn.decoders.video(frames=[...])`` decodes exactly the listed frames (display-order indices) of
an in-memory file on the GPU. So the sampling stays ours: PyAV *demuxes* the chosen stream (no
decoding: cheap) to read every packet's pts, :class:`~headcam.ingest.decode.TimestampSampler`
picks the frames by the same rule as the PyAV path, and only the picked frames are handed to
NVDEC. Frame indices are therefore PyAV's (display order = sorted pts); pixels differ from the
PyAV path only by the YUV->RGB conversion and the resize (here ``cv2.INTER_AREA`` on the full
frame, as for decord), i.e. within JPEG re-encode noise. torchcodec's CUDA decoder would be a
new pinned package; PyNvVideoCodec likewise.

Not yet run on a GPU (written from DALI 2.4's documentation); the ``gpu``-marked tests in
``tests/ingest/test_nvdec.py`` compare it with PyAV when CUDA is present.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from headcam.ingest.decode import DecodeError, DecodeStats, Frame, Probe, TimestampSampler, frame_duration
from headcam.ingest.encode import rotate_ccw

#: Frames per GPU call: bounds GPU and host memory (640x480 RGB: 118 MB) whatever the video length.
CHUNK = 128


def cuda_available() -> bool:
    """Whether a CUDA device is visible (torch is a dependency; imported only when asked)."""
    import torch

    return torch.cuda.is_available()


def _display_times(path: str, info: Probe) -> tuple[np.ndarray, int]:
    """Absolute pts (s) of every frame of the chosen stream in display order, from demuxing alone,
    and the stream's rotation (counter-clockwise degrees, read from its first decoded frame)."""
    with av.open(path) as c:
        stream = c.streams[info.stream_index]
        tb = float(stream.time_base)
        pts = [p.pts for p in c.demux(stream) if p.size and p.pts is not None]
    with av.open(path) as c:
        first = next(iter(c.decode(c.streams[info.stream_index])), None)
    return np.sort(np.asarray(pts, np.float64)) * tb, int(first.rotation or 0) if first is not None else 0


@functools.cache
def _pipeline():
    """One DALI pipeline per worker process (building one costs far more than a frame), fed a file's
    bytes and a list of frame indices per run."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=1, num_threads=2, device_id=0, prefetch_queue_depth=1)
    def frames_at():
        encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
        frames = fn.external_source(name="frames", dtype=types.INT32, ndim=1)
        return fn.decoders.video(encoded, device="mixed", frames=frames)

    pipe = frames_at()
    pipe.build()
    return pipe


def _decode_frames(encoded: np.ndarray, indices: list[int]) -> np.ndarray:
    """(F, H, W, 3) RGB uint8 on the host: the listed display-order frames, decoded by NVDEC."""
    pipe = _pipeline()
    pipe.feed_input("encoded", [encoded])
    pipe.feed_input("frames", [np.asarray(indices, np.int32)])
    (out,) = pipe.run()
    return np.asarray(out.as_cpu().at(0))


def decode_nvdec(path: str, info: Probe, fps: float, stats: DecodeStats) -> Iterator[Frame]:
    """The frames the PyAV path would sample, decoded on the GPU, full size (the caller resizes)."""
    times, rotation = _display_times(path, info)
    if len(times) == 0:
        return
    stats.first_pts = float(times[0])
    times = times - times[0]
    stats.n_decoded, stats.last_pts = len(times), float(times[-1])
    stats.frame_duration = frame_duration(info.average_rate)
    sampler = TimestampSampler(fps)
    picked = [(i, n) for i, t in enumerate(times) if (n := sampler.take(float(t)))]
    encoded = np.frombuffer(Path(path).read_bytes(), np.uint8)
    for start in range(0, len(picked), CHUNK):
        chunk = picked[start:start + CHUNK]
        try:
            batch = _decode_frames(encoded, [i for i, _ in chunk])
        except RuntimeError as e:  # DALI reports decoder and container errors as RuntimeError
            raise DecodeError(f"NVDEC (DALI) stopped at frame {chunk[0][0]}: {str(e).splitlines()[0]}") from e
        if len(batch) != len(chunk) or sorted(batch.shape[1:3]) != sorted((info.height, info.width)):
            raise DecodeError(f"NVDEC (DALI) gave {batch.shape[:3]} for {len(chunk)} frames of the chosen stream "
                              f"{info.stream_index} ({info.width}x{info.height}); use --decoder pyav")
        for (i, repeats), rgb in zip(chunk, batch, strict=True):
            yield Frame(float(times[i]), rotate_ccw(rgb, rotation), repeats)
