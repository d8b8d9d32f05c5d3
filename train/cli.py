"""``headcam-train CONFIG.yaml [key=value ...]``: train a backbone on a headcam dataset.

Arguments are read and the config is resolved and validated before torch, timm or DALI are
imported, so ``--help`` and usage errors answer at once; the trainer is imported only to train.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from headcam.console import EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL, ArgumentParser, run_main
from headcam.train import registry


def epilog() -> str:
    from headcam.pipelines.spec import recipe_names

    return f"""\
methods (method=NAME; default recipe in brackets):
{registry.help_table()}

Any config key can be overridden: data=DIR out=RUNDIR method=NAME backend=torch|dali optim.lr=0.1 ...
recipe=NAME|PATH.yaml picks the augmentation (default: the method's published one) and augment.KEY=VALUE
changes one of its keys (e.g. augment.blur.p=0). Recipes: {', '.join(recipe_names())}.
A summary is printed before training; the whole resolved config, augmentation included, is saved as
RUNDIR/config.yaml (--print-config prints it and exits). A mistyped key names its near matches.

Multi-GPU / multi-node: torchrun --nproc_per_node=N -m headcam.train.cli CONFIG.yaml ...
(or torchrun ... $(which headcam-train) ...). batch_size is per process.
Slurm: slurm.nodes=N slurm.gpus_per_node=G slurm.time=HH:MM [slurm.partition=P slurm.account=A ...] submits
the run (one task per GPU) and returns; before each time limit the job saves a checkpoint, requeues itself
and resumes (up to slurm.requeue_max times). Logs in slurm.folder (default RUNDIR/slurm).

Run directory (out=): config.yaml, checkpoint.pt (every ckpt_every steps, at the end and on
SIGTERM), metrics.jsonl, tb/ (TensorBoard). resume=auto continues from out/checkpoint.pt exactly.

Exit codes: 0 finished (or nothing left to do), 1 loss became NaN/inf (last good checkpoint kept),
2 usage error, 3 stopped by SIGTERM, SIGUSR2 or Ctrl-C after finishing the step and saving a checkpoint (run
the same command to resume; a second Ctrl-C interrupts at once, exit 130, without saving).
"""


class _Help(argparse.RawDescriptionHelpFormatter):
    """Builds the epilog (recipe names are read from disk) only when --help is asked for."""

    def add_text(self, text: str | None) -> None:
        super().add_text(epilog() if text == "EPILOG" else text)


def _main(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="headcam-train", description="Train a backbone on a headcam dataset with one of the methods "
        f"below ({', '.join(registry.names())}).", epilog="EPILOG", formatter_class=_Help)
    parser.add_argument("config", nargs="?", help="YAML recipe, e.g. configs/demo.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (dotted keys)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the whole resolved config (YAML) and exit without training")
    args = parser.parse_args(argv)
    if args.config is None:
        parser.error("give a config file, e.g. headcam-train configs/demo.yaml data=DIR out=RUNDIR")

    from headcam.config import to_dict
    from headcam.train.config import load_train_config

    cfg = load_train_config(args.config, args.overrides)
    main_rank = os.environ.get("RANK", "0") == "0"  # torchrun sets RANK before the group exists
    if args.print_config:
        import yaml

        if main_rank:
            print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return EXIT_OK

    if cfg.slurm.nodes:
        return _submit(cfg, args.config, args.overrides)

    from headcam.train.trainer import NonFiniteLoss, train

    try:
        result = train(cfg, announce=lambda line: print(line, flush=True))
    except NonFiniteLoss as e:
        print(f"headcam-train: {e}", file=sys.stderr)
        return EXIT_NOTHING_DONE
    if not main_rank:
        return EXIT_PARTIAL if result.stopped == "preempted" else EXIT_OK
    if result.stopped == "nothing to do":
        print(f"already at step {result.step} of {result.total_steps} in {result.checkpoint}; nothing to do")
        return EXIT_OK
    print(f"{cfg.method} {cfg.arch}: {result.steps_run} steps (now {result.step}/{result.total_steps}) in "
          f"{result.seconds:.1f} s, {result.images_per_s:.1f} img/s, loss {result.last_loss:.4f}; "
          f"{'PREEMPTED, ' if result.stopped == 'preempted' else ''}checkpoint {result.checkpoint}")
    if result.skipped:
        print("data problems (skipped or worked around; see the warnings): "
              + ", ".join(f"{k} {v}" for k, v in sorted(result.skipped.items())), file=sys.stderr)
    return EXIT_PARTIAL if result.stopped == "preempted" else EXIT_OK


def _submit(cfg: Any, path: str, overrides: list[str]) -> int:
    """slurm.nodes > 0: hand the run to Slurm (headcam.train.slurm) and return; the job requeues itself."""
    from headcam.config import read_config
    from headcam.train.slurm import submit

    job_id, folder = submit(cfg, read_config(path, overrides))
    s = cfg.slurm
    print(f"submitted Slurm job {job_id}: {cfg.method} {cfg.arch}, {s.nodes} node(s) x {max(1, s.gpus_per_node)} "
          f"task(s), {s.minutes()} min per slot, requeued at the time limit up to {s.requeue_max} times; run "
          f"directory {cfg.out}; logs in {folder} ({job_id}_0_log.out)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_main("headcam-train", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
