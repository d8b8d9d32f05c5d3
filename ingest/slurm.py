"""``headcam-ingest videos ... --slurm N``: the ingest as a Slurm job array of ``--part i/N`` and a merge job.

Submitted through submitit (as ``headcam-train slurm.*``): array task i runs phase 1 of ``headcam-ingest videos
... --part i/N`` in the job, with the arguments exactly as parsed here; the merge job (``headcam-ingest merge
OUT``) waits for every task to succeed (``afterok``) and is cancelled by Slurm if one fails, after which the same
command again redoes only the unfinished parts (their journals keep what is done). A part whose inputs partly
failed still succeeds: the merge records the failures, as a local run does. Logs and job pickles go to
``OUT/.slurm``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from headcam import slurm
from headcam.console import EXIT_OK, EXIT_PARTIAL, ArgumentParser, UsageError

LOGS = ".slurm"


def add_slurm_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Slurm (submit instead of running here)")
    g.add_argument("--slurm", type=int, default=0, metavar="N",
                   help="submit a job array of N parts (--part i/N) and a merge job that runs when all succeeded, "
                        "then return; logs in OUT/.slurm (default: 0, run here)")
    g.add_argument("--partition", default="", help="Slurm partition (default: the cluster's default)")
    g.add_argument("--account", default="", help="Slurm account to charge (default: yours)")
    g.add_argument("--time", default="04:00", metavar="[D-]HH:MM",
                   help="time limit of each part and of the merge (default: 04:00)")
    g.add_argument("--cpus", type=int, default=0, help="CPUs per job (default: --workers)")


def _stage_part(args: argparse.Namespace, i: int, n: int) -> int:
    """Array task: phase 1 of part i of n. Any exit but 0 (all staged) or 3 (some inputs failed) fails the task."""
    from headcam.ingest.videos import run_videos

    code = run_videos(argparse.Namespace(**{**vars(args), "part": f"{i}/{n}", "slurm": 0}))
    if code not in (EXIT_OK, EXIT_PARTIAL):
        raise RuntimeError(f"headcam-ingest videos --part {i}/{n} ended with exit code {code}")
    return code


def _merge(out: str, workers: int) -> int:
    """The merge job: ``headcam-ingest merge OUT --workers W``, parsed by merge's own arguments."""
    from headcam.ingest.videos import add_merge_arguments, run_merge

    parser = ArgumentParser(prog="headcam-ingest merge")
    add_merge_arguments(parser)
    code = run_merge(parser.parse_args([out, "--workers", str(workers)]))
    if code not in (EXIT_OK, EXIT_PARTIAL):
        raise RuntimeError(f"headcam-ingest merge {out} ended with exit code {code}")
    return code


def submit_videos(args: argparse.Namespace) -> int:
    """Submit the array and the merge job; prints their ids and where the logs go."""
    import submitit

    from headcam.ingest.videos import _validate

    n = args.slurm
    if n < 1:
        raise UsageError(f"--slurm must be >= 1, got {n}")
    if args.part:
        raise UsageError("--slurm submits the parts itself: leave out --part")
    _validate(args)  # a typo fails here, not in N array tasks
    minutes = slurm.minutes(args.time, "--time")
    if minutes <= 0:
        raise UsageError("--time must be > 0")
    folder = (Path(args.out) / LOGS).absolute()
    optional = {"partition": args.partition, "account": args.account}
    with slurm.sbatch_errors():
        ex = submitit.SlurmExecutor(folder=folder)
        ex.update_parameters(job_name="headcam-ingest", nodes=1, ntasks_per_node=1, time=minutes,
                             cpus_per_task=args.cpus or args.workers, array_parallelism=n,
                             **{k: v for k, v in optional.items() if v})
        parts = ex.map_array(_stage_part, [args] * n, range(1, n + 1), [n] * n)
        array_id = parts[0].job_id.split("_")[0]
        ex.update_parameters(job_name="headcam-ingest-merge", dependency=f"afterok:{array_id}",
                             additional_parameters={"kill_on_invalid_dep": "yes"})
        merge = ex.submit(_merge, args.out, args.workers)
    print(f"submitted Slurm array job {array_id} ({n} parts, --part i/{n}) and merge job {merge.job_id} (runs when "
          f"every part succeeded); the dataset is ready in {args.out} when job {merge.job_id} completes; logs in "
          f"{folder}")
    return EXIT_OK
