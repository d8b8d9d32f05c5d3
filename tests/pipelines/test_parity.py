"""The torch and DALI-CPU backends make the same view from the same parameters.

One ``ViewParams`` is drawn with a seeded generator (``params.draw_view_params``) and fed to both:
the torch backend through ``ViewMaker.finish``, DALI through ``fn.external_source`` into
``ops.view`` (the graph the loader runs, with the random draws replaced). Both get the same
decoded RGB source images, so JPEG decoders are not part of the comparison.

What is isolated, and why (see ``headcam.pipelines.dali.ops``):

- hue, with ``jitter.order=random``: DALI rotates hue in YIQ (``fn.hsv``), torchvision in HSV, so the
  hue shift is set to 0 here (each sample's jitter order is drawn and followed by both backends).
  With ``jitter.order=fixed`` both backends apply DALI's ``color_twist`` matrix (the torch backend builds
  it with ``maths.twist_matrix``), so the whole twist, hue included, is compared; and
  ``test_fused_twist_is_dalis_color_twist`` holds the torch kernel to ``fn.color_twist`` itself, to
  DALI's uint8 rounding.

Also isolated: DALI's resize reads the source's real pixels beyond the crop box for its
antialiasing filter, torchvision's ``resized_crop`` clamps at the box's edge, so the outermost
pixel frame of a view differs (by up to ~20/255), and the blur carries that ``k // 2`` further in.
Solarisation (x >= 1/2 -> 1 - x) is continuous at its threshold, so DALI's uint8 rounding moves a solarised
pixel no further than an unsolarised one and the same tolerances hold.
Tolerances, on views mapped back to [0, 1]: inside that frame, at most 6/255 on any pixel
(DALI resamples, jitters and blurs in uint8, rounded after each op, where the torch backend works
in float; contrast can amplify a rounding by 1.9); over the whole view, a mean under 1/255.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from media_frames import real_frames

from headcam.pipelines import maths
from headcam.pipelines.params import ViewParams, draw_view_params, view_plans
from headcam.pipelines.spec import AugmentSpec, recipe_spec, resolve_spec
from headcam.pipelines.torch.geometry import crop_views
from headcam.pipelines.torch.views import PreparedView, ViewMaker

pytest.importorskip("nvidia.dali")
from headcam.pipelines.dali import ops  # noqa: E402

SIZE = 48
B = 8
RECIPES = {"simclr": recipe_spec("simclr"), "mocov2": recipe_spec("mocov2"),
           "babyvision_tc": recipe_spec("babyvision_tc"), "eval": recipe_spec("eval"),
           "simclr_foveation_uniform": resolve_spec("simclr", {"foveation": {"enabled": True}}),
           # per-view specs as the loaders make them: BYOL's second view (blur 0.1, solarise 0.2), a DINO local crop
           "byol_view2": view_plans(recipe_spec("byol"), SIZE, 2)[1].spec,
           "dino_local": view_plans(recipe_spec("dino"), SIZE, 2)[2].spec,
           # solarisation on uint8 for the samples that draw it (DALI's conditional), and on floats after foveation
           "solarize_half": resolve_spec("simclr", {"solarize": {"p": 0.5}}),
           "solarize_foveation": resolve_spec("simclr", {"solarize": {"p": 1.0}, "foveation": {"enabled": True}}),
           # DALI's fused colour twist in both backends, hue shift included
           "simclr_fixed": resolve_spec("simclr", {"jitter": {"order": "fixed"}}),
           "babyvision_tc_fixed": resolve_spec("babyvision_tc", {"jitter": {"order": "fixed"}}),
           # bicubic crops (DINO, MAE, VICReg): torchvision's antialiased bicubic against DALI's INTERP_CUBIC
           "mae": recipe_spec("mae"), "dino_global": view_plans(recipe_spec("dino"), SIZE, 2)[0].spec}


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    frames = [f for _, f in real_frames(n_per_video=3, size=64)]
    return [frames[i % len(frames)] for i in range(B)]


def comparable_params(spec: AugmentSpec, images: list[np.ndarray], seed: int) -> ViewParams:
    """Drawn parameters with the isolated difference removed (no hue shift where the order is random)."""
    p = draw_view_params(np.random.default_rng(seed), spec, [im.shape[:2] for im in images])
    if spec.jitter.order == "random":
        p.jitter[:, 3] = 0.0
    return p


def torch_view(spec: AugmentSpec, images: list[np.ndarray], p: ViewParams) -> tuple[torch.Tensor, torch.Tensor]:
    t = {k: torch.as_tensor(np.ascontiguousarray(v)) for k, v in vars(p).items()}
    pixels = crop_views([torch.from_numpy(im.copy()).permute(2, 0, 1) for im in images], t["box"], t["flip"], SIZE,
                        spec.crop.interpolation)
    view, fix = ViewMaker(spec, SIZE).finish(PreparedView(pixels, None, torch.ones(len(images), dtype=torch.bool), t))
    return view, fix


def _rows(p: ViewParams, name: str) -> list[np.ndarray]:
    """One ``ViewParams`` field as DALI's per-sample arrays (bool, int32 or float32)."""
    values = getattr(p, name)
    kind = {"b": np.bool_, "i": np.int32}.get(values.dtype.kind, np.float32)
    return [np.asarray(v, dtype=kind) for v in values]


