"""Does self-supervised training learn anything here? Every registered method against its own step-0 network.

Why: the throughput benchmarks say what a step costs, not whether steps help. This one trains every
method of the registry (``headcam.train.registry.names()``: a method added there is benchmarked
here without an edit) through the real tools for a fixed CPU budget and decodes the frozen trunk
with ``headcam-eval knn`` and ``headcam-eval linear --probe logreg``, next to the very same network
at initialisation and raw pixels, all measured in the same run. Goal: trained beats its step-0
network by >= 5 points top-1 on both readouts with 10 labels per class.

Data: scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``: 1,797 real
8x8 scans, 10 classes), the largest real labelled image set installed here; nothing is
downloaded. Every 4th image of each class is held out (445 ``val``), the other 1,352 form
``train``; the images go through ``headcam-ingest images --format folder`` (PNG, upscaled to
32 px). The networks train on the ``train`` images; their labels are unused except by a method
whose registry entry ``needs_labels`` (``tc``): it trains on the digit labels, i.e. it is
supervised, and the output says so. A method whose view rule is ``temporal`` (``moco_temporal``)
is skipped with the reason printed: the digits are single images without clips, so each image
would be its own clip, its partner the image itself, and the run would be MoCo's again. Two
readouts score the ``val`` images: with all 1,352 labelled ``train`` images, and with 10 labels
per class (a seeded 100-image subset, ingested as its own dataset). Digits are easy: with all
labels even raw pixels and a random network reach ~95-98 %, so no method can gain 5 points
there; the 10-label readout is the headline (the label-efficiency question SimCLR's paper asks
with 1 % labels).

How: CNN methods train a ResNet-18 (ImageNet stem; at 32 px a 3x3 stride-1 stem costs 16x more
per image, too much for 2 cores); a method whose entry is ``vit_only`` (MAE), and DINO, train
``vit_mini_patch4`` (4-px patches, width 128, depth 6, 1.2 M parameters: at 32 px 64 tokens;
ViT-Tiny's width 192 x depth 12 measured ~6x slower per step here). Runs are ``headcam-train``
from a YAML the bench writes (:data:`CONFIG`: Adam, the method's own recipe with crop scale 0.3-1
and no flip: a mirrored 2 or 5 is another glyph) plus the method's row of :data:`PLAN` (arch,
steps, batch and its own settings, each with the reason), with the online kNN monitor on the
10-label set a few times per run (the learning curve, step 0 included, in each run's
``metrics.jsonl`` and in the JSON). Each method's step-0 trunk is taken inside the trainer once the
method is built (its ``build_method`` wrapped for one call: MAE re-initialises its encoder there),
checked to equal ``torch.manual_seed(seed)`` + ``build_backbone`` + ``build_method`` done outside it,
and saved as a headcam checkpoint for ``headcam-eval``; methods whose step-0 trunks are identical
(every CNN method; DINO's and MAE's ViT initialisations differ) share one.

Settings for 32-px digits (issue 17; the methods' maths and default configs are untouched, only the bench's
``key=value`` settings change): a step-0 ResNet-18 is a strong random-feature baseline here (74 kNN, 87 logreg
with 10 labels per class), and a method must first win back what its first steps break. The levers, each
measured and said in its :data:`PLAN` row: views fit for a white digit on black (:data:`DIGIT_VIEWS`: no
solarisation, no blur, crops of area 0.5-1) for the methods whose recipe has them (SimCLR, BYOL, MoCo, VICReg, DINO);
Adam 5e-4 for BYOL (2e-3 wrecks the random trunk in 20 steps); an EMA target with a time constant of ~20 steps
for BYOL (tau 0.95; MoCo collapsed at m 0.95 and keeps 0.99), not the references' thousands; VICReg's expander
at the reference's width per sample (d / batch = 4). What each reached, which levers measured worse and were
dropped (MAE's raw pixel targets, MoCo's faster key encoder, DINO's teacher temperature and rate), and why the
others fall short (DINO: its teacher's outputs hardly differ between digits, so centring leaves nothing), is in
``bench/RESULTS.md`` ``## learn``.

Budget (full mode): the steps in :data:`PLAN`, about an hour in all on 2 idle cores (figures and
the measured time in ``bench/RESULTS.md``). ``--short``: 2 steps of batch 32 per method, no
monitor, one readout (10 labels): a smoke test of every method's whole path (~5 CPU-minutes;
1,147 s wall on a machine loaded 5x), not expected to reach the goal.

    .venv/bin/python bench/learn.py [--short] [--json PATH] [--workdir DIR] [--methods a,b] [--steps N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from headcam.console import UsageError
from headcam.train import registry

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SIZE = 32
SEED = 0
VAL_EVERY = 4  # every 4th image of a class is held out
FEW_PER_CLASS = 10
CNN, VIT = "resnet18", "vit_mini_patch4"

#: The training config every run starts from; the method's :data:`PLAN` row and the mode set the rest.
CONFIG: dict[str, Any] = {
    "method": "simclr", "arch": CNN, "small_stem": False, "size": SIZE, "seed": SEED,
    "workers": 1, "shuffle_buffer": 1352,
    "optim": {"name": "adam", "lr": 2.0e-3, "warmup_steps": 5, "weight_decay": 1.0e-6, "schedule": "cosine"},
    "ckpt_every": 100_000,
}
#: Every method's recipe, changed for 8x8 digits shown at 32 px.
AUGMENT = ("augment.flip_p=0", "augment.crop.scale=[0.3,1.0]")
#: Views for a white digit on black (measured on BYOL, 60-step probes in ``bench/RESULTS.md``): no solarisation
#: (it turns the strokes, the only pixels above 0.5, black: the view is left with their edges), no blur (an 8x8
#: scan upscaled is blurred already) and crops of area 0.5-1 (a 0.3 crop of a digit can be one stroke, the same
#: as another digit's).
DIGIT_VIEWS = ("augment.crop.scale=[0.5,1.0]", "augment.blur.p=0", "augment.blur.p_views=[0,0]",
               "augment.solarize.p_views=[0,0]")


@dataclass(frozen=True)
class Plan:
    """How one method trains in the full mode: trunk, steps, batch, and ``key=value`` settings over CONFIG."""

    arch: str
    steps: int
    batch: int
    settings: tuple[str, ...] = ()


#: One row per method, each setting with its reason. A registered method without a row trains with
#: :func:`default_plan` (its section's defaults), and the output says so.
PLAN: dict[str, Plan] = {
    # Seven methods in about an hour on 2 cores: CNN methods take 150 steps of batch 64 (9,600 images, ~7 epochs).
    # SimCLR: the first version of this bench's settings (at batch 128: linear +5.2 at 150 steps, -0.5 at 60); a
    # small projector for a 1,352-image set. With its recipe's views (crops 0.3-1, blur) at batch 64: kNN +8.3 but
    # logreg -2.2; DIGIT_VIEWS.
    "simclr": Plan(CNN, 150, 64, ("simclr.T=0.2", "simclr.proj_hidden=512", "simclr.proj_dim=128", *DIGIT_VIEWS)),
    # BYOL at tau 0.99 (cosine to 1) did not beat its step-0 network in 150 steps: the target's time constant
    # (~100 steps) is the whole run, so the online net regresses an almost frozen random net. tau 0.95: ~20 steps.
    # Adam 5e-4, not 2e-3: at 2e-3 the first 20 steps wreck the random trunk (kNN 74 -> 52) and 60 steps do not
    # win it back (69); at 5e-4 it dips to 69 and is back at 74 by step 40. DIGIT_VIEWS: BYOL's recipe solarises.
    "byol": Plan(CNN, 150, 64, ("byol.proj_hidden=512", "byol.proj_dim=128", "byol.pred_hidden=512",
                                 "byol.momentum=0.95", "optim.lr=5e-4", *DIGIT_VIEWS)),
    # MoCo v2 with a key encoder that can move in 150 steps (m 0.999 = a time constant of 1,000 steps) and a
    # queue of 16 batches (1,024 of the 1,352 images: no image twice in it). Not faster: at m 0.95 the queue's
    # 16 batches of keys came from 16 different encoders and the run collapsed (loss up to the uniform log 1025,
    # kNN 74 -> 17). DIGIT_VIEWS (its recipe blurs).
    "moco": Plan(CNN, 150, 64, ("moco.m=0.99", "moco.queue=1024", "moco.T=0.2", *DIGIT_VIEWS)),
    # VICReg: an expander as wide as the batch allows. The covariance term cannot fall below ~(d/N - 1) per view
    # (N samples span at most N - 1 of the d dimensions): the reference's 8192 wide at batch 2048 (d/N = 4) floors
    # it at ~3; 2048 wide at our batch 64 floored it at ~31, ten times the invariance term it is weighed against,
    # and the trunk fell from 74 to 60 kNN. 256 wide keeps the reference's d/N = 4. DIGIT_VIEWS (its recipe is
    # BYOL's, which solarises).
    "vicreg": Plan(CNN, 150, 64, ("vicreg.expander=[256,256,256]", *DIGIT_VIEWS)),
    # Supervised (digit labels): one view a step, and labels teach fast; 50 steps are ~4 epochs.
    "tc": Plan(CNN, 50, 64),
    # DINO on the small ViT (2 global + 4 local views a step: the costliest row, hence 120 steps): K 1024 for 10
    # classes (65,536 is for ImageNet), a teacher that follows a 120-step run
    # (0.99 -> 1; 0.996 freezes it early), 4 local crops of 16 px (4 x 4 patches) of area 0.1-0.3, AdamW with
    # DINO's weight decay and clipping, the last layer frozen for the first epoch (~20 steps) as DINO does.
    # DIGIT_VIEWS, and no blur on the local crops either (DINO's recipe blurs and solarises).
    # Not learning at this budget (bench/RESULTS.md ## learn): the step-0 ViT gives every digit almost the same
    # teacher output (per-dimension spread across the batch 0.019 on logits in [-1, 1]), the centre removes the
    # common part, and what is left over the teacher temperature decides the collapse: uniform at 0.04 (loss =
    # log K), one-hot at 0.01, uniform again by step 36 at 0.02 with lr 2.5e-4 (K 1024 or 128); the spread
    # shrinks under training (0.019 -> 0.002-0.009) whatever the temperature. In those 40-step probes kNN went
    # 32.1 -> 31.7-32.8 (26.7 at 0.01); the row is left as measured in run C.
    "dino": Plan(VIT, 120, 64, ("dino.out_dim=1024", "dino.hidden_dim=512", "dino.bottleneck_dim=128",
                                "dino.momentum=0.99", "dino.freeze_last_layer_steps=20", "augment.local.n=4",
                                "augment.local.size=16", "augment.local.scale=[0.1,0.3]", "optim.name=adamw",
                                "optim.lr=1e-3", "optim.weight_decay=0.04", "optim.clip_grad=3.0",
                                "optim.warmup_steps=10", *DIGIT_VIEWS, "augment.local.blur_p=0")),
    # MAE (ViT only): a 2-block 128-wide decoder for a 64-token image; AdamW with MAE's betas and weight decay.
    # The encoder sees a quarter of the tokens and one view, so more steps cost less than DINO's. Per-patch
    # normalised targets (MAE's default) kept: raw pixel targets (norm_pix_loss=false, as the SAYCam runs; a 4-px
    # patch of an upscaled 8x8 scan is near constant) measured worse, kNN 40 -> 31 and logreg 84 -> 76.
    "mae": Plan(VIT, 200, 64, ("mae.decoder_width=128", "mae.decoder_depth=2", "mae.decoder_heads=4",
                                "optim.name=adamw", "optim.lr=1e-3", "optim.betas=[0.9,0.95]",
                                "optim.weight_decay=0.05", "optim.warmup_steps=10")),
}


def default_plan(name: str) -> Plan:
    """A registered method without a :data:`PLAN` row: the small ViT if it needs one, else ResNet-18; 150 steps."""
    return Plan(VIT if registry.entry(name).views.vit_only else CNN, 150, 128)


def skip_reason(name: str) -> str | None:
    """Why ``name`` cannot train on the digits, or None."""
    if registry.entry(name).views.temporal:
        return ("its positive is another frame of the image's clip; the digits are single images without clips, so "
                "each would be its own clip, its partner itself, and the run would repeat moco's")
    return None


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


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """One hash of a state dict's names and values: step-0 trunks with equal digests are one network."""
    h = hashlib.sha256()
    for k, v in state.items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def init_checkpoint(config: Path, overrides: list[str], out: Path) -> dict[str, Any]:
    """The trunk ``headcam-train CONFIG OVERRIDES`` starts from, taken inside the trainer once the method is
    built (its ``build_method`` wrapped for one call, the run then stopped: MAE re-initialises its encoder
    there), saved to ``out`` as a headcam checkpoint (step 0), and compared with ``manual_seed(seed);
    build_method(cfg, *build_backbone(arch, small_stem, method=method))``, built outside the trainer."""
    from headcam.config import to_dict
    from headcam.train import checkpoint, trainer
    from headcam.train.backbones import build_backbone
    from headcam.train.config import load_train_config

    cfg = load_train_config(config, overrides)
    got: dict[str, Any] = {}
    real = trainer.build_method

    def capture(cfg: Any, trunk: Any, feat_dim: int, **kwargs: Any) -> Any:
        model = real(cfg, trunk, feat_dim, **kwargs)
        got.update(state={k: v.detach().clone() for k, v in model.trunk.state_dict().items()}, dim=feat_dim,
                   kwargs=kwargs)
        raise _Captured

    trainer.build_method = capture
    try:
        trainer.train(cfg)
    except _Captured:
        pass
    finally:
        trainer.build_method = real
    torch.manual_seed(cfg.seed)
    mine = real(cfg, *build_backbone(cfg.arch, cfg.small_stem, method=cfg.method), **got["kwargs"]).trunk.state_dict()
    same = mine.keys() == got["state"].keys() and all(torch.equal(mine[k], got["state"][k]) for k in mine)
    checkpoint.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "arch": cfg.arch,
                     "small_stem": cfg.small_stem, "feat_dim": got["dim"], "backbone": got["state"],
                     "method": cfg.method, "config": to_dict(cfg), "step": 0, "n_classes": None, "head": None}, out)
    return {"path": str(out), "arch": cfg.arch, "digest": state_digest(got["state"]),
            "equals_manual_seed_build_method": same}


