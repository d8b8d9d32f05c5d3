"""The DALI backend: the same Batch, the same maths (foveation against the NumPy reference on DALI's
CPU ops; magnification maps on CPU, remap on GPU), matching distributions of random parameters."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import reference
import torch
from loader_configs import config
from media_frames import real_frames

from headcam.console import UsageError
from headcam.pipelines import maths
from headcam.pipelines.batch import Batch
from headcam.pipelines.loader import LoaderConfig, build_loader
from headcam.pipelines.params import draw_view_params
from headcam.pipelines.spec import FoveationSpec, recipe_spec

dali = pytest.importorskip("nvidia.dali")
fn = pytest.importorskip("nvidia.dali.fn")
types = pytest.importorskip("nvidia.dali.types")
from headcam.pipelines.dali import ops  # noqa: E402

SIZE = 40


def _run(graph, inputs: dict[str, list[np.ndarray]]):
    """Run ``graph(**external_sources)`` once on CPU (``device_id=None``) on the given per-sample arrays."""
    from nvidia.dali import pipeline_def

    batch = len(next(iter(inputs.values())))

    @pipeline_def(batch_size=batch, num_threads=1, device_id=None, seed=0, enable_conditionals=True)
    def pipe():
        nodes = {k: fn.external_source(source=[v], batch=True, layout="HWC" if v[0].ndim == 3 else None)
                 for k, v in inputs.items()}
        return graph(**nodes)

    p = pipe()
    p.build()
    outs = p.run()
    return [np.stack([np.array(t[i]) for i in range(batch)]) for t in outs]


@pytest.fixture(scope="module")
def square_frames() -> np.ndarray:
    return np.stack([f[:SIZE, :SIZE] for _, f in real_frames(n_per_video=1, size=64)][:2]).astype(np.float32) / 255


def test_dali_cpu_foveation_matches_reference(square_frames):
    fix = [(5, 30), (20, 12)]
    area = [0.02, 0.3]

    def graph(img, row, col, a):
        return ops.foveate(img, row, col, a, SIZE, FoveationSpec())

    inputs = {"img": list(square_frames), "row": [np.float32(f[0]) for f in fix],
              "col": [np.float32(f[1]) for f in fix], "a": [np.float32(a) for a in area]}
    (got,) = _run(graph, inputs)
    want = np.stack([reference.foveate(square_frames[i].astype(np.float64), fix[i], float(np.float32(area[i])))
                     for i in range(2)])
    np.testing.assert_allclose(got, want, atol=2e-3)  # float32, DALI's own Gaussian taps and border


def test_dali_magnification_maps_match_shared_maths():
    fix = [(3, 35), (20, 20)]
    rho = [0.05, 0.3]

    def graph(row, col, r):
        return ops.magnification_maps(row, col, r, SIZE, "radial_quad", 8.0, 8.0, 1.5)

    mapx, mapy = _run(graph, {"row": [np.float32(f[0]) for f in fix], "col": [np.float32(f[1]) for f in fix],
                              "r": [np.float32(r) for r in rho]})
    pos = maths.magnification_positions(torch.tensor(fix), torch.tensor(rho, dtype=torch.float64).float().double(),
                                        SIZE, SIZE, "radial_quad", 8.0, 8.0, dtype=torch.float64).numpy()
    np.testing.assert_allclose(mapy, pos[..., 0], atol=1e-3)
    np.testing.assert_allclose(mapx, pos[..., 1], atol=1e-3)


@pytest.mark.gpu
def test_dali_gpu_remap_matches_reference(square_frames):
    fix = [(12, 30), (35, 3)]
    rho = [0.05, 0.35]

    def graph(img, row, col, r):
        mapx, mapy = ops.magnification_maps(row.cpu() if hasattr(row, "cpu") else row, col, r, SIZE,
                                            "radial_quad", 8.0, 8.0, 1.5)
        return fn.experimental.remap(img, mapx.gpu(), mapy.gpu(), pixel_origin="center", interp=types.INTERP_LINEAR)

    from nvidia.dali import pipeline_def

    @pipeline_def(batch_size=2, num_threads=1, device_id=0, seed=0, enable_conditionals=True)
    def pipe():
        img = fn.external_source(source=[list(square_frames)], batch=True, device="gpu", layout="HWC")
        row = fn.external_source(source=[[np.float32(f[0]) for f in fix]], batch=True)
        col = fn.external_source(source=[[np.float32(f[1]) for f in fix]], batch=True)
        r = fn.external_source(source=[[np.float32(x) for x in rho]], batch=True)
        return graph(img, row, col, r)

    p = pipe()
    p.build()
    (out,) = p.run()
    got = np.stack([np.array(out.as_cpu()[i]) for i in range(2)])
    want = np.stack([reference.magnify(square_frames[i].astype(np.float64), fix[i], float(np.float32(rho[i])),
                                       "radial_quad", 8.0, 8.0) for i in range(2)])
    np.testing.assert_allclose(got, want, atol=2e-3)


def build_dali_loader(data, split, recipe, augment=None, **kw):
    """The DALI loader on CPU, straight from headcam.pipelines.dali.loader (what build_loader(backend="dali") calls)."""
    from headcam.pipelines.dali.loader import build_dali_loader as build
    from headcam.shards.dataset import open_dataset
    from headcam.shards.read import select

    return build(select(open_dataset(data), split), config(recipe, augment, backend="dali", device="cpu", workers=1,
                                                           shuffle_buffer=16, **kw))


def test_dali_batches_match_the_torch_contract(tiny_dataset):
    cfg = LoaderConfig.for_eval(size=32, batch_size=4, n_views=2)
    dali_cfg = dataclasses.replace(cfg, backend="dali")  # one config type, one object per backend choice
    dl, tl = build_loader(tiny_dataset, "train", dali_cfg), build_loader(tiny_dataset, "train", cfg)
    assert dl.cfg is dali_cfg and tl.batches.cfg is cfg
    d, t = list(dl), list(tl)
    assert len(d) == len(dl) == len(t) == len(tl)
    for a, b in zip(d, t, strict=True):
        assert [v.shape for v in a.views] == [v.shape for v in b.views]
        assert a.views[0].dtype == b.views[0].dtype == torch.float32 and a.label.dtype == torch.int64
    # Same samples, same order, same geometry: eval views differ only by resampling filters.
    assert sorted(torch.cat([b.label for b in d]).tolist()) == sorted(torch.cat([b.label for b in t]).tolist())
    diff = (torch.cat([b.views[0] for b in d]) - torch.cat([b.views[0] for b in t])).abs().mean()
    assert diff < 0.15, diff


def test_dali_random_params_match_torch_in_distribution(tiny_dataset):
    kw = dict(batch_size=9, n_views=2, size=32)
    d, t = ([v.params for s in range(4)
             for b in build_loader(tiny_dataset, "train", config("mocov2", seed=s, backend=backend, record_views=True,
                                                                 **kw)) for v in b.meta.views]
            for backend in ("dali", "torch"))
    area_d = np.concatenate([(p["box"][:, 2] * p["box"][:, 3]).numpy() for p in d]) / (64 * 64)
    area_t = np.concatenate([(p["box"][:, 2] * p["box"][:, 3]).numpy() for p in t]) / (64 * 64)
    # Frames are 64 px on the short side and wider; as a fraction of 64×64 both sit in the same range.
    assert abs(np.median(area_d) - np.median(area_t)) < 0.25 * np.median(area_t)
    for p in (d, t):
        bright = np.concatenate([x["jitter"][x["jitter_on"], 0].numpy() for x in p])
        assert bright.min() >= 0.6 and bright.max() <= 1.4 and abs(bright.mean() - 1.0) < 0.06
        on = np.concatenate([x["jitter_on"].numpy() for x in p]).mean()
        assert abs(on - 0.8) < 0.1


def test_dali_equal_steps_for_two_ranks(tiny_dataset):
    lens = [len(list(build_loader(tiny_dataset, "train", config("simclr", batch_size=4, size=32, backend="dali", rank=r,
                                  world=2)))) for r in (0, 1)]
    assert lens[0] == lens[1] > 0


def test_dali_foveation_recipe_runs_on_cpu(tiny_dataset):
    aug = {"foveation": {"enabled": True}}
    (b, *_) = list(build_dali_loader(tiny_dataset, "train", "simclr", batch_size=4, size=32, augment=aug,
                                     record_views=True))
    assert b.views[0].shape == (4, 3, 32, 32) and torch.isfinite(b.views[0]).all()
    fix = b.meta.views[0].fixations
    border = maths.uniform_border(12, 32)
    assert fix.shape == (4, 2) and (fix >= border).all() and (fix <= 31 - border).all()


def test_dali_batches_carry_keys_samples_and_views_only_on_request(tiny_dataset):
    plain = next(iter(build_dali_loader(tiny_dataset, "val", "eval", batch_size=3, size=32, train=False)))
    assert isinstance(plain, Batch) and plain.meta.backend == "dali" and plain.meta.views is None
    torch_batch = next(iter(build_loader(tiny_dataset, "val", config("eval", batch_size=3, size=32, train=False))))
    assert plain.keys == torch_batch.keys  # eval: shard order in both backends
    assert [s["i"] for s in plain.meta.samples] == [int(k[1:]) for k in plain.keys]  # KEY.json of that key
    recorded = next(iter(build_dali_loader(tiny_dataset, "val", "eval", batch_size=3, size=32, train=False,
                                           record_views=True)))
    assert set(recorded.meta.views[0].params) == set(vars(draw_view_params(np.random.default_rng(0),
                                                                           recipe_spec("eval"), [(8, 8)])))


def test_dali_refuses_what_it_cannot_do_on_cpu(tiny_dataset):
    with pytest.raises(UsageError, match="remap, which DALI has only on GPU"):
        build_loader(tiny_dataset, "train", config("simclr", {"magnification": {"enabled": True}}, batch_size=2,
                                                   backend="dali"))
    with pytest.raises(UsageError, match="saliency fixations"):
        build_loader(tiny_dataset, "train", config("simclr_foveation", batch_size=2, backend="dali"))
    with pytest.raises(UsageError, match="temporal pairs"):
        build_loader(tiny_dataset, "train", config("mocov2", batch_size=2, n_views=2, backend="dali",
                                                   temporal_window=1))
    with pytest.raises(UsageError, match="cannot filter samples by key"):
        build_loader(tiny_dataset, "train", config("simclr", batch_size=2, backend="dali", keys=["f00000"]))


def test_gpu_contrast_arithmetic_equals_cpu_contrast_op(square_frames):
    """The GPU's contrast (DALI arithmetic, since a GPU mean cannot be an op argument) is the CPU's
    ``fn.contrast`` around the mean grey: run both on CPU here, the GPU path in test_parity."""
    images = [(f * 255).astype(np.uint8) for f in square_frames]
    factors = [np.float32(0.3), np.float32(1.7)]
    op, arithmetic = _run(lambda img, c: (ops.contrast(img, c), ops.blended_contrast(img, c)),
                          {"img": images, "c": factors})
    assert np.abs(op.astype(int) - arithmetic.astype(int)).max() <= 1
    grey = [np.mean(im.astype(np.float64) @ np.array(maths.LUMA)) for im in images]
    want = [np.clip(im * f + g * (1 - f), 0, 255) for im, f, g in zip(images, factors, grey, strict=True)]
    assert np.abs(np.stack(want) - arithmetic).max() <= 1.0