def dali_view(spec: AugmentSpec, images: list[np.ndarray], p: ViewParams) -> tuple[torch.Tensor, torch.Tensor]:
    from nvidia.dali import fn, pipeline_def

    @pipeline_def(batch_size=len(images), num_threads=1, device_id=None, seed=0, enable_conditionals=True)
    def pipe():
        source = fn.external_source(source=[images], batch=True, layout="HWC")
        nodes = {name: fn.external_source(source=[_rows(p, name)], batch=True) for name in ops.PARAMS}
        view, fix = ops.view(source, nodes, spec, SIZE, gpu=False)
        return (view, fix) if fix is not None else (view,)

    pipeline = pipe()
    pipeline.build()
    outs = [torch.from_numpy(np.stack([np.array(t[i]) for i in range(len(images))])) for t in pipeline.run()]
    return outs[0], (outs[1].long() if len(outs) > 1 else torch.zeros((len(images), 0), dtype=torch.long))


def unnormalise(x: torch.Tensor, spec: AugmentSpec) -> torch.Tensor:
    return x * torch.tensor(spec.std).view(1, 3, 1, 1) + torch.tensor(spec.mean).view(1, 3, 1, 1)


def assert_same(a: torch.Tensor, b: torch.Tensor, spec: AugmentSpec) -> None:
    """Views in [0, 1] agree: mean over all pixels, maximum inside the crop-edge frame (module docstring)."""
    diff = (a - b).abs()
    frame = 1 + maths.blur_kernel_size(SIZE, spec.blur.kernel_frac) // 2
    inner = diff[..., frame:-frame, frame:-frame]
    assert diff.mean() < 1 / 255 and inner.max() < 6 / 255, (diff.mean() * 255, inner.max() * 255)


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_torch_and_dali_cpu_make_the_same_views(images, recipe):
    spec = RECIPES[recipe]
    p = comparable_params(spec, images, seed=3)
    (tv, tfix), (dv, dfix) = torch_view(spec, images, p), dali_view(spec, images, p)
    assert (tfix == dfix).all()
    if recipe.startswith("solarize"):
        assert p.solarize_on.any()
    assert_same(unnormalise(tv, spec), unnormalise(dv, spec), spec)
    if recipe not in ("eval", "mae"):  # the recipe did something: the comparison is not of two copies of the crop
        box, flip = torch.from_numpy(p.box), torch.from_numpy(p.flip)
        crops = crop_views([torch.from_numpy(im.copy()).permute(2, 0, 1) for im in images], box, flip, SIZE) / 255
        assert (unnormalise(tv, spec) - crops).abs().mean() > 4 / 255  # 4x the parity tolerance


def test_bicubic_crops_are_bicubic_in_both_backends(images):
    """``crop.interpolation=bicubic`` changes the crop (against bilinear) and each backend follows it: the DALI
    bicubic view is closer to the torch bicubic one than DALI's bilinear view is."""
    bicubic = recipe_spec("mae")
    bilinear = resolve_spec("mae", {"crop": {"interpolation": "bilinear"}})
    p = comparable_params(bicubic, images, seed=5)
    (t_cub, _), (t_lin, _) = torch_view(bicubic, images, p), torch_view(bilinear, images, p)
    (d_cub, _), (d_lin, _) = dali_view(bicubic, images, p), dali_view(bilinear, images, p)
    assert (t_cub - t_lin).abs().mean() > 0.01  # normalised units: ~1/255 of pixel value
    assert (d_cub - t_cub).abs().mean() < 0.5 * (d_lin - t_cub).abs().mean()


