"""The one resumable ingest engine: videos and image datasets run through it the same way.

An ingest is two phases over ``OUT``, each journaled so a killed run resumes without redoing
or duplicating anything:

1. **Stage.** The input is cut into *units* (one video; a chunk of images; one Toybox clip).
   Worker processes (:class:`headcam.ingest.pool.Workers`: they die with the parent, one pool for
   both phases) decode and encode a unit into ``OUT/.staging/<unit>.tar`` (encoded members,
   :mod:`headcam.ingest.staged`) and
   ``<unit>.json`` (its samples and their byte ranges), both atomic; the parent journals one
   record per finished unit in ``.staging/units.<all|part-i-of-n>.jsonl`` (:func:`stage_units`).
   The parameters are saved in ``.staging/params.json``; resuming with others is a usage error.
2. **Finalise.** The caller plans shards from the staged units (videos: clips and a global
   shuffle; images: the seeded source order); :func:`write_shards` copies the staged bytes into
   shards, journaled in ``OUT/journal.jsonl`` under a fingerprint of the whole plan;
   :func:`finish` writes the manifest, ``failures.parquet`` and ``dataset.json`` last (a dataset
   is complete iff it exists), then deletes the staging area and the journal.

A unit's record is ``{"key", "path", "n_samples", "failures": [row, ...], ...}``: failures are
(path, stage, error_type, message) rows for ``failures.parquet``; a unit with samples is staged.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headcam.console import EXIT_NOTHING_DONE, UsageError, progress
from headcam.ingest.dataset_meta import write_dataset_json
from headcam.ingest.failures import FailureLog, failure_row
from headcam.ingest.pool import Workers, in_flight
from headcam.ingest.staged import OutputError, SampleSpec, StagedRun, output_error, write_one_shard
from headcam.shards import schema
from headcam.shards.atomic import TMP_MARK, atomic_write_bytes, remove_stale_temps
from headcam.shards.journal import Journal

STAGING = ".staging"
PARAMS = "params.json"
UNIT = "unit"  # journal record kind of a staged unit


# ---------------------------------------------------------------------------------------------
# Phase 1: the staging area and its journals


class Staging:
    """``OUT/.staging``: parameters, unit journals (one per ``--part``), unit files."""

    def __init__(self, out: Path):
        self.out, self.dir = out, out / STAGING

    def exists(self) -> bool:
        return (self.dir / PARAMS).exists()

    def open(self, params: dict[str, Any]) -> None:
        """Create the staging area, or check that the one there was made with ``params``."""
        self.dir.mkdir(exist_ok=True)
        path = self.dir / PARAMS
        if not path.exists():
            atomic_write_bytes(path, (json.dumps(params, indent=2, sort_keys=True) + "\n").encode())
            return
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
        if diff:
            raise UsageError(f"{self.out} holds an unfinished ingest of other inputs or parameters "
                             f"({', '.join(f'{k}={old.get(k)}' for k in diff)}); rerun it as it was, or use "
                             "another --out")

    def params(self) -> dict[str, Any]:
        return json.loads((self.dir / PARAMS).read_text(encoding="utf-8"))

    def journal(self, tag: str = "all") -> Journal:
        return Journal(self.dir / f"units.{tag}.jsonl")

    def journals(self) -> list[Journal]:
        return [Journal(p) for p in sorted(self.dir.glob("units.*.jsonl"))]

    def records(self) -> dict[str, dict[str, Any]]:
        """Every unit journaled by any part, by key."""
        return {k: r for j in self.journals() for k, r in j.done(UNIT).items()}

    def is_staged(self, rec: dict[str, Any]) -> bool:
        """A unit with samples needs its files too: a record can outlive them (their renames are not
        fsynced, see :mod:`headcam.ingest.staged`), and then the unit is staged again."""
        key = rec["key"]
        return not rec["n_samples"] or ((self.dir / f"{key}.json").exists() and (self.dir / f"{key}.tar").exists())

    def remove(self) -> None:
        if self.dir.is_dir():
            shutil.rmtree(self.dir)


@dataclass(frozen=True)
class Unit:
    """One unit of work: ``payload`` goes to the stage function; ``paths`` take the blame if it kills its worker."""

    key: str
    paths: tuple[str, ...]
    payload: Any


StageFn = Callable[[Any, str, str, Any], dict[str, Any]]  # (payload, key, staging dir, params) -> record


def stage_units(stage: StageFn, keys: Sequence[str], make_unit: Callable[[str], Unit], params: Any, staging: Staging,
                journal: Journal, workers: Workers, unit_name: str) -> int:
    """Phase 1 over the units in ``keys`` not yet staged (by any part); returns how many were staged now.

    ``make_unit(key)`` makes a unit when its turn comes (at most two per worker exist at a time, and a
    finished one is never made again). ``stage`` runs in worker processes and must not raise for
    a bad input (it returns failure rows); an :class:`OutputError` stops the run. A unit whose
    worker dies (a decoder segfault) is retried alone; if it kills that worker too, its paths are
    recorded as ``WorkerCrashed``.
    """
    done = {k for k, r in staging.records().items() if staging.is_staged(r)}
    todo = [k for k in keys if k not in done]
    crashed: list[Unit] = []
    n = 0
    for unit, rec in progress(_run_pools(stage, map(make_unit, todo), params, staging, workers, crashed),
                              unit_name + "s", total=len(todo), unit=unit_name):
        journal.append(UNIT, unit.key, **rec)
        n += 1
    for unit in crashed:
        again: list[Unit] = []
        with Workers(1) as alone:
            for u, rec in _run_pools(stage, [unit], params, staging, alone, again):
                journal.append(UNIT, u.key, **rec)
        if again:
            rows = [{"path": p, "stage": "decode", "error_type": "WorkerCrashed",
                     "message": "the decoding process died on this input (twice)"} for p in unit.paths]
            journal.append(UNIT, unit.key, key=unit.key, path=unit.paths[0], n_samples=0, failures=rows)
        n += 1
    return n


@dataclass
class _PoolState:
    broken: bool = False


def _until_broken(units: Iterator[Unit], state: _PoolState) -> Iterator[Unit]:
    """``units`` until the pool breaks; checked before each pull, so no unit is lost for the next pool."""
    while not state.broken:
        unit = next(units, None)
        if unit is None:
            return
        yield unit


def _run_pools(stage: StageFn, units: Iterable[Unit], params: Any, staging: Staging, workers: Workers,
               crashed: list[Unit]) -> Iterator[tuple[Unit, dict[str, Any]]]:
    """(unit, record) as units finish. A dead worker breaks its pool: the units in flight go to
    ``crashed`` and the rest continue in a fresh pool."""
    def submit(unit: Unit):
        for stale in staging.dir.glob(f"{unit.key}.*{TMP_MARK}*"):  # a killed worker's temp files
            stale.unlink()
        return workers.pool.submit(stage, unit.payload, unit.key, str(staging.dir), params)

    units = iter(units)
    while True:
        state = _PoolState()
        for unit, fut in in_flight(submit, _until_broken(units, state), 2 * workers.n):
            try:
                rec = fut.result()
            except BrokenProcessPool:
                crashed.append(unit)
                state.broken = True
                continue
            except OutputError:
                raise
            except Exception as e:  # a bug in a decoder library: report the unit's inputs, go on
                rec = {"key": unit.key, "path": unit.paths[0], "n_samples": 0,
                       "failures": [failure_row(p, "decode", e) for p in unit.paths]}
            yield unit, rec
        if not state.broken:
            return
        workers.close()  # broken: the next unit starts a fresh pool


def collect_failures(records: Iterable[dict[str, Any]], failures: FailureLog) -> None:
    for rec in records:
        for row in rec["failures"]:
            failures.add(**row)


#: Failed inputs named one by one at the end of a run; the rest are counted (failures.parquet holds them all).
LIST_FAILURES = 20


def print_failures(failures: FailureLog, limit: int = LIST_FAILURES) -> None:
    """Each failed input's path, stage and reason on stderr, the first ``limit`` of them, so the user sees what
    went wrong without opening failures.parquet; printed before the run's one-line summary."""
    rows = failures.rows
    for r in rows[:limit]:
        print(f"  {r['path']}: {r['stage']} failed: {r['error_type']}: {r['message']}", file=sys.stderr)
    if len(rows) > limit:
        print(f"  ... and {len(rows) - limit} more", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Phase 2: staged bytes -> shards


@dataclass
class ShardJob:
    """A shard to write: its name and its samples' staged bytes, in order."""

    name: str
    parts: list[SampleSpec | StagedRun]


#: Below this many samples, shards are written in this process unless the workers are already
#: running: starting them (spawned, ~1 s) costs more than copying that many samples.
IN_PROCESS_SAMPLES = 4000


def write_shards(jobs: Iterable[ShardJob], total: int, out: Path, plan_id: str, workers: Workers,
                 n_samples: int) -> int:
    """Write every shard of ``jobs`` not journaled as done under this ``plan_id``; returns how many.

    ``plan_id`` fingerprints the whole sample assignment: if a resumed run plans otherwise, the old
    journal records no longer match and every shard is rewritten (shards are deterministic, so
    rewriting an unchanged one is harmless). ``jobs`` is consumed lazily, two per worker at a time.
    """
    journal = Journal(out / schema.JOURNAL)
    done = journal.done("shard")

    def is_done(name: str) -> bool:
        rec, path = done.get(name), out / name
        return bool(rec) and rec.get("plan") == plan_id and path.exists() and path.with_suffix(".idx").exists()

    todo = (j for j in jobs if not is_done(j.name))
    remove_stale_temps(out)
    count = 0
    for job, n in progress(write_jobs(todo, out, workers, n_samples), "shards", total=total, unit="shard"):
        journal.append("shard", job.name, samples=n, plan=plan_id)
        count += 1
    return count


def write_jobs(jobs: Iterable[ShardJob], out: Path, workers: Workers, n_samples: int
               ) -> Iterator[tuple[ShardJob, int]]:
    """Write each job's shard into ``out``, in order, yielding (job, samples written): in this process for
    a small dataset (``n_samples``), else on the worker pool, two jobs per worker in flight, ``jobs`` consumed
    lazily."""
    if workers.started or (workers.n > 1 and n_samples >= IN_PROCESS_SAMPLES):
        return ((job, fut.result()) for job, fut in in_flight(
            lambda job: workers.pool.submit(write_one_shard, str(out / job.name), job.parts), jobs, 2 * workers.n))
    return ((job, write_one_shard(str(out / job.name), job.parts)) for job in jobs)


# ---------------------------------------------------------------------------------------------
# The end of a run


def stops_cleanly(run: Callable[[Any], int]) -> Callable[[Any], int]:
    """Output write failures (disk full, quota, file-size limit) end the run with one line and exit 1;
    what is journaled stays valid, so the same command resumes once the cause is fixed."""
    def wrapped(args: Any) -> int:
        try:
            return run(args)
        except OutputError as e:
            message = str(e)
        except OSError as e:
            message = str(output_error(args.out or args.dir, e))
        print(f"headcam-ingest: error: {message}", file=sys.stderr)
        return EXIT_NOTHING_DONE

    wrapped.__doc__ = run.__doc__
    return wrapped


def already_done(out: Path, params: dict[str, Any] | None) -> bool:
    """True (and says so) when ``out`` is a finished dataset made with ``params`` (None: any).

    A run killed between writing ``dataset.json`` and deleting its staging area and journal left
    a complete dataset: those leftovers are deleted here.
    """
    meta_path = out / schema.DATASET_JSON
    if not meta_path.is_file():
        return False
    try:
        doc = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"{meta_path} is unreadable ({e}); delete {out} or use another --out") from e
    if params is not None and doc.get("params") != params:
        raise UsageError(f"{out} holds a finished dataset made from other inputs or parameters; "
                         "use another --out or delete it")
    if Staging(out).dir.exists() or (out / schema.JOURNAL).exists():  # a run killed after it completed
        Staging(out).remove()
        (out / schema.JOURNAL).unlink(missing_ok=True)
    print(f"{out} is already a complete dataset; nothing to do")
    return True


def finish(out: Path, shard_names: set[str], manifest, failures: FailureLog, doc: dict[str, Any]) -> None:
    """Manifest, failures, then ``dataset.json`` (the mark of a complete dataset); then clean up.

    Shards of an earlier plan (a resumed run over changed inputs) are deleted first, so the
    directory holds exactly what the manifest lists.
    """
    from headcam.shards.dataset import write_table

    for stale in itertools.chain(out.glob("*.tar"), out.glob("*.idx")):
        if stale.with_suffix(".tar").name not in shard_names:
            stale.unlink()
    write_table(out / schema.MANIFEST, manifest)
    failures.write(out)
    write_dataset_json(out, doc)
    Staging(out).remove()
    (out / schema.JOURNAL).unlink(missing_ok=True)
