"""The augmentation spec: one typed description that both backends (torch, DALI) read.

Why one spec: solo-learn keeps a single YAML node for its torch and DALI pipelines (STYLE.md
practice 6), so a recipe means the same thing whichever backend runs it. Recipes are named
presets of :class:`AugmentSpec`; the YAML recipes shipped as package data
(``pipelines/recipes/NAME.yaml``, read through :mod:`importlib.resources` so they survive a wheel
install), a user's recipe file and ``key=value`` overrides change them through :func:`resolve_spec`.

Values from SPEC.md §3 (SimCLR, MoCo v2 aug+, baby-vision), §4 (foveation), §5 (cortical
magnification), §2 (fixations) and §10 (BYOL's and DINO's asymmetric views, DINO's multi-crop).
Pixel sizes given "at 96 px" are scaled with the view side (``side / 96``) unless an op says
otherwise. Each view of a batch reads its own resolved copy of the spec
(:func:`headcam.pipelines.params.view_plans`): per-view probabilities picked, local crops' ops set.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from headcam.config import merge_into, parse_overrides
from headcam.console import UsageError

#: Side, in pixels, at which the paper's pixel sizes (borders, fovea radius) were given (STL-10).
REFERENCE_SIDE = 96

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class CropSpec:
    """Random resized crop (torchvision semantics: 10 tries, then a centre crop).

    ``interpolation``: how the box is resized to the view side, antialiased either way: ``bilinear``
    (torchvision's default: SimCLR, MoCo v2, baby-vision) or ``bicubic`` (``interpolation=3`` / BICUBIC in
    DINO's, MAE's and VICReg's scripts). It applies to every crop of the recipe, local crops included.
    """

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bilinear"


#: ``crop.interpolation`` values: see :class:`CropSpec`.
CROP_INTERPOLATIONS = ("bilinear", "bicubic")


#: ``jitter.order`` values: see :class:`JitterSpec`.
JITTER_ORDER_CHOICES = ("random", "fixed")


@dataclass
class JitterSpec:
    """Colour jitter: factors ~ U[1-x, 1+x] (hue: U[-h, h], in turns), applied under probability ``p``.

    ``order``: ``random`` is torchvision's ``ColorJitter`` (SimCLR): the four ops in a random order per
    sample, clipped after each, contrast around the image's mean grey. ``fixed`` is DALI's fused
    ``fn.color_twist`` (solo-learn's DALI loader): one colour matrix per sample, hue rotation and
    saturation in YIQ, then contrast around mid-grey, then brightness, clipped once
    (:func:`headcam.pipelines.maths.twist_matrix`); the same maths in both backends, one op on DALI.
    """

    p: float = 0.8
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    order: str = "random"


@dataclass
class BlurSpec:
    """Gaussian blur with kernel = ``kernel_frac`` of the side (odd), sigma ~ U[sigma]."""

    p: float = 0.5
    sigma: tuple[float, float] = (0.1, 2.0)
    kernel_frac: float = 0.1
    p_views: tuple[float, ...] = ()  # view i (a global one) blurs with p_views[i] where given (BYOL: 1.0, 0.1)


@dataclass
class SolarizeSpec:
    """Solarisation (BYOL, DINO): x -> 1 - x where x >= ``threshold``, in [0, 1] space, after the blur.

    ``p_views`` as :class:`BlurSpec`'s: the published recipes solarise only their second view (0, 0.2).
    """

    p: float = 0.0
    p_views: tuple[float, ...] = ()
    threshold: float = 0.5


@dataclass
class LocalSpec:
    """Multi-crop (DINO): ``n`` local crops after the global views, each a random resized crop of ``scale``.

    ``size`` 0 = round(side · 96/224) (DINO's 96 px beside 224). Local crops get the recipe's flip, colour
    jitter and grayscale, a Gaussian blur with probability ``blur_p`` (DINO: 0.5), no solarisation and
    no foveation, magnification or fixation: those are for the global views.
    """

    n: int = 0
    size: int = 0
    scale: tuple[float, float] = (0.05, 0.4)
    blur_p: float = 0.5


@dataclass
class FixationSpec:
    """Where foveation / magnification centre a view (SPEC §2).

    ``mode``: ``uniform`` (inside the op's border) or ``saliency`` (p ∝ (m + eps)^(1/T) with a
    border of ``bdr`` px at 96 px, zero). ``strict``: a missing saliency map is an error instead
    of a counted fall-back to uniform.
    """

    mode: str = "uniform"
    temperature: float = 1.5
    bdr: float = 16.0
    eps: float = 1e-6
    strict: bool = False


@dataclass
class FoveationSpec:
    """Spatially varying blur around a fixation (SPEC §4); replaces the Gaussian blur when on."""

    enabled: bool = False
    area: tuple[float, float] = (0.01, 0.5)
    spacing: float = 0.2
    blur_factor: float = 0.06
    field_deg: float = 20.0
    border: float = 12.0


@dataclass
class MagnificationSpec:
    """Cortical magnification by a warped sampling grid (SPEC §5); replaces the random resized crop."""

    enabled: bool = False
    mode: str = "radial_quad"
    fovea: float = 20.0
    softness: float = 20.0
    exp_c: float = 1.5
    cover_ratio: tuple[float, float] = (0.05, 0.35)
    scale_with_side: bool = True
    border: float = 16.0


@dataclass
class AugmentSpec:
    """A whole view recipe. ``eval`` recipes use ``resize_ratio`` (short side = size / ratio, centre crop)."""

    recipe: str = "simclr"
    random_crop: bool = True
    resize_ratio: float = 0.875
    crop: CropSpec = field(default_factory=CropSpec)
    flip_p: float = 0.5
    jitter: JitterSpec = field(default_factory=JitterSpec)
    grayscale_p: float = 0.2
    blur: BlurSpec = field(default_factory=BlurSpec)
    solarize: SolarizeSpec = field(default_factory=SolarizeSpec)
    local: LocalSpec = field(default_factory=LocalSpec)
    foveation: FoveationSpec = field(default_factory=FoveationSpec)
    magnification: MagnificationSpec = field(default_factory=MagnificationSpec)
    fixation: FixationSpec = field(default_factory=FixationSpec)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def validate(self) -> AugmentSpec:
        _check_numbers(self, "")
        modes = ("radial_quad", "radial_exp")
        if self.magnification.mode not in modes:
            raise UsageError(f"unknown magnification mode '{self.magnification.mode}'; valid: {', '.join(modes)}")
        if self.jitter.order not in JITTER_ORDER_CHOICES:
            raise UsageError(f"unknown jitter.order '{self.jitter.order}'; valid: {', '.join(JITTER_ORDER_CHOICES)}")
        if self.crop.interpolation not in CROP_INTERPOLATIONS:
            raise UsageError(f"unknown crop.interpolation '{self.crop.interpolation}'; valid: "
                             f"{', '.join(CROP_INTERPOLATIONS)}")
        if self.fixation.mode not in ("uniform", "saliency"):
            raise UsageError(f"unknown fixation mode '{self.fixation.mode}'; valid: uniform, saliency")
        for key, (lo, hi) in {"crop.scale": self.crop.scale, "local.scale": self.local.scale,
                              "foveation.area": self.foveation.area,
                              "magnification.cover_ratio": self.magnification.cover_ratio}.items():
            if not 0 < lo <= hi <= 1:
                raise UsageError(f"{key} must satisfy 0 < lo <= hi <= 1, got {[lo, hi]}")
        probabilities = {"flip_p": self.flip_p, "grayscale_p": self.grayscale_p, "jitter.p": self.jitter.p,
                         "blur.p": self.blur.p, "solarize.p": self.solarize.p, "local.blur_p": self.local.blur_p}
        probabilities.update({f"blur.p_views[{i}]": p for i, p in enumerate(self.blur.p_views)})
        probabilities.update({f"solarize.p_views[{i}]": p for i, p in enumerate(self.solarize.p_views)})
        for key, p in probabilities.items():
            if not 0 <= p <= 1:
                raise UsageError(f"{key} is a probability, got {p}")
        if not 0 <= self.solarize.threshold <= 1:
            raise UsageError(f"solarize.threshold is in [0, 1] pixel space, got {self.solarize.threshold}")
        if self.local.n < 0 or self.local.size < 0:
            raise UsageError(f"local.n and local.size must be >= 0 (size 0 = 96/224 of the view side), got "
                             f"{self.local.n}, {self.local.size}")
        if not 0 < self.blur.sigma[0] <= self.blur.sigma[1]:
            raise UsageError(f"blur.sigma must satisfy 0 < lo <= hi, got {list(self.blur.sigma)}")
        if self.fixation.temperature < 0:
            raise UsageError(f"fixation.temperature must be >= 0 (0 = the arg-max), got {self.fixation.temperature}")
        return self

    @property
    def needs_fixation(self) -> bool:
        return self.foveation.enabled or self.magnification.enabled


def _check_numbers(obj: Any, prefix: str) -> None:
    """Float fields (and float ranges) hold numbers: ``flip_p=oops`` is a user error, not a crash later."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, hint = getattr(obj, f.name), hints[f.name]
        if dataclasses.is_dataclass(value):
            _check_numbers(value, f"{prefix}{f.name}.")
        elif hint is float or typing.get_args(hint)[:1] == (float,):
            items = value if isinstance(value, tuple | list) else [value]
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
                raise UsageError(f"config key '{prefix}{f.name}' wants numbers, got {value!r}")


def _simclr() -> AugmentSpec:
    return AugmentSpec(recipe="simclr")


def _mocov2() -> AugmentSpec:
    return AugmentSpec(recipe="mocov2", crop=CropSpec(scale=(0.2, 1.0)),
                       jitter=JitterSpec(p=0.8, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1))


def _babyvision_tc() -> AugmentSpec:
    return AugmentSpec(recipe="babyvision_tc", crop=CropSpec(scale=(0.2, 1.0)),
                       jitter=JitterSpec(p=0.9, brightness=0.9, contrast=0.9, saturation=0.9, hue=0.5))


def _byol() -> AugmentSpec:
    """BYOL's asymmetric views (SPEC §10): crop 0.08-1, flip, jitter 0.4/0.4/0.2/0.1 p 0.8, grayscale 0.2,
    blur p 1.0 / 0.1 and solarisation p 0 / 0.2 on views 1 / 2; bicubic crops (as VICReg's
    ``augmentations.py``, which trains on this pair)."""
    return AugmentSpec(recipe="byol", crop=CropSpec(interpolation="bicubic"),
                       jitter=JitterSpec(p=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1),
                       blur=BlurSpec(p_views=(1.0, 0.1)), solarize=SolarizeSpec(p_views=(0.0, 0.2)))


def _dino() -> AugmentSpec:
    """DINO's multi-crop (facebookresearch/dino): BYOL's colour ops on two global crops of area 0.4-1 (blur
    p 1.0 / 0.1, solarisation p 0 / 0.2) and 8 local crops of area 0.05-0.4 at 96/224 of the side (blur
    p 0.5); every crop bicubic (``main_dino.py``'s ``RandomResizedCrop(..., interpolation=BICUBIC)``)."""
    return dataclasses.replace(_byol(), recipe="dino", crop=CropSpec(scale=(0.4, 1.0), interpolation="bicubic"),
                               local=LocalSpec(n=8, scale=(0.05, 0.4), blur_p=0.5))


def _mae() -> AugmentSpec:
    """MAE pre-training: random resized crop (0.2-1, bicubic: ``interpolation=3``) and flip only."""
    off = JitterSpec(p=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    return AugmentSpec(recipe="mae", crop=CropSpec(scale=(0.2, 1.0), interpolation="bicubic"), jitter=off,
                       grayscale_p=0.0, blur=BlurSpec(p=0.0))


def _mae_st() -> AugmentSpec:
    """Spatiotemporal MAE pre-training (facebookresearch/mae_st ``main_pretrain.py`` Kinetics arguments, copied by
    eminorhan/mae_st ``pretrain.py``): one random resized crop (area 0.5-1, ratio 3/4-4/3, bilinear) and flip per
    clip, no colour ops, mean 0.45 / std 0.225 on every channel (``util/kinetics.py``)."""
    off = JitterSpec(p=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    return AugmentSpec(recipe="mae_st", crop=CropSpec(scale=(0.5, 1.0)), jitter=off, grayscale_p=0.0,
                       blur=BlurSpec(p=0.0), mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225))


def _eval() -> AugmentSpec:
    off = JitterSpec(p=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    return AugmentSpec(recipe="eval", random_crop=False, flip_p=0.0, jitter=off, grayscale_p=0.0,
                       blur=BlurSpec(p=0.0))


RECIPES = {"simclr": _simclr, "mocov2": _mocov2, "babyvision_tc": _babyvision_tc, "byol": _byol, "dino": _dino,
           "mae": _mae, "mae_st": _mae_st, "eval": _eval}

#: The YAML view recipes, package data of ``headcam.pipelines`` (``pipelines/recipes/*.yaml`` in the source
#: tree): found through :mod:`importlib.resources`, so an installed wheel lists them as an editable install does.
RECIPE_DIR = resources.files("headcam.pipelines") / "recipes"
RECIPE_SUFFIX = ".yaml"


def _shipped_recipes() -> dict[str, Traversable]:
    if not RECIPE_DIR.is_dir():
        return {}
    return {f.name[:-len(RECIPE_SUFFIX)]: f for f in RECIPE_DIR.iterdir() if f.name.endswith(RECIPE_SUFFIX)}


def recipe_names() -> list[str]:
    """The one recipe registry (``headcam-train recipe=``, ``headcam-views --recipe``, ``build_loader``):
    the built-in presets, then the shipped YAML recipes (:data:`RECIPE_DIR`)."""
    return list(RECIPES) + [f for f in sorted(_shipped_recipes()) if f not in RECIPES]


def recipe_spec(name: str) -> AugmentSpec:
    """The recipe called ``name``: a preset, a shipped YAML recipe or the path of a recipe YAML file;
    else a UsageError listing the valid ones."""
    if name in RECIPES:
        return RECIPES[name]()
    shipped = _shipped_recipes()
    if name in shipped:
        return _yaml_recipe(shipped[name], name)
    path = Path(name)
    if name.endswith((".yaml", ".yml")) and path.is_file():
        return _yaml_recipe(path, path.stem)
    raise UsageError(f"unknown recipe '{name}'; valid recipes: {', '.join(recipe_names())} (or a recipe YAML path)")


def _yaml_recipe(path: Traversable, name: str) -> AugmentSpec:
    """A YAML recipe called ``name``: a top-level ``recipe:`` names its base preset (default simclr), the rest
    overrides it."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UsageError(f"cannot parse recipe {path}: {e}") from None
    if not isinstance(data, dict):
        raise UsageError(f"recipe {path} must hold a mapping of augmentation keys")
    base = data.pop("recipe", "simclr")
    if base not in RECIPES:
        raise UsageError(f"{path}: 'recipe' must name a built-in preset ({', '.join(RECIPES)}), got '{base}'")
    spec = merge_into(RECIPES[base](), data, AugmentSpec)
    return dataclasses.replace(spec, recipe=name).validate()


def resolve_spec(recipe: str, overrides: AugmentSpec | dict[str, Any] | list[str] | None = None) -> AugmentSpec:
    """Recipe ``recipe`` <- ``overrides`` (a nested dict or ``key=value`` strings, merged key by key), validated.

    A whole :class:`AugmentSpec` given as ``overrides`` is the resolved spec itself (the trainer's typed
    ``augment`` section) and is only validated.
    """
    if isinstance(overrides, AugmentSpec):
        return overrides.validate()
    data = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    if "recipe" in data:
        raise UsageError("name the recipe itself (recipe=NAME or --recipe NAME), not as an augmentation override")
    return merge_into(recipe_spec(recipe), data, AugmentSpec).validate()


def spec_to_dict(spec: AugmentSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


__all__ = ["AugmentSpec", "BlurSpec", "CropSpec", "FixationSpec", "FoveationSpec", "JITTER_ORDER_CHOICES", "JitterSpec",
           "LocalSpec", "MagnificationSpec", "RECIPES", "RECIPE_DIR", "REFERENCE_SIDE", "SolarizeSpec", "recipe_names",
           "recipe_spec", "resolve_spec", "spec_to_dict"]