def test_fused_twist_is_dalis_color_twist(images):
    """``colour.colour_twist`` (``jitter.order=fixed`` on torch) is ``fn.color_twist`` to DALI's rounding to uint8,
    on real frames, with factors drawn at babyvision_tc's strengths (0.9, hue ±0.5 turn) and hue included."""
    from nvidia.dali import fn, pipeline_def

    from headcam.pipelines.torch import colour

    images = [np.ascontiguousarray(im[:SIZE, :SIZE]) for im in images]  # one shape, to stack
    factors = draw_view_params(np.random.default_rng(11), RECIPES["babyvision_tc_fixed"], [(SIZE, SIZE)] * B).jitter

    @pipeline_def(batch_size=len(images), num_threads=1, device_id=None, seed=0)
    def pipe():
        x = fn.external_source(source=[images], batch=True, layout="HWC")
        j = fn.external_source(source=[list(factors.astype(np.float32))], batch=True)
        return fn.color_twist(x, brightness=j[0], contrast=j[1], saturation=j[2], hue=maths.hue_degrees(j[3]))

    pipeline = pipe()
    pipeline.build()
    (out,) = pipeline.run()
    dali = torch.from_numpy(np.stack([np.array(out[i]) for i in range(len(images))])).permute(0, 3, 1, 2).double()
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).double() / 255
    ours = colour.colour_twist(x, torch.ones(len(images), dtype=torch.bool), torch.from_numpy(factors)) * 255
    assert (ours - dali).abs().max() < 0.5 + 1e-3  # DALI rounds to the nearest level; nothing else differs
    assert (dali - x * 255).abs().mean() > 10  # and the twist did something


def test_a_maths_constant_changes_both_backends(images, monkeypatch):
    """The plateau's flat half-width lives in maths only: moving it moves both backends' foveation alike
    (the change of one backend's views is the change of the other's, to a few percent)."""
    spec = RECIPES["simclr_foveation_uniform"]
    p = comparable_params(spec, images, seed=5)
    before = [unnormalise(make(spec, images, p)[0], spec) for make in (torch_view, dali_view)]
    monkeypatch.setattr(maths, "PLATEAU_FLAT", 0.05)
    after = [unnormalise(make(spec, images, p)[0], spec) for make in (torch_view, dali_view)]
    change_torch, change_dali = after[0] - before[0], after[1] - before[1]
    assert change_torch.abs().max() > 2 / 255
    assert (change_torch - change_dali).abs().sum() < 0.2 * change_torch.abs().sum()


@pytest.mark.gpu
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_dali_gpu_makes_the_cpu_views(images, recipe):
    """The GPU graph (nvJPEG ROI decoding per view, blended contrast, masks moved to the GPU) makes the CPU
    graph's views from the same JPEGs and parameters; decoders differ by a level or two."""
    import io

    from nvidia.dali import fn, pipeline_def, types
    from PIL import Image

    spec = RECIPES[recipe]
    p = comparable_params(spec, images, seed=7)
    jpegs = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, "JPEG", quality=95)
        jpegs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))

    def run(gpu: bool) -> torch.Tensor:
        @pipeline_def(batch_size=len(images), num_threads=1, device_id=0, seed=0, enable_conditionals=True)
        def pipe():
            encoded = fn.external_source(source=[jpegs], batch=True)
            nodes = {name: fn.external_source(source=[_rows(p, name)], batch=True) for name in ops.PARAMS}
            source = encoded if gpu else fn.decoders.image(encoded, device="cpu", output_type=types.RGB)
            return ops.view(source, nodes, spec, SIZE, gpu)[0]

        pipeline = pipe()
        pipeline.build()
        (out,) = pipeline.run()
        out = out.as_cpu() if gpu else out
        return torch.from_numpy(np.stack([np.array(out[i]) for i in range(len(images))]))

    diff = (unnormalise(run(True), spec) - unnormalise(run(False), spec)).abs()
    assert diff.mean() < 2 / 255, diff.mean() * 255
