"""The one resumable ingest engine: videos and image datasets run through it the same way.

An ingest is two phases over ``OUT``, each journaled so a killed run resumes without redoing
or duplicating anything:

1. **Stage.** The input is cut into *units* (one video; a chunk of images; one Toybox clip).
   Worker processes (:mod:`headcam.ingest.pool`: they die with the parent) decode and encode a
   unit into ``OUT/.staging/<unit>.tar`` (encoded members, :class:`StagedTar`) and
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
from headcam.ingest.failures import FailureLog
from headcam.ingest.pool import in_flight, worker_pool
from headcam.shards import schema
from headcam.shards.atomic import TMP_MARK, atomic_open, atomic_write_bytes, remove_stale_temps
from headcam.shards.journal import Journal
from headcam.shards.writer import Sample, member_header, write_shard

STAGING = ".staging"
PARAMS = "params.json"
UNIT = "unit"  # journal record kind of a staged unit
_BLOCK = 512


class OutputError(Exception):
    """Writing the output failed (disk full, quota, file-size limit, read-only): the run stops, since
    every other file would fail the same way; nothing is journaled, so re-running resumes."""


def output_error(where: str | Path, e: OSError) -> OutputError:
    return OutputError(f"cannot write to {where}: {e.strerror or e} (errno {e.errno}); fix that (e.g. free space) "
                       "and run the same command again to resume")


def one_line(message: str, limit: int = 300) -> str:
    """Decoder messages can be multi-line C++ dumps; keep one readable line."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    text = " | ".join(lines) if lines else message
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_row(path: str, stage: str, exc: BaseException) -> dict[str, str]:
    return {"path": path, "stage": stage, "error_type": type(exc).__name__,
            "message": one_line(str(exc) or type(exc).__name__)}


# ---------------------------------------------------------------------------------------------
# Phase 1: a unit's files, written in a worker


class StagedTar:
    """``<unit>.tar`` of a unit's encoded members, written atomically; :meth:`add` returns the
    ``[offset, size]`` of a member's bytes, so phase 2 reads any member with one seek."""

    def __init__(self, path: Path):
        self.path = path
        self._open = atomic_open(path, "wb")
        self._offset = 0

    def __enter__(self) -> StagedTar:
        self._f = self._open.__enter__()
        return self

    def add(self, name: str, data: bytes) -> list[int]:
        header = member_header(name, len(data))
        self._f.write(header)
        self._f.write(data)
        self._f.write(b"\0" * (-len(data) % _BLOCK))
        span = [self._offset + len(header), len(data)]
        self._offset += len(header) + len(data) + (-len(data) % _BLOCK)
        return span

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self._f.write(b"\0" * (2 * _BLOCK))  # end of archive: the staging tar stays a valid tar
        self._open.__exit__(*exc)


def write_unit_index(staging_dir: Path, key: str, doc: dict[str, Any]) -> None:
    """``<unit>.json`` (plain json and an atomic write: no pyarrow in the workers)."""
    atomic_write_bytes(staging_dir / f"{key}.json", json.dumps(doc).encode())


def load_unit_index(staging_dir: Path, key: str) -> dict[str, Any]:
    return json.loads((staging_dir / f"{key}.json").read_text(encoding="utf-8"))


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
        """A unit with samples needs its index file too (a record alone could outlive a lost file)."""
        return not rec["n_samples"] or (self.dir / f"{rec['key']}.json").exists()

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
                journal: Journal, workers: int, unit_name: str) -> int:
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
        for u, rec in _run_pools(stage, [unit], params, staging, 1, again):
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


