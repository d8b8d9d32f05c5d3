"""Does self-supervised training learn anything here? SimCLR and BYOL against their own step-0 network.

Why: the throughput benchmarks say what a step costs, not whether steps help. This one trains
SimCLR and BYOL through the real tools for a fixed CPU budget and decodes the frozen trunk with
``headcam-eval knn`` and ``headcam-eval linear --probe logreg``, next to the very same network
at initialisation and raw pixels, all measured in the same run. Goal: trained beats init by
>= 5 points top-1 on both readouts.

Data: scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``: 1,797 real
8x8 scans, 10 classes), the largest real labelled image set installed here; nothing is
downloaded. Every 4th image of each class is held out (445 ``val``), the other 1,352 form
``train``; the images go through ``headcam-ingest images --format folder`` (PNG, upscaled to
32 px). The networks train on the ``train`` images (labels unused). Two readouts score the
``val`` images: with all 1,352 labelled ``train`` images, and with 10 labels per class (a seeded
100-image subset, ingested as its own dataset). Digits are easy: with all labels even raw pixels
and the random network reach ~95-98 %, so no method can gain 5 points there; the 10-label
readout is the headline (the label-efficiency question SimCLR's paper asks with 1 % labels).

How: ResNet-18 (ImageNet stem; at 32 px a 3x3 stride-1 stem costs 16x more per image, too
much for 2 cores) trained by ``headcam-train`` from a YAML the bench writes (Adam, batch 128,
the simclr recipe with crop scale 0.3-1 and no flip: a mirrored 2 or 5 is another glyph), with
the online kNN monitor on the 10-label set every few steps (the learning curve, step 0
included, in each run's ``metrics.jsonl`` and in the JSON). The step-0 trunk is taken inside
the trainer (its ``build_backbone`` wrapped for one call, right after its seeding), checked to
equal ``torch.manual_seed(seed); build_backbone(arch, small_stem)``, and saved as a headcam
checkpoint for ``headcam-eval``.

Budget (full mode): 150 steps of batch 128 per method (19,200 images, ~14 epochs of the 1,352;
~40-60 img/s on 2 cores), about 17 minutes in all (measured: 1,038 s with other work on the
machine; training ~8 min a method, ingest and evaluation ~2 min). At 60 steps SimCLR's linear
probe had not yet moved (-0.5 points); at 150 it is +5.2. ``--short``: 2 steps of batch 32, one readout (10
labels): a smoke test of the whole path, not expected to reach the goal.

    .venv/bin/python bench/learn.py [--short] [--json PATH] [--workdir DIR] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
METHODS = ("simclr", "byol")
SIZE = 32
SEED = 0
VAL_EVERY = 4  # every 4th image of a class is held out
FEW_PER_CLASS = 10

#: The training config the bench writes; ``steps`` and ``batch_size`` are set per mode.
CONFIG: dict[str, Any] = {
    "method": "simclr", "arch": "resnet18", "small_stem": False, "size": SIZE, "seed": SEED,
    "workers": 1, "shuffle_buffer": 1352,
    "optim": {"name": "adam", "lr": 2.0e-3, "warmup_steps": 5, "weight_decay": 1.0e-6, "schedule": "cosine"},
    "simclr": {"T": 0.2, "proj_hidden": 512, "proj_dim": 128},
    "byol": {"proj_hidden": 512, "proj_dim": 128, "pred_hidden": 512, "momentum": 0.99},
    "ckpt_every": 100_000,
}
#: The simclr recipe, changed for 8x8 digits shown at 32 px.
AUGMENT = ["augment.flip_p=0", "augment.crop.scale=[0.3,1.0]"]


def write_digits(src: Path, few: Path) -> dict[str, int]:
    """``src/{train,val}/<digit>/<i>.png`` (all), ``few/`` = 10 train images per class + the same val."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(SEED)
    seen: dict[int, list[tuple[str, np.ndarray]]] = {}
    counts = {"train": 0, "val": 0}
    for img, y in zip(digits.images, digits.target, strict=True):
        items = seen.setdefault(int(y), [])
        split = "val" if len(items) % VAL_EVERY == VAL_EVERY - 1 else "train"
        name = f"{len(items):04d}.png"
        items.append((split, img))
        pixels = Image.fromarray(np.round(img * (255 / 16)).astype(np.uint8), "L")  # values 0..16
        for root in (src, few) if split == "val" else (src,):
            (root / split / str(y)).mkdir(parents=True, exist_ok=True)
            pixels.save(root / split / str(y) / name)
        counts[split] += 1
    for y, items in seen.items():
        train = [i for i, (split, _) in enumerate(items) if split == "train"]
        for i in rng.choice(train, FEW_PER_CLASS, replace=False):
            (few / "train" / str(y)).mkdir(parents=True, exist_ok=True)
            (few / "train" / str(y) / f"{i:04d}.png").hardlink_to(src / "train" / str(y) / f"{i:04d}.png")
    return counts


