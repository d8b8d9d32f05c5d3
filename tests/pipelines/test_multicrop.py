"""Multi-crop views and per-view recipes (SPEC §10): global + local crops from both backends, each view's own
crop scale and blur / solarisation probabilities (from recorded parameters), and solarisation itself."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from loader_configs import config

from headcam.console import UsageError
from headcam.pipelines import maths
from headcam.pipelines.loader import build_loader
from headcam.pipelines.params import draw_view_params, local_side, view_plans
from headcam.pipelines.spec import recipe_spec, resolve_spec
from headcam.pipelines.torch.views import ViewMaker

BACKENDS = ["torch", pytest.param("dali", marks=pytest.mark.skipif(
    not __import__("importlib").util.find_spec("nvidia.dali"), reason="needs DALI"))]
LOCALS = {"local": {"n": 2, "size": 16}}


@pytest.mark.parametrize("backend", BACKENDS)
def test_global_then_local_views_from_both_backends(tiny_dataset, backend):
    loader = build_loader(tiny_dataset, "train", config("dino", LOCALS, batch_size=4, n_views=2, size=32,
                                                        backend=backend, record_views=True))
    b = next(iter(loader))
    assert [tuple(v.shape) for v in b.views] == [(4, 3, 32, 32)] * 2 + [(4, 3, 16, 16)] * 2
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in b.views)
    assert len(b.meta.views) == 4 and not torch.equal(b.views[2], b.views[3])


def test_local_side_defaults_to_96_of_224():
    assert local_side(recipe_spec("dino"), 224) == 96 and local_side(recipe_spec("dino"), 32) == 14
    plans = view_plans(recipe_spec("dino"), 224, 2)
    assert [p.size for p in plans] == [224] * 2 + [96] * 8 and [p.local for p in plans] == [False] * 2 + [True] * 8


def test_fixations_are_for_global_views_only(tiny_dataset):
    aug = {"local": {"n": 1, "size": 16}, "foveation": {"enabled": True}, "magnification": {"enabled": True}}
    b = next(iter(build_loader(tiny_dataset, "train", config("simclr_foveation", aug, batch_size=3, n_views=2,
                                                             size=32, record_views=True))))
    assert [tuple(r.fixations.shape) for r in b.meta.views] == [(3, 2), (3, 2), (3, 0)]
    assert b.views[2].shape == (3, 3, 16, 16)


def _area_fractions(dataset, batches, view: int) -> np.ndarray:
    """Each recorded crop box's area as a fraction of its source image's."""
    rows = pq.read_table(dataset / "manifest.parquet", columns=["key", "height", "width"]).to_pylist()
    area = {r["key"]: r["height"] * r["width"] for r in rows}
    out = []
    for b in batches:
        box = b.meta.views[view].params["box"].double().numpy()
        out.append(box[:, 2] * box[:, 3] / np.array([area[k] for k in b.keys]))
    return np.concatenate(out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_local_crops_follow_their_own_scale(tiny_dataset, backend):
    aug = {"crop": {"scale": [0.5, 1.0]}, "local": {"n": 1, "size": 16, "scale": [0.05, 0.2]}}
    batches = [b for seed in range(3)
               for b in build_loader(tiny_dataset, "train", config("dino", aug, batch_size=9, size=32, backend=backend,
                                                                   seed=seed, record_views=True))]
    glob, local = _area_fractions(tiny_dataset, batches, 0), _area_fractions(tiny_dataset, batches, 1)
    # Boxes are whole pixels of a 64 px image, so an area drifts from the drawn one by a few percent.
    assert glob.min() > 0.45 and glob.max() <= 1.0 and local.min() > 0.04 and local.max() < 0.23, (glob, local)
    assert np.median(local) < 0.2 < 0.5 < np.median(glob)


def _drawn(backend: str, spec, n: int) -> list[dict[str, np.ndarray]]:
    """Per view of ``spec``'s plans (2 global views): ``blur_on`` and ``solarize_on`` of ``n`` samples, drawn by
    ``backend``'s own sampler (NumPy's for torch; DALI's random ops, as its loader's graph does)."""
    plans = view_plans(spec, 32, 2)
    names = ("blur_on", "solarize_on")
    if backend == "torch":
        rng = np.random.default_rng(0)
        return [{k: getattr(draw_view_params(rng, plan.spec, [(64, 64)] * n), k) for k in names} for plan in plans]
    from nvidia.dali import fn, pipeline_def

    from headcam.pipelines.dali import ops

    @pipeline_def(batch_size=n, num_threads=1, device_id=None, seed=0)
    def pipe():
        shape = fn.external_source(source=[[np.array([64, 64, 3], dtype=np.int64)] * n], batch=True)
        return tuple(ops.draw(plan.spec, shape)[k] for plan in plans for k in names)

    p = pipe()
    p.build()
    outs = [np.array([bool(np.array(t[i])) for i in range(n)]) for t in p.run()]
    return [dict(zip(names, outs[2 * i:2 * i + 2], strict=True)) for i in range(len(plans))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_view_blur_and_solarise_probabilities(backend):
    """DINO: global views blur 1.0 / 0.1 and solarise 0 / 0.2, local crops blur 0.5 and never solarise
    (2000 draws per view: 4 standard errors under 0.04)."""
    v = _drawn(backend, resolve_spec("dino", {"local": {"n": 2}}), 2000)
    assert len(v) == 4 and v[0]["blur_on"].all() and not v[0]["solarize_on"].any()
    assert abs(v[1]["blur_on"].mean() - 0.1) < 0.03 and abs(v[1]["solarize_on"].mean() - 0.2) < 0.04
    for local in v[2:]:
        assert abs(local["blur_on"].mean() - 0.5) < 0.05 and not local["solarize_on"].any()


def test_byol_recipe_and_p_views_override():
    spec = recipe_spec("byol")
    first, second = (p.spec for p in view_plans(spec, 32, 2))
    assert (first.blur.p, second.blur.p, first.solarize.p, second.solarize.p) == (1.0, 0.1, 0.0, 0.2)
    third = view_plans(spec, 32, 3)[2].spec  # beyond p_views: the section's own p
    assert (third.blur.p, third.solarize.p) == (spec.blur.p, spec.solarize.p)
    same = resolve_spec("byol", ["blur.p_views=[]", "blur.p=0.3"])
    assert {p.spec.blur.p for p in view_plans(same, 32, 2)} == {0.3}
    with pytest.raises(UsageError, match=r"solarize.p_views\[1\] is a probability"):
        resolve_spec("byol", ["solarize.p_views=[0, 1.5]"])


def test_solarise_matches_a_float64_reference():
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 9, 9))
    x[0, 0, 0, :3] = [0.5, np.nextafter(0.5, 0), 1.0]  # at, just under the threshold, and the top
    want = np.where(x >= 0.5, 1.0 - x, x)
    got = maths.solarize(torch.from_numpy(x).float(), 0.5)
    np.testing.assert_allclose(got.double().numpy(), want, atol=1e-6)
    np.testing.assert_allclose(maths.solarize(x, 0.5), want, atol=1e-15)
    levels = np.arange(256, dtype=np.float64)  # uint8 values: x >= 128 -> 255 - x, as PIL's solarize(img, 128)
    assert (maths.solarize(levels, 0.5, 255.0) == np.where(levels >= 128, 255 - levels, levels)).all()


def test_torch_view_solarises_after_blur_before_normalising():
    """A view with blur off and solarisation on for every sample is the plain view, solarised in [0, 1]."""
    images = [torch.from_numpy(np.random.default_rng(i).integers(0, 256, (3, 24, 30), dtype=np.uint8))
              for i in range(4)]
    out = []
    for p in (0.0, 1.0):
        spec = resolve_spec("simclr", {"jitter": {"p": 0.0}, "grayscale_p": 0.0, "blur": {"p": 0.0},
                                       "solarize": {"p": p}})
        maker = ViewMaker(spec, size=16)
        (view,) = maker.prepare(images, [None] * 4, np.random.default_rng(1))
        x, _ = maker.finish(view)
        out.append((x * torch.tensor(spec.std).view(1, 3, 1, 1) + torch.tensor(spec.mean).view(1, 3, 1, 1)).double())
    assert view.params["solarize_on"].all()
    want = torch.where(out[0] >= 0.5, 1 - out[0], out[0])
    assert (out[1] - want).abs().max() < 1e-5


def test_local_crops_need_no_temporal_pairs(tiny_dataset):
    with pytest.raises(UsageError, match="no local crops"):
        config("mocov2", LOCALS, batch_size=2, n_views=2, temporal_window=1)
    with pytest.raises(UsageError, match="local.n and local.size must be >= 0"):
        config("dino", {"local": {"n": -1}}, batch_size=2)
