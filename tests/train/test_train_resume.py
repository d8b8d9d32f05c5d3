"""Preemption and crashes with the real CLI in a subprocess: SIGKILL then resume=auto is exact; SIGTERM saves."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from _train_helpers import DEMO, TINY, load, start_cli, wait_for

from headcam.train.cli import main

#: Deterministic kernels for bit-equality. MoCo: its resume must also restore the queue and the key encoder;
#: DINO: the EMA teacher, the centre and the step-scheduled teacher temperature, momentum and weight decay.
COMMON = ["steps=6", *TINY, "ckpt_every=2", "deterministic=true", "optim.lr=0.05", "optim.warmup_steps=2"]
METHOD_ARGS = {
    "moco": ["method=moco", "optim.name=sgd"],
    "dino": ["method=dino", "optim.name=adamw", "optim.weight_decay=0.04", "optim.weight_decay_end=0.4",
             "dino.out_dim=256", "dino.hidden_dim=64", "dino.bottleneck_dim=32", "dino.warmup_teacher_temp_steps=4",
             "dino.teacher_temp=0.07", "optim.clip_grad=3.0", "dino.freeze_last_layer_steps=1"],
    "vicreg": ["method=vicreg", "optim.name=lars", "vicreg.expander=[64,64]"],
}
#: The state that must come back beside the weights (the expander's BatchNorm running mean for VICReg).
STATE = {"moco": "queue.keys", "dino": "loss.center", "vicreg": "expander.1.running_mean"}


@pytest.mark.parametrize(("method", "workers"), [("moco", 0), ("dino", 0), ("vicreg", 0),
                                                 pytest.param("moco", 2, marks=pytest.mark.slow)])
def test_sigkill_then_resume_gives_the_same_weights(method, workers, tiny_dataset, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    args = [*COMMON, *METHOD_ARGS[method]]
    if workers:
        args += [f"workers={workers}", "batch_size=4"]  # 2 workers: 2 slots of 13 samples
    assert main([DEMO, f"data={tiny_dataset}", f"out={straight}", *args]) == 0

    proc = start_cli([DEMO, f"data={tiny_dataset}", f"out={killed}", *args])
    wait_for(lambda: (killed / "checkpoint.pt").exists(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert load(killed)["step"] < 6

    assert main([DEMO, f"data={tiny_dataset}", f"out={killed}", *args, "resume=auto"]) == 0
    a, b = load(straight), load(killed)
    assert a["step"] == b["step"] == 6 and a["data"] == b["data"]
    for name, tensor in a["model"].items():  # trunk, heads, key encoder / teacher, queue / centre
        assert torch.equal(tensor, b["model"][name]), name
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]  # lr and scheduled weight decay
    state = STATE[method]
    assert torch.equal(a["model"][state], b["model"][state]) and a["model"][state].abs().sum() > 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl_c"])
def test_preemption_finishes_the_step_saves_and_exits_3(tiny_dataset, tmp_path, sig):
    run = tmp_path / "run"
    proc = start_cli([DEMO, f"data={tiny_dataset}", f"out={run}", "method=tc", "steps=200", *TINY])
    metrics = run / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and metrics.read_text().count("\n") >= 1, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert "PREEMPTED" in out
    last_logged = json.loads(metrics.read_text().splitlines()[-1])["step"]
    assert 1 <= load(run)["step"] == last_logged < 200
