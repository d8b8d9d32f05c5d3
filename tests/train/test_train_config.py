"""The typed run config: the augmentation is a typed section merged key by key onto the recipe's preset,
one recipe registry, every mistake a one-line error before any model is built."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from _train_helpers import DEMO, TINY

from headcam.config import to_dict
from headcam.console import UsageError
from headcam.pipelines.spec import AugmentSpec, recipe_names, recipe_spec
from headcam.train import cli
from headcam.train.config import TrainConfig, load_train_config, resolve


def test_yaml_section_and_command_line_key_merge_instead_of_replacing(tmp_path):
    """The bug this fixes: a YAML turning foveation on plus augment.blur.p=0.0 used to replace the whole
    augment dict, silently switching foveation off."""
    yml = tmp_path / "fov.yaml"
    yml.write_text("method: simclr\naugment:\n  foveation: {enabled: true, area: [0.05, 0.3]}\n  grayscale_p: 0.0\n")
    cfg = load_train_config(yml, ["augment.blur.p=0.0", "data=x"])
    assert cfg.augment.foveation.enabled and cfg.augment.foveation.area == (0.05, 0.3)
    assert cfg.augment.blur.p == 0.0 and cfg.augment.grayscale_p == 0.0
    assert cfg.augment.jitter.p == 0.8 and cfg.augment.crop.scale == (0.08, 1.0)  # the rest is simclr's preset


def test_the_base_is_the_recipe_preset_of_the_method_or_the_named_recipe():
    tc = load_train_config(None, ["method=tc", "data=x", "augment.flip_p=0"])
    assert tc.recipe == "babyvision_tc" and tc.augment == AugmentSpec(**{**vars(recipe_spec("babyvision_tc")),
                                                                         "flip_p": 0.0})
    moco = load_train_config(None, ["method=moco", "data=x", "recipe=simclr"])
    assert moco.augment == recipe_spec("simclr")


def test_yaml_recipes_of_the_one_registry_work_in_train(tmp_path):
    assert "simclr_foveation" in recipe_names() and "babyvision_tc" in recipe_names()
    cfg = load_train_config(None, ["data=x", "recipe=simclr_foveation", "augment.fixation.temperature=0.5"])
    assert cfg.augment.recipe == "simclr_foveation" and cfg.augment.foveation.enabled
    assert cfg.augment.fixation.mode == "saliency" and cfg.augment.fixation.temperature == 0.5
    own = tmp_path / "mine.yaml"
    own.write_text("recipe: mocov2\nflip_p: 0.0\n")
    cfg = load_train_config(None, ["data=x", f"recipe={own}"])
    assert cfg.augment.recipe == "mine" and cfg.augment.flip_p == 0.0 and cfg.augment.crop.scale == (0.2, 1.0)


@pytest.mark.parametrize("args, says", [
    (["augment.blur.pp=0"], "unknown config key 'augment.blur.pp' (did you mean 'augment.blur.p'?)"),
    (["augment.flip_p=often"], "config key 'augment.flip_p' wants a number"),
    (["augment.crop.scale=[0.5, 0.1]"], "crop.scale must satisfy"),
    (["augment.blur.p=2"], "blur.p is a probability"),
    (["augment=configs/augment/simclr.yaml"], "config key 'augment' is a section"),
    (["augment.recipe=mocov2"], "name the recipe with recipe=NAME"),
    (["recipe=nope"], "unknown recipe 'nope'; valid recipes: simclr, mocov2"),
    (["method=dinosaur"], "method='dinosaur' is not one of"),
    (["arch=vit_base_patch14", "size=10"], "vit_base_patch14 cuts views into 14 px patches; a 10 px view is smaller"),
    (["arch=resnet19"], "arch='resnet19' is not one of"),
    (["arch=mobilenet_v2", "zero_init_residual=true"], "zero_init_residual is a ResNet switch"),
    (["optim.warmup_form=late"], "optim.warmup_form='late' is not one of: ahead, zero, linspace"),
])
def test_mistakes_are_usage_errors_at_load_time(args, says):
    with pytest.raises(UsageError) as e:
        load_train_config(None, ["data=x", *args])
    assert says in str(e.value) and "\n" not in str(e.value)


def test_cli_rejects_before_building_anything_and_prints_one_line(tmp_path, capsys, monkeypatch):
    built = []
    monkeypatch.setattr("headcam.train.trainer.build_backbone", lambda *a, **k: built.append(a))
    code = cli.main([DEMO, f"data={tmp_path}", f"out={tmp_path / 'run'}", "augment.jitter.strength=1"])
    err = capsys.readouterr()
    assert code == 2 and not built and err.out == ""  # nothing printed as "the config" before the error
    assert err.err.count("\n") == 1 and "augment.jitter" in err.err


def test_cuda_only_switches_show_off_without_cuda():
    cfg = load_train_config(None, ["data=x", "device=cpu", "precision=fp16"])
    assert cfg.precision == "fp32" and cfg.channels_last is False
    auto = load_train_config(None, ["data=x"])
    assert (auto.precision == "bf16") is auto.channels_last is torch.cuda.is_available()


def test_saved_config_reloads_to_the_same_resolved_config(tmp_path):
    cfg = load_train_config(DEMO, ["data=x", "recipe=simclr_foveation", "augment.blur.p=0.3"])
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    assert load_train_config(saved) == cfg


def test_an_unresolved_config_is_refused_by_the_trainer():
    with pytest.raises(ValueError, match="unresolved"):
        from headcam.train.config import validate

        validate(TrainConfig(method="tc", data="x"))
    assert resolve(TrainConfig(method="tc", data="x")).augment.recipe == "babyvision_tc"


def test_foveation_recipe_trains_with_fixations_from_saliency(media_dataset, tmp_path):
    """recipe=simclr_foveation end to end in headcam-train (saliency fixations, torch backend)."""
    run = tmp_path / "fov"
    assert cli.main([DEMO, f"data={media_dataset}", f"out={run}", "steps=1", *TINY, "recipe=simclr_foveation",
                     "augment.blur.p=0.0"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["recipe"] == "simclr_foveation" and saved["augment"]["foveation"]["enabled"] is True
    assert saved["augment"]["fixation"]["mode"] == "saliency" and saved["augment"]["blur"]["p"] == 0.0


@pytest.mark.parametrize("recipe_file", sorted(p.name for p in (Path(DEMO).parent).glob("*.yaml")))
def test_every_shipped_config_resolves(recipe_file):
    cfg = load_train_config(Path(DEMO).parent / recipe_file, ["data=x", "device=cpu"])
    assert cfg.recipe and cfg.augment.recipe == Path(cfg.recipe).stem
