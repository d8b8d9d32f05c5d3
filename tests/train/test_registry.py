"""The method registry is the one place a method is named: config, validation, --help and checkpoints read it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
from torch import nn

from headcam.console import UsageError
from headcam.train import registry
from headcam.train.cli import main
from headcam.train.config import TrainConfig, load_train_config
from headcam.train.methods.base import IncompleteMethod, Method, MethodContext, check_complete


def test_every_entry_is_complete_and_its_class_loads():
    for e in registry.ENTRIES:
        cls = e.load()
        assert issubclass(cls, Method), e.name
        assert e.recipe and e.views.min_views <= e.views.views
        if e.section:
            assert dataclasses.is_dataclass(e.config) and callable(e.config().check)


def test_train_config_has_one_section_per_registered_section():
    fields = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    for section, cls in registry.sections().items():
        assert fields[section] is cls
        assert isinstance(getattr(TrainConfig(), section), cls)


def test_help_lists_every_method_from_the_registry(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in registry.names():
        assert f"  {name} " in out


def test_an_unknown_method_is_an_error_with_near_matches_never_a_fallback():
    with pytest.raises(UsageError, match=r"method='vicrge' is not one of: .*did you mean 'vicreg'"):
        load_train_config(None, ["method=vicrge", "data=x"])
    with pytest.raises(UsageError, match="not one of"):
        registry.entry("swav")


@pytest.mark.parametrize(("args", "message"), [
    (["method=vicreg", "n_views=3"], "method vicreg takes exactly 2 views per image, got n_views=3"),
    (["method=tc", "n_views=2"], "method tc takes exactly 1 view per image"),
    (["method=dino", "n_views=1"], "method dino takes at least 2 views per image"),
    (["method=mae"], "method mae needs a ViT arch"),
    (["method=vicreg", "augment.local.n=2"], "only simclr and dino do"),
    (["method=vicreg", "vicreg.expander=[]"], "vicreg.expander must list positive widths"),
    (["method=moco", "moco.m=1.5"], "moco.m must be in [0, 1)"),
])
def test_view_rules_and_section_checks_come_from_the_registry(args, message):
    with pytest.raises(UsageError) as err:
        load_train_config(None, ["data=x", "device=cpu", *args])
    assert message in str(err.value) and "\n" not in str(err.value)


class _NoTrunk(Method):
    def __init__(self):
        super().__init__()
        self.classifier = None


class _NoClassifier(Method):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(2, 2)


def test_an_incomplete_method_fails_at_construction_with_one_line():
    with pytest.raises(IncompleteMethod, match="sets no 'trunk'"):
        check_complete(_NoTrunk(), "simclr")
    with pytest.raises(IncompleteMethod, match="sets no 'classifier'"):
        check_complete(_NoClassifier(), "simclr")
    headless = _NoClassifier()
    headless.classifier = None
    check_complete(headless, "simclr")  # complete for a method whose checkpoint keeps no head
    with pytest.raises(IncompleteMethod, match="stores a head"):  # tc's entry says its checkpoint keeps the head
        check_complete(headless, "tc")


def test_vicreg_builds_through_the_registry_with_its_section():
    from headcam.train.methods.base import build_method

    cfg = load_train_config(None, ["method=vicreg", "data=x", "device=cpu", "arch=resnet18", "small_stem=true",
                                   "vicreg.expander=[32,16]", "vicreg.cov_weight=2"])
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(12, 8))
    model = build_method(cfg, trunk, 8, n_classes=None, world=1)
    assert model.trunk is trunk and model.classifier is None and model.loss.weights == (25.0, 25.0, 2.0)
    assert [m.out_features for m in model.expander if isinstance(m, nn.Linear)] == [32, 16]
    assert model.expander[-1].bias is None  # the reference's last layer is bias-free
    loss = model([torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)], torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert torch.isfinite(loss) and trunk[1].weight.grad is not None


def test_method_context_is_what_methods_get():
    names = {f.name for f in dataclasses.fields(MethodContext)}
    assert {"n_classes", "world", "batch_size", "global_views", "new_trunk"} <= names


def _cli_in_fresh_python(*args: str) -> str:
    code = ("import sys\nfrom headcam.train.cli import main\ntry:\n    main(list(sys.argv[1:]))\n"
            "except SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'timm', 'nvidia.dali', 'torchvision') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("args", [["--help"], [], ["configs/demo.yaml", "data=x", "optim.lrr=1"],
                                  ["configs/demo.yaml", "data=x", "method=swav"],
                                  ["configs/demo.yaml", "data=x", "arch=vit_small_patch16", "size=8"]])
def test_help_and_usage_errors_import_no_torch(args):
    """Start-up: --help and config mistakes answer before torch, timm or DALI load (seconds each)."""
    assert _cli_in_fresh_python(*args) == "[]"


@pytest.mark.parametrize(("key", "hint"), [("optim.lrr=1", "did you mean 'optim.lr'?"),
                                           ("dino.outdim=3", "did you mean 'dino.out_dim'?"),
                                           ("optim.zzz=1", "keys of section 'optim': name, lr,")])
def test_a_mistyped_key_names_its_near_matches_not_every_key(key, hint):
    with pytest.raises(UsageError) as err:
        load_train_config(None, ["data=x", key])
    message = str(err.value)
    assert hint in message and len(message) < 400 and "augment.fixation" not in message


def test_no_arguments_asks_for_the_config_file_only(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("headcam-train: error: give a config file") and "key=value" not in err.split("(")[0]
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(("momentum", "says"), [(0.9995, True), (0.996, False)])
def test_dino_explains_its_flat_monitor_curve_once(momentum, says):
    from headcam.train.methods.dino import DINO
    from headcam.train.registry import DinoConfig

    trunk = nn.Sequential(nn.Flatten(), nn.Linear(12, 6))
    ctx = MethodContext(arch="resnet18", small_stem=True, n_classes=None, world=1, batch_size=4, global_views=2,
                        seed=0, new_trunk=lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 6)))
    model = DINO(trunk, 6, DinoConfig(out_dim=16, hidden_dim=8, bottleneck_dim=4, momentum=momentum), ctx)
    note = model.monitor_note()
    assert (note is not None and "teacher" in note and "flat" in note) == says
