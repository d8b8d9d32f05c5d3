"""What every CLI shares: one-line user errors, resumable full-disk errors, typed config overrides."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

import pytest

from headcam.config import load_config
from headcam.console import ArgumentParser, UsageError, run_main


def test_wrong_flag_is_one_line_exit_2(capsys):
    parser = ArgumentParser(prog="tool")
    sub = parser.add_subparsers(dest="cmd", required=True).add_parser("go")
    sub.add_argument("--n", type=int, required=True)
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["go", "--bogus"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("tool go: error:") and "--help" in err


def test_run_main_turns_user_errors_and_full_disks_into_one_line(capsys):
    def usage(argv):
        raise UsageError("no such dataset: x")

    def full(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/x.tar")

    assert run_main("tool", usage, []) == 2
    assert capsys.readouterr().err == "tool: error: no such dataset: x\n"
    assert run_main("tool", full, []) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/data/out/x.tar" in err and "run the same command again" in err

    def bug(argv):
        raise OSError(errno.EIO, "I/O error")

    with pytest.raises(OSError):  # anything else is a bug or a broken machine: keep the traceback
        run_main("tool", bug, [])


@dataclass
class Optim:
    lr: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class Cfg:
    name: str = "x"
    steps: int = 10
    optim: Optim = field(default_factory=Optim)


def test_overrides_are_typed_and_checked(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("steps: 20\noptim:\n  lr: 5e-4\n")  # YAML reads 5e-4 as a string
    cfg = load_config(Cfg, yml, ["optim.betas=[0.5, 0.6]", "name=run1"])
    assert cfg.steps == 20 and cfg.optim.lr == 5e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == [0.5, 0.6] and cfg.name == "run1"
    with pytest.raises(UsageError, match=r"unknown config key 'optim.rl' \(did you mean 'optim.lr'\?\)"):
        load_config(Cfg, None, ["optim.rl=1"])
    with pytest.raises(UsageError, match="wants a number"):
        load_config(Cfg, None, ["optim.lr=oops"])
    with pytest.raises(UsageError, match="wants int"):
        load_config(Cfg, None, ["steps=many"])
    with pytest.raises(UsageError, match="config file not found"):
        load_config(Cfg, tmp_path / "missing.yaml")
