"""Pixel helpers, saliency and timestamp sampling on real frames and exact small cases."""

from __future__ import annotations

import io

import numpy as np
import pytest
from media_frames import real_frames
from PIL import Image, JpegImagePlugin

from headcam.ingest.decode import NoVideoStream, TimestampSampler, choose_stream
from headcam.ingest.encode import center_crop, encode_jpeg, resize_short_side, rotate_ccw
from headcam.ingest.saliency import encode_saliency_png, spectral_residual_saliency


def test_resize_short_side_keeps_aspect_and_averages():
    rgb = np.zeros((400, 720, 3), np.uint8)
    rgb[:, ::2] = 255  # fine stripes: an area filter must average them to grey, not alias
    out = resize_short_side(rgb, 100)
    assert out.shape == (100, 180, 3)
    assert abs(float(out.mean()) - 127.5) < 2 and out.std() < 3


def test_center_crop_shift_up_and_clamp():
    rgb = np.arange(300 * 200).reshape(300, 200, 1).repeat(3, axis=2)
    c = center_crop(rgb, 100, shift_up=16)
    assert c.shape[:2] == (100, 100)
    assert c[0, 0, 0] == rgb[100 - 16, 50, 0]
    assert center_crop(rgb, 200, shift_up=500)[0, 0, 0] == rgb[0, 0, 0]  # clamped at the top
    with pytest.raises(ValueError):
        center_crop(rgb, 201)


def test_rotate_ccw_matches_numpy_convention():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 2] = 255  # top-right
    r = rotate_ccw(rgb, 90)
    assert r.shape == (3, 2, 3) and r[0, 0, 0] == 255  # top-right goes to top-left
    assert np.array_equal(rotate_ccw(rgb, -90), rotate_ccw(rgb, 270))


def test_jpeg_is_420_quality_90_and_close():
    _, frame = real_frames(1, 64)[0]
    data = encode_jpeg(frame, 90)
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG" and img.size == (frame.shape[1], frame.shape[0])
    assert JpegImagePlugin.get_sampling(img) == 2  # 4:2:0
    assert np.abs(np.asarray(img).astype(int) - frame).mean() < 6


def test_spectral_residual_finds_the_odd_patch():
    rng = np.random.default_rng(0)
    img = np.full((120, 200, 3), 128, np.uint8) + rng.integers(0, 4, (120, 200, 3)).astype(np.uint8)
    img[30:46, 140:156] = 255  # one bright patch in a flat field
    m = spectral_residual_saliency(img)
    assert m.dtype == np.uint8 and max(m.shape) == 64 and m.shape == (38, 64) and m.max() == 255
    r, c = np.unravel_index(int(m.argmax()), m.shape)
    assert abs(r - 38 * 38 / 120) < 5 and abs(c - 64 * 148 / 200) < 5
    png = Image.open(io.BytesIO(encode_saliency_png(m)))
    assert png.mode == "L" and np.array_equal(np.asarray(png), m)


def test_frame_edges_are_not_salient_by_wrap_around(media_dir):
    """The DFT's wrap-around made the 4 px frame of tree.avi hold 42% of the mass (27% of the area)."""
    import av

    with av.open(str(media_dir / "tree.avi")) as c:
        frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i < 100 and i % 20 == 0]
    for frame in frames:
        m = spectral_residual_saliency(frame).astype(float)
        inner = np.zeros(m.shape, bool)
        inner[4:-4, 4:-4] = True
        border_area = 1 - inner.mean()
        assert m[~inner].sum() / m.sum() < border_area


def test_saliency_of_flat_frame_is_uniform():
    m = spectral_residual_saliency(np.zeros((50, 50, 3), np.uint8))
    assert m.min() == m.max() == 255


def test_timestamp_sampler_is_by_pts_not_index():
    s = TimestampSampler(5)  # targets 0, .2, .4, ...
    taken = [s.take(t) for t in (0.0, 0.0333, 0.19999, 0.2334, 0.3, 1.05, 1.1)]
    # 0.19999 reads as 0.2 (float rounding); 1.05 answers .4 .6 .8 1.0 after a gap, so it counts 4 times
    assert taken == [1, 0, 1, 0, 0, 4, 0]


def test_30fps_gives_5fps_not_the_original_stride():
    s = TimestampSampler(5)
    n = sum(s.take(i / 30) for i in range(300))  # 10 s at 30 fps
    assert n == 50  # the original stride 30 // 5 + 1 = 7 would give 43


def test_choose_stream_rule():
    assert choose_stream([(0, 320, 180), (3, 480, 270)]) == 3
    assert choose_stream([(2, 480, 270), (1, 270, 480)]) == 1  # tie in pixels: lowest index
    with pytest.raises(NoVideoStream):
        choose_stream([])


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_saliency_model_logits_become_densities(tmp_path, edge_dir):
    """``--saliency PATH``: a user's TorchScript net; its logits are stored as exp(s - max s)."""
    import pyarrow.parquet as pq
    import torch

    from headcam.ingest.cli import main

    class RightIsSalient(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            ramp = torch.linspace(0.0, 4.0, x.shape[-1]).expand(x.shape[0], 1, x.shape[-2], x.shape[-1])
            return ramp + 0.0 * x.mean(1, keepdim=True)

    model = tmp_path / "sal.pt"
    torch.jit.script(RightIsSalient()).save(str(model))
    out = tmp_path / "ds"
    assert main(["videos", "--out", str(out), "--size", "64", "--fps", "2", "--workers", "1", "--saliency", str(model),
                 str(edge_dir / "h265_video.mp4")]) == 0
    assert all(pq.read_table(out / "manifest.parquet").column("has_saliency").to_pylist())
    import tarfile

    with tarfile.open(next(out.glob("train-*.tar"))) as tar:
        name = next(n for n in tar.getnames() if n.endswith(".sal.png"))
        m = np.asarray(Image.open(io.BytesIO(tar.extractfile(name).read())), dtype=float)
    assert m.shape == (64, 64) and m[:, -1].min() == 255
    row = m[32] / 255.0  # exp(s - max) with s a 0..4 ramp: left end exp(-4)
    assert row[0] == pytest.approx(np.exp(-4), abs=0.01) and np.all(np.diff(row) >= 0)