def _run_pools(stage: StageFn, units: Iterable[Unit], params: Any, staging: Staging, workers: int,
               crashed: list[Unit]) -> Iterator[tuple[Unit, dict[str, Any]]]:
    """(unit, record) as units finish. A dead worker breaks its pool: the units in flight go to
    ``crashed`` and the rest continue in a fresh pool."""
    units = iter(units)
    while True:
        state = _PoolState()
        with worker_pool(workers) as pool:
            def submit(unit: Unit, pool=pool):
                for stale in staging.dir.glob(f"{unit.key}.*{TMP_MARK}*"):  # a killed worker's temp files
                    stale.unlink()
                return pool.submit(stage, unit.payload, unit.key, str(staging.dir), params)

            for unit, fut in in_flight(submit, _until_broken(units, state), 2 * workers):
                try:
                    rec = fut.result()
                except OutputError:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
                except BrokenProcessPool:
                    crashed.append(unit)
                    state.broken = True
                    continue
                except Exception as e:  # a bug in a decoder library: report the unit's inputs, go on
                    rec = {"key": unit.key, "path": unit.paths[0], "n_samples": 0,
                           "failures": [failure_row(p, "decode", e) for p in unit.paths]}
                yield unit, rec
        if not state.broken:
            return


def collect_failures(records: Iterable[dict[str, Any]], failures: FailureLog) -> None:
    for rec in records:
        for row in rec["failures"]:
            failures.add(**row)


# ---------------------------------------------------------------------------------------------
# Phase 2: staged bytes -> shards


@dataclass(frozen=True)
class SampleSpec:
    """Where one sample's bytes are staged and what goes with them (picklable, for shard workers)."""

    key: str
    tar: str
    jpg: tuple[int, int]
    sal: tuple[int, int] | None
    label: int
    meta: dict[str, Any]


@dataclass
class ShardJob:
    name: str
    specs: list[SampleSpec]


#: Below this many samples, shards are written in this process: starting worker processes
#: (spawned, ~1 s) costs more than copying that many samples.
IN_PROCESS_SAMPLES = 4000


class _TarReader:
    """Open staging tars lazily, a bounded number at a time."""

    def __init__(self, limit: int = 64):
        self.limit = limit
        self.open: dict[str, Any] = {}

    def read(self, path: str, span: tuple[int, int]) -> bytes:
        handle = self.open.get(path)
        if handle is None:
            if len(self.open) >= self.limit:
                self.open.pop(next(iter(self.open))).close()
            handle = self.open[path] = open(path, "rb")  # noqa: SIM115 - closed in close()
        handle.seek(span[0])
        return handle.read(span[1])

    def close(self) -> None:
        for h in self.open.values():
            h.close()
        self.open.clear()


def write_one_shard(path: str, specs: list[SampleSpec]) -> int:
    """Copy the staged bytes of ``specs`` into the shard ``path`` (runs in a worker process)."""
    tars = _TarReader()
    try:
        return write_shard(path, (Sample(key=s.key, jpg=tars.read(s.tar, s.jpg), label=s.label, meta=s.meta,
                                         saliency_png=tars.read(s.tar, s.sal) if s.sal is not None else None)
                                  for s in specs))
    finally:
        tars.close()


def write_shards(jobs: Iterable[ShardJob], total: int, out: Path, plan_id: str, workers: int,
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
    if workers > 1 and n_samples >= IN_PROCESS_SAMPLES:
        written = _write_in_pool(todo, out, workers)
    else:
        written = ((j.name, write_one_shard(str(out / j.name), j.specs)) for j in todo)
    count = 0
    for name, n in progress(written, "shards", total=total, unit="shard"):
        journal.append("shard", name, samples=n, plan=plan_id)
        count += 1
    return count


def _write_in_pool(todo: Iterator[ShardJob], out: Path, workers: int) -> Iterator[tuple[str, int]]:
    with worker_pool(workers) as pool:
        for job, fut in in_flight(lambda job: pool.submit(write_one_shard, str(out / job.name), job.specs), todo,
                                  2 * workers):
            yield job.name, fut.result()


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
    """True (and says so) when ``out`` is a finished dataset made with ``params`` (None: any)."""
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
