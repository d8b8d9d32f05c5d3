"""The online kNN monitor: logged at step 0, every N steps and at the end; invisible to training (the same
weights as an unmonitored run); the same values after SIGKILL + resume as in an unbroken run."""

from __future__ import annotations

import json
import math
import signal

import pytest
import torch
from _train_helpers import DEMO, TINY, load, start_cli, wait_for

from headcam.train.cli import main

ARGS = ["method=simclr", "steps=6", *TINY, "ckpt_every=2", "deterministic=true", "optim.lr=0.01"]


def monitor_rows(run) -> dict[int, float]:
    """The last logged knn_top1 per step (a resumed run may repeat the steps after its checkpoint)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["knn_top1"] for r in rows if "knn_top1" in r}


def test_monitor_is_logged_and_does_not_change_training(tiny_dataset, tmp_path, capsys):
    watched, plain = tmp_path / "watched", tmp_path / "plain"
    monitor = [f"monitor.data={tiny_dataset}", "monitor.every=4", "monitor.max_bank=16", "monitor.max_query=8"]
    assert main([DEMO, f"data={tiny_dataset}", f"out={watched}", *ARGS, *monitor]) == 0
    assert "kNN monitor: 16 bank (train) + 8 query (val) images" in capsys.readouterr().err
    values = monitor_rows(watched)
    assert sorted(values) == [0, 4, 6] and all(0 <= v <= 100 for v in values.values())
    assert main([DEMO, f"data={tiny_dataset}", f"out={plain}", *ARGS]) == 0
    a, b = load(watched), load(plain)
    for name, tensor in a["model"].items():  # the monitor drew nothing from the training RNG streams
        assert torch.equal(tensor, b["model"][name]), name


def test_sigkill_and_resume_log_the_same_monitor_values(tiny_dataset, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    args = [*ARGS, f"monitor.data={tiny_dataset}", "monitor.every=2", "monitor.max_bank=16", "monitor.max_query=6"]
    assert main([DEMO, f"data={tiny_dataset}", f"out={straight}", *args]) == 0
    proc = start_cli([DEMO, f"data={tiny_dataset}", f"out={killed}", *args])
    wait_for(lambda: (killed / "checkpoint.pt").exists(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert main([DEMO, f"data={tiny_dataset}", f"out={killed}", *args]) == 0
    want, got = monitor_rows(straight), monitor_rows(killed)
    assert sorted(want) == [0, 2, 4, 6] and got == want
    assert all(math.isfinite(v) for v in want.values())


@pytest.mark.parametrize(("extra", "says"), [
    (["monitor.every=5"], "needs both monitor.data=DIR and monitor.every=N"),
    (["monitor.data={ds}", "monitor.every=2", "monitor.query_split=test"], "has no split 'test'"),
    (["monitor.data={ds}", "monitor.every=2", "monitor.k=0"], "must be >= 1"),
])
def test_monitor_mistakes_are_one_line(extra, says, tiny_dataset, tmp_path, capsys):
    extra = [e.format(ds=tiny_dataset) for e in extra]
    assert main([DEMO, f"data={tiny_dataset}", f"out={tmp_path}", "steps=1", *TINY, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]
