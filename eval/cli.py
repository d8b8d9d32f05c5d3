"""``headcam-eval``: linear / kNN decoding of frozen features, analyses, and report comparison.

Subcommands:

- ``linear``  train a linear readout on frozen features and report top-1/top-5 on held-out samples;
- ``knn``     weighted kNN (k=20, cosine, T=0.07) on the same features;
- ``finetune`` tune the whole network with a new head on a seeded fraction of the training samples, or N per
  class (``--shots``; a spatiotemporal ViT on a video dataset tunes on N clips per class, as the few-shot video
  protocol of Orhan et al. 2024: ``--recipe mae_st``) (optionally then a linear readout of the tuned trunk on all
  of them: "1 % ft + linear");
- ``analyze`` class selectivity per unit, top-activating images, class attention maps (CNNs), DINO's
  self-attention maps per head (ViTs, ``--attention``);
- ``compare`` one table and chart from several report directories.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headcam.console import EXIT_OK, EXIT_PARTIAL, ArgumentParser, UsageError, run_main
from headcam.eval.finetune_presets import FINETUNE_PRESETS, FINETUNE_RECIPES
from headcam.eval.linear_presets import LINEAR_RECIPES
from headcam.eval.protocols import PRESETS, PROTOCOLS

PROG = "headcam-eval"
MODEL_HELP = ("a headcam checkpoint, a published checkpoint loaded unchanged (baby-vision; silicon-menagerie DINO "
              "and MAE, e.g. dino_say_vitb14.pth; recognised from its keys), local-dir:PATH (a timm-layout folder, "
              "config.json + model.safetensors, as headcam-export writes), hf-hub:ORG/NAME[@REV] (such a folder on "
              "the Hugging Face Hub), hf://ORG/REPO[@REV]/FILE (one checkpoint file in a Hub repository, e.g. "
              "silicon-menagerie's .pth files), random:ARCH (random-init network, e.g. random:resnet18 or "
              "random:vit_small_patch16), hog or pixels; hub models go through huggingface_hub's cache (HF_HUB_CACHE "
              "or HF_HOME; HF_HUB_OFFLINE=1 reads only what is cached); repeat to put several models in one report")


FINETUNE_RECIPES_HELP = "recipes (every value is recorded in the report):\n" + "\n".join(
    f"  {p.name}: {p.reference}" for p in FINETUNE_PRESETS.values())


def default_cache_dir() -> Path:
    return Path(os.environ.get("HEADCAM_CACHE", Path.home() / ".cache" / "headcam")) / "features"


def _common(p: argparse.ArgumentParser, many_models: bool = True) -> None:
    p.add_argument("--model", action="append" if many_models else None, required=True, help=MODEL_HELP)
    p.add_argument("--name", action="append" if many_models else None,
                   help="label of the model in the report (default: checkpoint file stem or the spec)"
                   + ("; repeat in --model order" if many_models else ""))
    p.add_argument("--data", required=True,
                   help="dataset (headcam-ingest output): a directory, an http(s)://, s3://, gs:// or "
                        "hf://datasets/ URL, or a pipe: command with {} for the file name")
    p.add_argument("--test-data",
                   help="held-out dataset for core50/ecoset/places365/imagenet (e.g. the val folder ingested apart); "
                        "directory or URL as --data")
    rules = "; ".join(f"{pr.name} = {pr.rule_text}" for pr in PRESETS.values()).replace("%", "%%")
    p.add_argument("--protocol", default="splits", choices=PROTOCOLS, metavar="PROTOCOL",
                   help="which samples train the readout and which score it, as the reference scripts split them "
                        f"(default: splits): {rules}")
    p.add_argument("--train-split", help="split that trains the readout (splits rule; default train)")
    p.add_argument("--test-split", help="split that scores it (splits rule; default val, else test)")
    p.add_argument("--out", required=True, type=Path, help="report directory (report.json, report.md, PNGs)")
    p.add_argument("--size", type=int, default=224, help="view side in px, resize + centre crop (default 224)")
    p.add_argument("--vit-features", default="cls",
                   help="ViT probe features: cls (final-norm CLS), lastN (final-norm CLS of each of the last N "
                        "blocks) or lastN+avgpool (plus the last block's mean patch token); DINO's linear eval "
                        "reads last4 for ViT-S and last1+avgpool for ViT-B (linear --recipe dino picks them by "
                        "size); CNNs ignore it (default cls)")
    p.add_argument("--batch-size", type=int, default=256,
                   help="feature-extraction batch size (default 256); clips count their frames: batch-size / T clips")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes (default 0)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default auto: cuda if present")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the readout, of random:ARCH weights and of the labeled-s / konkle-objects split "
                        "(the reference scripts shuffle unseeded) (default 0)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="feature cache (default $HEADCAM_CACHE/features or ~/.cache/headcam/features)")
    p.add_argument("--no-cache", action="store_true", help="always recompute features, store nothing")
    if many_models:
        p.add_argument("--run", action="append", type=Path, default=[],
                       help="a headcam-train run directory: its loss and kNN-monitor curves go into the report as "
                            "learning_curves.png; repeat for several runs")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example: headcam-eval linear --model runs/tc/checkpoint.pt --model "
                                            "random:resnet18 --model hog --data toybox_ds --protocol toybox-iid "
                                            "--out reports/tc")
    sub = parser.add_subparsers(dest="command", required=True)
    lin = sub.add_parser("linear", help="linear readout on frozen features")
    _common(lin)
    lin.add_argument("--recipe", default="headcam", choices=LINEAR_RECIPES,
                     help="the linear-probe protocol, as its reference code trains it: headcam (default: cached "
                          "bilinear centre-crop features, standardised, Adam 5e-4, batch 1024, 100 epochs, final "
                          "epoch); dino (facebookresearch/dino eval_linear.py: random-resized-crop + flip views through"
                          " the frozen trunk every epoch, tested on bicubic centre crops, ViT-S last4 / ViT-B "
                          "last1+avgpool, SGD 1e-3 x batch/256, cosine, batch 1024, 100 epochs, best and final epoch); "
                          "eminorhan (eminorhan/dino and /mae eval_linear.py: the same views, last CLS, Adam 5e-4, "
                          "batch 1024, 300 epochs for labeled-s / konkle-objects else 50, a BatchNorm before the head "
                          "for MAE trunks, best and final epoch); baby-vision (linear_decoding.py: cached bicubic "
                          "centre-crop features, raw, Adam 5e-4, batch 256, 100 epochs, final epoch)")
    lin.add_argument("--probe", choices=("adam", "logreg", "svm"),
                     help="--recipe headcam's readout: adam (the recipe's probe); logreg: exact multinomial logistic "
                          "regression; svm: LinearSVC (default: adam, svm for hog)")
    lin.add_argument("--epochs", type=int, help="probe epochs (default: the recipe's)")
    lin.add_argument("--lr", type=float,
                     help="probe learning rate before the recipe's batch scaling (default: the recipe's)")
    lin.add_argument("--probe-batch-size", type=int, help="probe batch size (default: the recipe's)")
    knn = sub.add_parser("knn", help="temperature-weighted cosine kNN on frozen features")
    _common(knn)
    knn.add_argument("--k", type=int, default=20, help="neighbours (default 20)")
    knn.add_argument("--temperature", type=float, default=0.07, help="vote weight exp(sim/T) (default 0.07)")
    ft = sub.add_parser("finetune", help="few-shot fine-tuning of the whole network (+ optional linear readout)",
                        description="Tune the whole network with a new head on a seeded --frac of the protocol's "
                                    "training samples (or --shots N of each class), the way --recipe's reference "
                                    "does, and score it on the test samples; --seed draws the subset, the head and the "
                                    "views. A spatiotemporal ViT (vit_*_st) on a video dataset tunes and is scored on "
                                    "clips of as many frames as its temporal positions hold. Tuned weights are not "
                                    "cached or saved: only the report is written, with every setting of the recipe.",
                        epilog=FINETUNE_RECIPES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(ft)
    ft.add_argument("--recipe", default="headcam", choices=FINETUNE_RECIPES,
                    help="the protocol, as its reference code runs it (default headcam; see below)")
    ft.add_argument("--frac", type=float,
                    help="fraction of the labelled training samples that tune the network, seeded by --seed "
                         "(default: the recipe's: headcam 0.01, eminorhan 0.010147, mae 1)")
    ft.add_argument("--shots", type=int,
                    help="N tuning samples per class instead of --frac, seeded by --seed (a smaller N's subset lies "
                         "inside a larger one's); for a spatiotemporal ViT (vit_*_st) on a video dataset N clips per "
                         "class, or N videos (all their clips) on a set ingested with --label-from parent, only clips "
                         "long enough for the recipe's frames counting (Orhan et al. 2024: 10 and 50 with --recipe "
                         "mae_st)")
    ft.add_argument("--clip-stride", type=int,
                    help="clips: sampled frames of the dataset between consecutive frames of a clip (default: the "
                         "recipe's frame interval x the dataset's ingest fps, rounded; else 1). mae_st takes 16 "
                         "frames 0.282 s apart (rate 8 of 30 fps video): ingest --fps 30 --clip-len 121 or more "
                         "(stride 8), or --fps 3.54 --clip-len 16 or more (stride 1)")
    ft.add_argument("--balanced", action="store_true", help="the same number of tuning samples in every class")
    ft.add_argument("--epochs", type=int, help="tuning epochs (default: the recipe's)")
    ft.add_argument("--lr", type=float, help="base learning rate (default: the recipe's for the architecture; "
                                             "mae: blr, scaled by batch / 256)")
    ft.add_argument("--lr-drop-epochs", type=int,
                    help="headcam recipe: last epochs run at 0.2 x --lr (default 2 for CNNs, 0 for ViTs)")
    ft.add_argument("--tune-batch-size", type=int,
                    help="tuning batch size of one step (default: the recipe's; mae_st: 16, two steps accumulated "
                         "per update)")
    ft.add_argument("--then-linear", action="store_true",
                    help="then train a linear readout of the tuned, frozen trunk on the full training split "
                         "(baby-vision's '1%% ft + linear')")
    ft.add_argument("--probe", choices=("adam", "logreg"), default="adam", help="--then-linear readout (default adam)")
    ft.add_argument("--probe-epochs", type=int, default=100, help="--then-linear adam epochs (default 100)")
    ft.add_argument("--probe-lr", type=float, default=5e-4, help="--then-linear adam learning rate (default 5e-4)")
    ft.add_argument("--probe-batch-size", type=int, default=1024, help="--then-linear adam batch (default 1024)")
    ana = sub.add_parser("analyze", help="class selectivity, top-activating images, class attention maps, "
                                         "ViT self-attention (--attention)")
    _common(ana, many_models=False)
    ana.add_argument("--units", type=int, default=8, help="units shown in the top-activating grid (default 8)")
    ana.add_argument("--per-unit", type=int, default=8, help="images per unit in the grid (default 8)")
    ana.add_argument("--maps", type=int, default=8,
                     help="test images given maps: class attention maps (CNNs), or the --attention grids (default 8)")
    ana.add_argument("--attention", action="store_true",
                     help="ViTs: DINO's last-block CLS attention per head, the mean over heads and their thresholded "
                          "masks, one grid PNG per image (self_attention/KEY.png, shown in report.md), as "
                          "facebookresearch/dino's visualize_attention.py draws them; a spatiotemporal ViT (vit_*_st) "
                          "on a video dataset: the CLS attention averaged over heads per tubelet of held-out clips, "
                          "under their frames (clip_attention/KEY.png), as eminorhan/mae_st's visualize_attn.py")
    ana.add_argument("--clip-stride", type=int,
                     help="--attention on clips: sampled frames of the dataset between consecutive clip frames "
                          "(default: 0.142 s, visualize_attn.py's sampling, at the dataset's ingest fps, rounded)")
    ana.add_argument("--threshold", type=float,
                     help="--attention masks keep the fewest patches holding this fraction of the attention mass "
                          "(0-1, default 0.6, DINO's)")
    cmp_ = sub.add_parser("compare", help="one table and bar chart from several report directories")
    cmp_.add_argument("reports", nargs="+", type=Path, help="report directories written by linear/knn/finetune")
    cmp_.add_argument("--out", type=Path, help="write the merged report.json/report.md/accuracy.png here")
    return parser


def _open(path: str):
    from headcam.shards.dataset import DatasetError, open_dataset

    try:
        return open_dataset(path)
    except DatasetError as e:
        raise UsageError(str(e)) from None


def _options(args: argparse.Namespace):
    from headcam.eval.decode import DecodeOptions
    from headcam.eval.features import resolve_device

    device = resolve_device(args.device)
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device here; use --device cpu or auto")
    if args.size < 16:
        raise UsageError(f"--size {args.size}: too small (at least 16 px)")
    return DecodeOptions(
        size=args.size, batch_size=args.batch_size, workers=args.workers,
        device=device, epochs=getattr(args, "epochs", 100), lr=getattr(args, "lr", 5e-4),
        probe_batch_size=getattr(args, "probe_batch_size", 1024), k=getattr(args, "k", 20),
        temperature=getattr(args, "temperature", 0.07), seed=args.seed,
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()))


def _plan(args: argparse.Namespace):
    from headcam.eval.protocols import describe, resolve_protocol

    data = _open(args.data)
    test_data = _open(args.test_data) if args.test_data else None
    plan = resolve_protocol(args.protocol, data, test_data, train_split=args.train_split, test_split=args.test_split,
                            seed=args.seed)
    print(describe(plan), flush=True)
    return plan


def _check_models(args: argparse.Namespace) -> None:
    """Every ``--model`` and ``--name`` checked before any data or network is read (a missing third checkpoint
    must not wait for the first two models' features)."""
    from headcam.eval.models import check_spec

    specs = args.model if isinstance(args.model, list) else [args.model]
    names = args.name if isinstance(args.name, list) else []
    if len(names) > len(specs):
        raise UsageError(f"{len(names)} --name for {len(specs)} --model")
    for spec in specs:
        check_spec(spec)


def _models(args: argparse.Namespace):
    """Each ``--model`` with its ``--name``, loaded only when its turn comes (one network in memory at a time)."""
    from headcam.eval.models import load_model

    names = args.name or []
    for i, spec in enumerate(args.model):
        yield load_model(spec, name=names[i] if i < len(names) else None, seed=args.seed,
                         vit_features=args.vit_features)


def _decode_command(args: argparse.Namespace) -> int:
    plan = _plan(args)  # a wrong dataset or split is told before torch loads
    from headcam.eval.decode import decode, default_probe

    opts = _options(args)
    results = (decode(model, plan, opts, "knn" if args.command == "knn" else default_probe(model, args.probe))
               for model in _models(args))
    return _report(args, plan, opts, results, {"k": opts.k, "temperature": opts.temperature})


def _linear_command(args: argparse.Namespace) -> int:
    """``linear``: each model probed as ``--recipe`` says (a MAE trunk under eminorhan gets eminorhan/mae's
    variant); headcam's ``--probe logreg|svm`` (and hog's default svm) take the closed-form readouts instead."""
    from headcam.eval.linear_presets import linear_preset

    preset = linear_preset(args.recipe)
    if args.probe is not None and preset.name != "headcam":
        raise UsageError(f"--probe is --recipe headcam's choice; --recipe {preset.name} trains its reference's readout")
    for flag, value, low in (("--epochs", args.epochs, 1), ("--probe-batch-size", args.probe_batch_size, 1)):
        if value is not None and value < low:
            raise UsageError(f"{flag} {value}: must be >= {low}")
    if args.lr is not None and args.lr <= 0:
        raise UsageError(f"--lr {args.lr}: must be > 0")
    plan = _plan(args)  # a wrong dataset or split is told before torch loads
    import dataclasses

    from headcam.eval.decode import decode, default_probe
    from headcam.eval.linear import ProbeRun, linear_decode, prepare_model, trained_by

    opts = _options(args)
    results, recipes = [], {}
    for model in _models(args):
        probe = default_probe(model, args.probe) if preset.name == "headcam" else preset.name
        if probe in ("logreg", "svm"):
            results.append(decode(model, plan, opts, probe))
            results[-1].row["recipe"] = preset.name
            continue
        used = preset.for_method(trained_by(model))
        run = ProbeRun(epochs=args.epochs or used.epochs_for(args.protocol), lr=args.lr or used.lr,
                       batch_size=args.probe_batch_size or used.batch_size)
        model, vit_features = prepare_model(model, used, args.vit_features)
        results.append(linear_decode(model, plan, dataclasses.replace(opts, epochs=run.epochs, lr=run.lr,
                                                                      probe_batch_size=run.batch_size), used, run))
        results[-1].row["vit_features"] = vit_features
        recipes[used.name] = {**used.settings(), "run": {**dataclasses.asdict(run),
                                                         "lr_effective": run.effective_lr(used)}}
    settings = {"probe": args.probe or "default (adam; svm for hog)" if preset.name == "headcam" else preset.name}
    if recipes:  # the settings the recipe's probe read; none for logreg / svm alone
        first = next(iter(recipes.values()))["run"]
        settings.update(recipe=preset.name, epochs=first["epochs"], lr=first["lr"], batch_size=first["batch_size"],
                        overridden=[f for f, v in (("--epochs", args.epochs), ("--lr", args.lr),
                                                   ("--probe-batch-size", args.probe_batch_size)) if v is not None],
                        recipes=recipes)
    return _report(args, plan, opts, results, settings)


def _per_model(settings: dict[str, dict]) -> dict:
    """One dict of every model's settings: a value all models share once, else ``{model: value}``."""
    merged = {}
    for key in next(iter(settings.values())):
        values = {name: s[key] for name, s in settings.items()}
        first = next(iter(values.values()))
        merged[key] = first if all(v == first for v in values.values()) else values
    return merged


@dataclass
class _TuningRun:
    """What one model tunes on and is scored on: the plan (its test side counted in clips for a clip run), the
    subset, ``clips`` ((frames, stride) or None), the report's probe label and notes for the settings."""

    plan: Any
    subset: Any
    clips: tuple[int, int] | None
    label: str | None
    notes: dict[str, Any]


def _tuning_run(args: argparse.Namespace, ft, model, preset, plan, seed: int) -> _TuningRun:
    """Frames or clips for ``model`` on ``plan``'s data, and its seeded subset (``--frac`` or ``--shots``). Clips
    when a spatiotemporal ViT meets a video dataset: as many frames as its temporal positions hold, ``--clip-stride``
    or the recipe's interval apart; both sides counted in clips long enough for that."""
    import dataclasses

    import numpy as np

    from headcam.eval.fewshot import clip_side, clip_videos, shots_subset
    from headcam.eval.finetune import few_shot_subset
    from headcam.train.archs import VIDEO_VITS

    data = plan.train.dataset
    clips = model.arch in VIDEO_VITS and data.kind == "video"
    label = f"finetune{ft.shots}shot" + ("" if preset.name == "headcam" else f"/{preset.name}") if ft.shots else None
    if preset.clip_frames and not clips:
        what = f"{model.name} is {model.arch}" if model.arch not in VIDEO_VITS else f"{args.data} holds {data.kind}"
        raise UsageError(f"--recipe {preset.name} tunes a spatiotemporal ViT (vit_*_st) on the clips of a video "
                         f"dataset; {what}")
    if not clips:
        subset = (shots_subset(plan.train, ft.shots, seed=seed, class_names=plan.class_names) if ft.shots else
                  few_shot_subset(plan.train, preset.frac, balanced=ft.balanced, seed=seed,
                                  class_names=plan.class_names, count=preset.subset_count))
        return _TuningRun(plan, subset, None, label, {})
    if preset.rand_augment or preset.reprob or preset.mixing or ft.then_linear:
        why = "--then-linear reads frames" if ft.then_linear else "it augments images (RandAugment, erasing, mixup)"
        raise UsageError(f"--recipe {preset.name} on clips: {why}; clips take --recipe mae_st or headcam")
    frames = model.trunk.num_frames
    params = data.meta.get("params") or {}
    fps, by_video = params.get("fps"), params.get("label_from") == "parent"  # a labelled set's sample is a video
    stride = args.clip_stride or preset.clip_stride(fps)
    span = (frames - 1) * stride + 1
    train, short_train = clip_side(plan.train, span)
    test, short_test = clip_side(plan.test, span)
    if not test.keys:
        raise UsageError(f"{args.data}: no held-out clip holds {span} frames ({frames} frames {stride} apart); "
                         f"ingest clips of {span} frames or more (--clip-len) or give a smaller --clip-stride")
    units = f"{'videos with a clip' if by_video else 'clips'} of at least {span} frames"
    if ft.shots:
        subset = shots_subset(train, ft.shots, seed=seed, class_names=plan.class_names, units=units,
                              classes=np.union1d(train.labels, test.labels),
                              groups=clip_videos(train) if by_video else None)
    else:
        subset = few_shot_subset(train, preset.frac, balanced=ft.balanced, seed=seed, class_names=plan.class_names,
                                 count=preset.subset_count)
    notes = {"clips": {"shot": "video" if by_video else "clip", "frames": frames, "stride": stride, "span": span,
                       "dataset_fps": fps, "interval_s": round(stride / fps, 4) if fps else None,
                       "train_clips": len(train.keys), "test_clips": len(test.keys),
                       "too_short": {"train": short_train, "test": short_test}}}
    return _TuningRun(dataclasses.replace(plan, test=test), subset, (frames, stride), label, notes)


def _check_shots(args: argparse.Namespace) -> None:
    """``--shots`` and ``--clip-stride`` told apart from what they exclude, before any data is read."""
    if args.shots is not None and (args.frac is not None or args.balanced):
        raise UsageError("--shots N draws N tuning samples per class (balanced by construction): drop --frac and "
                         "--balanced")
    if args.shots is not None and args.shots < 1:
        raise UsageError(f"--shots {args.shots}: the number of tuning samples per class must be >= 1")
    if args.clip_stride is not None and args.clip_stride < 1:
        raise UsageError(f"--clip-stride {args.clip_stride}: must be >= 1")


def _finetune_command(args: argparse.Namespace) -> int:
    import dataclasses

    from headcam.eval.finetune import FinetuneOptions, finetune, subset_summary
    from headcam.eval.models import BASELINES

    _check_shots(args)
    ft = FinetuneOptions(recipe=args.recipe, frac=args.frac, shots=args.shots, balanced=args.balanced,
                         epochs=args.epochs, lr=args.lr, lr_drop_epochs=args.lr_drop_epochs,
                         batch_size=args.tune_batch_size, then_linear=args.then_linear, probe=args.probe).check()
    baselines = [m for m in args.model if m in BASELINES]
    if baselines:
        raise UsageError(f"--model {baselines[0]}: a hand-made baseline has no weights to fine-tune; use linear")
    plan = _plan(args)
    opts = dataclasses.replace(_options(args), epochs=args.probe_epochs, lr=args.probe_lr)
    per_model: dict[str, dict] = {}

    def results():
        for model in _models(args):
            preset = ft.resolve(model)  # by the method that trained it and its architecture
            run = _tuning_run(args, ft, model, preset, plan, opts.seed)
            rows = finetune(model, run.plan, run.subset, opts, preset, then_linear=ft.then_linear, probe=ft.probe,
                            clips=run.clips, label=run.label)
            per_model[model.name] = {**preset.settings(), "lr": rows[0].row["lr"],
                                     "batch_size": rows[0].row["batch_size"], "shots": ft.shots,
                                     "subset": subset_summary(run.subset, plan.class_names), **run.notes}
            yield from rows

    out = list(results())
    settings = {"recipe": ft.recipe, "balanced": ft.balanced, "shots": ft.shots, "then_linear": ft.then_linear,
                **_per_model(per_model)}
    if ft.then_linear:
        settings["linear"] = {"probe": ft.probe, "epochs": opts.epochs, "lr": opts.lr,
                              "batch_size": opts.probe_batch_size}
    return _report(args, plan, opts, out, settings)


def _report(args: argparse.Namespace, plan, opts, results, settings: dict) -> int:
    """The tail every readout shares: report.json / report.md / plots, and the one-line summary."""
    from headcam.eval.report import confusion_matrix, write_report

    rows, confusions, missing = [], {}, 0
    for res in results:
        rows.append(res.row)
        missing += res.row["missing"]
        label = res.row["model"] if args.command != "finetune" else f"{res.row['model']} {res.row['probe']}"
        confusions[label] = (confusion_matrix(res.y_test, res.probe.scores, plan.n_classes), plan.class_names)
    context = {"command": args.command, "data": str(args.data), "test_data": str(args.test_data or ""),
               "protocol": args.protocol, "protocol_settings": plan.notes,
               "train_splits": plan.train.splits, "test_splits": plan.test.splits,
               "size": opts.size, "vit_features": args.vit_features, "seed": opts.seed,
               "class_names": plan.class_names, "probe_settings": settings}
    write_report(args.out, rows, context, confusions, runs=args.run)
    summary = "; ".join(f"{r['model']} {r['probe']} {r['top1']:.1f}/{r['top5']:.1f}" if args.command == "finetune"
                        else f"{r['model']} {r['top1']:.1f}/{r['top5']:.1f}" for r in rows)
    extra = f"; {missing} sample(s) without features (corrupt/unreadable images skipped)" if missing else ""
    print(f"{args.command} {args.protocol}: top-1/top-5 % {summary} (n_train {rows[0]['n_train']}, "
          f"n_test {rows[0]['n_test']}){extra}; report in {args.out}")
    return EXIT_PARTIAL if missing else EXIT_OK


ATTENTION_THRESHOLD = 0.6  # analyze --attention: DINO's visualize_attention.py mass threshold


def _analyze_command(args: argparse.Namespace) -> int:
    if args.threshold is not None and not args.attention:
        raise UsageError("--threshold sets the --attention masks; add --attention (ViTs)")
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise UsageError(f"--threshold {args.threshold}: a fraction of the attention mass, in (0, 1] (DINO: 0.6)")
    if args.clip_stride is not None and (not args.attention or args.clip_stride < 1):
        raise UsageError(f"--clip-stride {args.clip_stride}: spaces the frames of --attention's clips; must be >= 1 "
                         "and needs --attention")
    plan = _plan(args)
    from headcam.eval.analyses import analyze
    from headcam.eval.models import load_model

    model = load_model(args.model, name=args.name, seed=args.seed, vit_features=args.vit_features)
    if model.kind != "network":
        raise UsageError(f"analyze needs a network (checkpoint or random:ARCH), not '{args.model}'")
    summary = analyze(model, plan, _options(args), args.out, units=args.units, per_unit=args.per_unit,
                      maps=args.maps,
                      attention_threshold=(args.threshold or ATTENTION_THRESHOLD) if args.attention else None,
                      clip_stride=args.clip_stride)
    print(f"analyze {model.name}: {summary}; written to {args.out}")
    return EXIT_OK


def _compare_command(args: argparse.Namespace) -> int:
    from headcam.eval.report import compare

    table, rows = compare(args.reports, args.out)
    print(table)
    print(f"compared {len(rows)} result(s) from {len(args.reports)} report(s)"
          + (f"; written to {args.out}" if args.out else ""))
    return EXIT_OK


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from headcam.eval.report import metrics_path

    if args.command == "compare":
        return _compare_command(args)
    for run in getattr(args, "run", []):  # before any feature is extracted
        metrics_path(run)
    _check_models(args)
    if args.command == "analyze":
        return _analyze_command(args)
    if args.command == "finetune":
        return _finetune_command(args)
    if args.command == "linear":
        return _linear_command(args)
    return _decode_command(args)


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