def run(cmd: list[str], log: Path) -> float:
    """Run one CLI, output to ``log``; seconds taken. A failure ends the bench with the log's tail."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"{' '.join(cmd)} exited {code}; the end of {log}:\n{tail}")
    return time.perf_counter() - t0


def ingest(src: Path, out: Path, work: Path) -> None:
    run([str(BIN / "headcam-ingest"), "images", "--format", "folder", str(src), "--out", str(out),
         "--size", str(SIZE), "--upscale", "--saliency", "none", "--shard-size", "256", "--seed", str(SEED)],
        work / f"ingest_{out.name}.log")


class _Captured(Exception):
    pass


def init_checkpoint(config: Path, overrides: list[str], out: Path) -> dict[str, Any]:
    """The trunk ``headcam-train CONFIG OVERRIDES`` starts from, taken inside the trainer just after its
    seeding (its ``build_backbone`` wrapped for one call, the run then stopped), saved to ``out`` as a
    headcam checkpoint (step 0), and compared with ``manual_seed(seed); build_backbone(arch, small_stem)``."""
    from headcam.config import to_dict
    from headcam.train import checkpoint, trainer
    from headcam.train.backbones import build_backbone
    from headcam.train.config import load_train_config

    cfg = load_train_config(config, overrides)
    got: dict[str, Any] = {}
    real = trainer.build_backbone

    def capture(*args: Any, **kwargs: Any) -> Any:
        trunk, dim = real(*args, **kwargs)
        got.update(state={k: v.detach().clone() for k, v in trunk.state_dict().items()}, dim=dim)
        raise _Captured

    trainer.build_backbone = capture
    try:
        trainer.train(cfg)
    except _Captured:
        pass
    finally:
        trainer.build_backbone = real
    torch.manual_seed(cfg.seed)
    trunk, _ = build_backbone(cfg.arch, cfg.small_stem)
    mine = trunk.state_dict()
    same = mine.keys() == got["state"].keys() and all(torch.equal(mine[k], got["state"][k]) for k in mine)
    checkpoint.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "arch": cfg.arch,
                     "small_stem": cfg.small_stem, "feat_dim": got["dim"], "backbone": got["state"],
                     "method": cfg.method, "config": to_dict(cfg), "step": 0, "n_classes": None, "head": None}, out)
    return {"path": str(out), "equals_manual_seed_build_backbone": same}


def train(method: str, config: Path, data: Path, monitor: Path, every: int, out: Path, work: Path) -> dict[str, Any]:
    seconds = run([str(BIN / "headcam-train"), str(config), f"method={method}", f"data={data}", f"out={out}",
                   f"monitor.data={monitor}", f"monitor.every={every}", *AUGMENT], work / f"train_{method}.log")
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"seconds": round(seconds, 1),
            "knn_curve": {r["step"]: round(r["knn_top1"], 2) for r in lines if "knn_top1" in r},
            "loss_curve": {r["step"]: round(r["loss"], 4) for r in lines if "loss" in r},
            "img_per_s": round(float(np.mean([r["img_per_s"] for r in lines if "img_per_s" in r])), 1),
            "monitor_seconds": round(sum(r.get("knn_seconds", 0.0) for r in lines), 1)}


def evaluate(readout: str, models: dict[str, str], data: Path, work: Path, tag: str) -> dict[str, float]:
    """top-1 % of each model (name -> --model spec) with one ``headcam-eval`` call."""
    out = work / f"eval_{readout}_{tag}"
    cmd = [str(BIN / "headcam-eval"), readout]
    for name, spec in models.items():
        cmd += ["--model", spec, "--name", name]
    cmd += ["--data", str(data), "--size", str(SIZE), "--out", str(out), "--seed", str(SEED),
            "--cache-dir", str(work / "features")]
    if readout == "linear":
        cmd += ["--probe", "logreg"]
    run(cmd, work / f"eval_{readout}_{tag}.log")
    report = json.loads((out / "report.json").read_text())
    return {r["model"]: r["top1"] for r in report["results"]}


def table(result: dict[str, Any]) -> str:
    head = (f"{'readout':<10} {'method':<7} {'steps':>5} {'sec':>6} | {'kNN trained/init/pixels':>24} {'Δinit':>6} "
            f"{'Δpix':>6} | {'linear trained/init/pixels':>26} {'Δinit':>6} {'Δpix':>6}")
    lines = [head, "-" * len(head)]
    for name, r in result["readouts"].items():
        for m in METHODS:
            k, lin = r["knn"], r["linear"]
            lines.append(
                f"{name:<10} {m:<7} {result['steps']:>5} {result['train'][m]['seconds']:>6.0f} | "
                f"{k[m]:>8.1f} /{k['init']:>6.1f} /{k['pixels']:>6.1f} {k[m] - k['init']:>+6.1f} "
                f"{k[m] - k['pixels']:>+6.1f} | {lin[m]:>10.1f} /{lin['init']:>6.1f} /{lin['pixels']:>6.1f} "
                f"{lin[m] - lin['init']:>+6.1f} {lin[m] - lin['pixels']:>+6.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Budget: full mode trains each method 150 steps of batch 128 "
                                            "(about 17 min in all on 2 cores); --short 2 steps of batch 32.")
    parser.add_argument("--short", action="store_true", help="smoke test: 2 steps, one readout")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--workdir", type=Path, help="keep datasets, runs and reports here (default: a temp dir)")
    parser.add_argument("--steps", type=int, help="training steps per method (default: 150; --short 2)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HEADCAM_QUIET", "1")
    steps = args.steps or (2 if args.short else 150)
    batch = 32 if args.short else 128
    every = steps if args.short else 20
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        counts = write_digits(work / "src", work / "src_few")
        data, few = work / "digits", work / "digits_few"
        for src, out in ((work / "src", data), (work / "src_few", few)):
            ingest(src, out, work)
        config = work / "learn.yaml"
        config.write_text(yaml.safe_dump({**CONFIG, "steps": steps, "batch_size": batch, "log_every": every}))
        init = init_checkpoint(config, [f"data={data}", f"out={work / 'init_run'}", *AUGMENT], work / "init.pt")
        print(f"step-0 trunk from inside the trainer == manual_seed({SEED}) + build_backbone: "
              f"{init['equals_manual_seed_build_backbone']}", flush=True)
        trained = {}
        for m in METHODS:
            trained[m] = train(m, config, data, few, every, work / m, work)
            print(f"{m}: {steps} steps in {trained[m]['seconds']:.0f} s (trainer-logged "
                  f"{trained[m]['img_per_s']} img/s, mean of its windows), "
                  f"kNN monitor (10 labels/class) by step {trained[m]['knn_curve']}", flush=True)
        models = {"init": str(work / "init.pt"), **{m: str(work / m / "checkpoint.pt") for m in METHODS},
                  "pixels": "pixels"}
        readouts = {"10/class": few} if args.short else {"10/class": few, "all": data}
        result: dict[str, Any] = {
            "data": f"sklearn load_digits: {counts['train']} train / {counts['val']} val, 10 classes, "
                    f"8x8 upscaled to {SIZE} px", "few_labels_per_class": FEW_PER_CLASS, "steps": steps,
            "batch_size": batch, "arch": CONFIG["arch"], "small_stem": CONFIG["small_stem"],
            "cpu_threads": torch.get_num_threads(), "load_average_1min_at_start": os.getloadavg()[0],
            "init": init, "train": trained, "readouts": {}}
        for name, ds in readouts.items():
            tag = name.replace("/", "_")
            result["readouts"][name] = {r: evaluate(r, models, ds, work, tag) for r in ("knn", "linear")}
        goal = {m: {r: result["readouts"]["10/class"][r][m] - result["readouts"]["10/class"][r]["init"]
                    for r in ("knn", "linear")} for m in METHODS}
        result["gain_over_init_10_per_class"] = goal
        result["goal_met"] = all(v >= 5.0 for g in goal.values() for v in g.values())
        result["seconds_total"] = round(time.perf_counter() - t_start, 1)
        print(table(result))
        print(f"goal (trained - init >= 5 points, kNN and linear, 10 labels/class): "
              f"{'met' if result['goal_met'] else 'NOT met'}; total {result['seconds_total']:.0f} s")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