def train(method: str, config: Path, overrides: list[str], out: Path, work: Path) -> dict[str, Any]:
    seconds = run([str(BIN / "headcam-train"), str(config), *overrides], work / f"train_{method}.log")
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


def rows(result: dict[str, Any], readout: str = "10/class") -> list[dict[str, Any]]:
    """One row per trained method: its figures beside its own step-0 network's and the pixels'."""
    r = result["readouts"][readout]
    out = []
    for m, t in result["train"].items():
        init = result["methods"][m]["init"]
        k, lin = r["knn"], r["linear"]
        gain = (k[m] - k[init], lin[m] - lin[init])
        out.append({"method": m, "arch": result["methods"][m]["arch"], "steps": result["methods"][m]["steps"],
                    "batch": result["methods"][m]["batch"], "img_per_s": t["img_per_s"], "seconds": t["seconds"],
                    "knn": (k[init], k[m], k["pixels"]), "linear": (lin[init], lin[m], lin["pixels"]),
                    "gain": gain, "met": min(gain) >= 5.0, "supervised": result["methods"][m]["supervised"]})
    return out


def table(result: dict[str, Any]) -> str:
    head = (f"{'readout':<9} {'method':<13} {'arch':<15} {'steps':>5} {'img/s':>6} | "
            f"{'kNN step0/trained/pixels':>25} {'gain':>6} | {'logreg step0/trained/pixels':>28} {'gain':>6}")
    lines = [head, "-" * len(head)]
    for readout in result["readouts"]:
        for w in rows(result, readout):
            (k0, k1, kp), (l0, l1, lp) = w["knn"], w["linear"]
            name = w["method"] + "*" * w["supervised"]
            lines.append(f"{readout:<9} {name:<13} {w['arch']:<15} {w['steps']:>5} {w['img_per_s']:>6.1f} | "
                         f"{k0:>9.1f} /{k1:>6.1f} /{kp:>6.1f} {w['gain'][0]:>+6.1f} | "
                         f"{l0:>12.1f} /{l1:>6.1f} /{lp:>6.1f} {w['gain'][1]:>+6.1f}")
    if any(w["supervised"] for w in rows(result)):
        lines.append("* supervised: trains on the digit labels (its registry entry needs_labels)")
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    """The 10-labels-per-class table for ``bench/RESULTS.md``."""
    lines = ["| method | arch | steps x batch | img/s | kNN step-0 / trained / pixels | logreg step-0 / trained / "
             "pixels | gain kNN / logreg | goal |", "|---|---|---|---|---|---|---|---|"]
    for w in rows(result):
        (k0, k1, kp), (l0, l1, lp) = w["knn"], w["linear"]
        name = w["method"] + " (supervised)" * w["supervised"]
        lines.append(f"| {name} | {w['arch']} | {w['steps']} x {w['batch']} | {w['img_per_s']:.1f} | "
                     f"{k0:.1f} / {k1:.1f} / {kp:.1f} | {l0:.1f} / {l1:.1f} / {lp:.1f} | "
                     f"{w['gain'][0]:+.1f} / {w['gain'][1]:+.1f} | {'met' if w['met'] else 'not met'} |")
    lines += [f"| {m} | — | skipped | | | | | {why} |" for m, why in result["skipped"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Budget: full mode trains each method as its PLAN row says (about an "
                                            "hour in all on 2 idle cores); --short 2 steps of batch 32 each.")
    parser.add_argument("--short", action="store_true", help="smoke test: 2 steps per method, one readout")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--workdir", type=Path, help="keep datasets, runs and reports here (default: a temp dir)")
    parser.add_argument("--methods", help="comma-separated registry names (default: every registered method)")
    parser.add_argument("--steps", type=int, help="training steps for every method (default: its PLAN row; --short 2)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HEADCAM_QUIET", "1")
    # One intra-op thread per process: the trainer and its loader worker fill the 2 cores, and on a shared machine
    # OpenMP's spinning threads made steps several times slower (as tests/train/conftest.py found).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    wanted = args.methods.split(",") if args.methods else list(registry.names())
    for m in wanted:
        try:
            registry.entry(m)
        except UsageError as e:  # an unknown name: one line with the near matches, exit 2
            parser.error(str(e))
    skipped = {m: why for m in wanted if (why := skip_reason(m))}
    for m, why in skipped.items():
        print(f"{m}: skipped: {why}", flush=True)
    plans = {m: PLAN.get(m) or default_plan(m) for m in wanted if m not in skipped}
    for m in plans:
        if m not in PLAN:
            print(f"{m}: no PLAN row in bench/learn.py; training with {plans[m]} and its section's defaults")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        counts = write_digits(work / "src", work / "src_few")
        data, few = work / "digits", work / "digits_few"
        for src, out in ((work / "src", data), (work / "src_few", few)):
            ingest(src, out, work)
        config = work / "learn.yaml"
        config.write_text(yaml.safe_dump(CONFIG))
        methods: dict[str, dict[str, Any]] = {}
        inits: dict[str, dict[str, Any]] = {}  # name -> step-0 checkpoint; one per distinct network
        trained: dict[str, dict[str, Any]] = {}
        for m, plan in plans.items():
            steps = args.steps or (2 if args.short else plan.steps)
            batch = 32 if args.short else plan.batch
            every = 0 if args.short else max(1, steps // 2)
            common = [f"method={m}", f"arch={plan.arch}", f"data={data}", f"steps={steps}", f"batch_size={batch}",
                      f"log_every={max(1, steps // 10)}", *AUGMENT, *plan.settings]
            init = init_checkpoint(config, [*common, f"out={work / 'init_run'}"], work / f"init_{m}.pt")
            name = next((n for n, i in inits.items() if i["digest"] == init["digest"]), f"init_{plan.arch}")
            if name in inits and inits[name]["digest"] != init["digest"]:
                name = f"init_{plan.arch}_{m}"  # the same arch, another initialisation (DINO's ViT init)
            inits.setdefault(name, init)
            supervised = registry.entry(m).needs_labels
            methods[m] = {"arch": plan.arch, "steps": steps, "batch": batch, "init": name, "supervised": supervised,
                          "settings": list(plan.settings), "init_equals_manual_seed_build_method":
                          init["equals_manual_seed_build_method"]}
            print(f"{m}{' (supervised: trains on the digit labels)' * supervised}: {plan.arch}, {steps} steps of "
                  f"batch {batch}; step-0 trunk ({name}) from inside the trainer == manual_seed({SEED}) + "
                  f"build_backbone + build_method: {init['equals_manual_seed_build_method']}", flush=True)
            monitor = [f"monitor.data={few}", f"monitor.every={every}"] if every else []
            trained[m] = train(m, config, [*common, f"out={work / m}", *monitor], work / m, work)
            print(f"{m}: {steps} steps in {trained[m]['seconds']:.0f} s (trainer-logged {trained[m]['img_per_s']} "
                  f"img/s, mean of its windows), kNN monitor (10 labels/class) by step {trained[m]['knn_curve']}",
                  flush=True)
        models = {**{n: i["path"] for n, i in inits.items()}, **{m: str(work / m / "checkpoint.pt") for m in trained},
                  "pixels": "pixels"}
        readouts = {"10/class": few} if args.short else {"10/class": few, "all": data}
        result: dict[str, Any] = {
            "data": f"sklearn load_digits: {counts['train']} train / {counts['val']} val, 10 classes, "
                    f"8x8 upscaled to {SIZE} px", "few_labels_per_class": FEW_PER_CLASS, "mode":
                    "short" if args.short else "full", "cpu_threads": torch.get_num_threads(),
            "load_average_1min_at_start": os.getloadavg()[0], "skipped": skipped, "methods": methods,
            "inits": inits, "train": trained, "readouts": {}}
        for name, ds in readouts.items():
            tag = name.replace("/", "_")
            result["readouts"][name] = {r: evaluate(r, models, ds, work, tag) for r in ("knn", "linear")}
        result["gain_over_init_10_per_class"] = {w["method"]: dict(zip(("knn", "linear"), w["gain"], strict=True))
                                                 for w in rows(result)}
        result["goal_met"] = {w["method"]: w["met"] for w in rows(result)}
        result["seconds_total"] = round(time.perf_counter() - t_start, 1)
        print(table(result))
        met = [m for m, ok in result["goal_met"].items() if ok]
        print(f"goal (trained - step-0 >= 5 points, kNN and logreg, 10 labels/class): met by "
              f"{', '.join(met) or 'none'} of {len(result['goal_met'])}; total {result['seconds_total']:.0f} s")
        print(markdown(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
