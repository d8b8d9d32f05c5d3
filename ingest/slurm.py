"""``headcam-ingest videos ... --slurm N``: the ingest as three Slurm submissions, each waiting for the one before.

Submitted through submitit (as ``headcam-train slurm.*``):

1. an array of N tasks, task i running phase 1 of ``headcam-ingest videos ... --part i/N`` with the arguments
   exactly as parsed here;
2. an array of N merge tasks, task i running ``headcam-ingest merge OUT --part i/N`` (its range of the shards,
   freeing staged bytes as they move, :mod:`headcam.ingest.merge`), after every ingest task succeeded;
3. the final step, ``headcam-ingest merge OUT`` (manifest, ``failures.parquet``, ``dataset.json``), after every
   merge task succeeded.

Each dependency is ``afterok`` with ``--kill-on-invalid-dep``: if a task fails, Slurm cancels what waits on it,
and the same command again redoes only what is unfinished (the journals keep what is done). A part whose inputs
partly failed still succeeds: the final step records the failures, as a local run does. Logs and job pickles go
to ``OUT/.slurm``.
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
                   help="submit a job array of N ingest parts (--part i/N), an array of N merge parts after it "
                        "and the final step (manifest, dataset.json) after those, then return; logs in OUT/.slurm "
                        "(default: 0, run here)")
    g.add_argument("--partition", default="", help="Slurm partition (default: the cluster's default)")
    g.add_argument("--account", default="", help="Slurm account to charge (default: yours)")
    g.add_argument("--time", default="04:00", metavar="[D-]HH:MM",
                   help="time limit of each job (default: 04:00)")
    g.add_argument("--cpus", type=int, default=0, help="CPUs per job (default: --workers)")


def _stage_part(args: argparse.Namespace, i: int, n: int) -> int:
    """Array task: phase 1 of part i of n. Any exit but 0 (all staged) or 3 (some inputs failed) fails the task."""
    from headcam.ingest.videos import run_videos

    code = run_videos(argparse.Namespace(**{**vars(args), "part": f"{i}/{n}", "slurm": 0}))
    if code not in (EXIT_OK, EXIT_PARTIAL):
        raise RuntimeError(f"headcam-ingest videos --part {i}/{n} ended with exit code {code}")
    return code


def _merge(out: str, workers: int, part: str | None) -> int:
    """A merge task (``headcam-ingest merge OUT --workers W [--part I/N]``), parsed by merge's own arguments."""
    from headcam.ingest.videos import add_merge_arguments, run_merge

    parser = ArgumentParser(prog="headcam-ingest merge")
    add_merge_arguments(parser)
    argv = [out, "--workers", str(workers), *(["--part", part] if part else [])]
    code = run_merge(parser.parse_args(argv))
    if code not in (EXIT_OK, EXIT_PARTIAL):
        raise RuntimeError(f"headcam-ingest merge {' '.join(argv)} ended with exit code {code}")
    return code


def submit_videos(args: argparse.Namespace) -> int:
    """Submit the ingest array, the merge array and the final step; prints their ids and where the logs go."""
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
    out = str(Path(args.out).absolute())  # the jobs may start in another directory
    with slurm.sbatch_errors():
        ex = submitit.SlurmExecutor(folder=folder)
        ex.update_parameters(job_name="headcam-ingest", nodes=1, ntasks_per_node=1, time=minutes,
                             cpus_per_task=args.cpus or args.workers, array_parallelism=n,
                             **{k: v for k, v in optional.items() if v})
        stage = _array_id(ex.map_array(_stage_part, [args] * n, range(1, n + 1), [n] * n))
        ex.update_parameters(job_name="headcam-ingest-merge", dependency=f"afterok:{stage}",
                             additional_parameters={"kill_on_invalid_dep": "yes"})
        merge = _array_id(ex.map_array(_merge, [out] * n, [args.workers] * n, [f"{i}/{n}" for i in range(1, n + 1)]))
        ex.update_parameters(job_name="headcam-ingest-finish", dependency=f"afterok:{merge}")
        final = ex.submit(_merge, out, args.workers, None).job_id
    print(f"submitted Slurm array job {stage} (ingest, --part i/{n}), array job {merge} (merge --part i/{n}, after "
          f"{stage}) and job {final} (manifest and dataset.json, after {merge}); the dataset is ready in {args.out} "
          f"when job {final} completes; logs in {folder}")
    return EXIT_OK


def _array_id(jobs: list) -> str:
    return jobs[0].job_id.split("_")[0]
