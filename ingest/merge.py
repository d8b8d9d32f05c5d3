"""Writing a video dataset's shards: all in one run, or disjoint ranges in parallel parts, freeing staged
bytes as they move, so staging and output together need about the dataset's size, not twice it.

**Parts.** ``headcam-ingest merge OUT --part i/n`` (any number at a time, on any nodes that see OUT)
makes the whole plan from the staged units (the same in every part: it is deterministic) and writes
only the i-th of n contiguous ranges of its shards. ``headcam-ingest merge OUT`` then checks that every
part finished and writes the manifest, ``failures.parquet`` and ``dataset.json`` (seconds); without
parts, the same command first writes every shard itself.

**No second copy.** A video shard is never a byte run of a staging tar (its members are renamed to
the sample key and gain the label and ``.json`` members, known only from the plan), so nothing can
simply be renamed into place, and the image data sits at 512-byte offsets, so no filesystem can
share (reflink) its 4 KiB blocks. Instead, once a shard is written and journaled, the byte ranges its
samples occupied in their staging tars are punched out (:func:`headcam.ingest.staged.punch`):
staging shrinks as the output grows, and the peak is about the dataset plus the shards in flight.
Ranges of different shards never overlap, so parts free concurrently without coordinating. Where
the filesystem cannot punch holes (or the staging is read-only), staging is freed at the end instead
(a note says so).

**Journals.** A one-process merge journals shards in ``OUT/journal.jsonl`` (as image ingests do),
part i of n in ``OUT/journal.merge-i-of-n.jsonl``, which ends with a ``part`` record. A killed part
resumes with the same command: its journaled shards are skipped (their ranges punched again, in
case the kill came between record and punch) and the rest written. Freed bytes cannot be read
again, so the first punch pins the plan (``.staging/moved.json``): a staging area whose bytes went
into another plan's shards is refused, never read back as zeros.
"""

from __future__ import annotations

import errno
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from headcam.console import EXIT_OK, UsageError, progress
from headcam.ingest import engine, finalise
from headcam.ingest.engine import STAGING, ShardJob
from headcam.ingest.pool import Workers
from headcam.ingest.staged import SampleSpec, punch, staged_span
from headcam.shards import schema
from headcam.shards.atomic import TMP_MARK, atomic_write_bytes, remove_stale_temps
from headcam.shards.journal import Journal

MOVED = "moved.json"  # in each staging area once its bytes start moving: {"plan": fingerprint}
_PART_JOURNAL = re.compile(r"^journal\.merge-(\d+)-of-(\d+)\.jsonl$")


def part_range(total: int, part: tuple[int, int]) -> range:
    """Positions (in :meth:`headcam.ingest.finalise.Plan.shard_names`) of part i of n's shards: the i-th of n
    contiguous, near-equal ranges."""
    i, n = part
    return range((i - 1) * total // n, i * total // n)


def part_journals(out: Path) -> dict[tuple[int, int], Journal]:
    """The journals of merge parts run in ``out``, by (i, n)."""
    found = {}
    for path in sorted(out.glob("journal.merge-*-of-*.jsonl")):
        m = _PART_JOURNAL.match(path.name)
        if m:
            found[int(m[1]), int(m[2])] = Journal(path)
    return found


def remove_part_journals(out: Path) -> None:
    for journal in part_journals(out).values():
        journal.path.unlink(missing_ok=True)


def write_part(p: finalise.Plan, staging_dirs: list[Path], out: Path, plan_id: str, workers: Workers,
               part: tuple[int, int]) -> int:
    """``merge OUT --part i/n``: write (or finish writing) part i's range of shards; returns the exit code."""
    i, n = part
    others = sorted({m for _, m in part_journals(out)} - {n})
    if others:
        raise UsageError(f"the merge of {out} runs in parts of {others[0]} (--part I/{others[0]}); a different "
                         f"count would write the same shards twice")
    if (out / schema.JOURNAL).exists():
        raise UsageError(f"a merge of {out} without --part was started; finish it with `headcam-ingest merge {out}`")
    which = part_range(len(p.shard_names()), part)
    journal = Journal(out / f"journal.merge-{i}-of-{n}.jsonl")
    written = _write(p, which, staging_dirs, out, plan_id, workers, journal)
    journal.append("part", f"{i}/{n}", plan=plan_id, shards=len(which))
    print(f"merge part {i}/{n}: shards {which.start + 1}-{which.stop} of {len(p.shard_names())} in {out} "
          f"({written} written now); run `headcam-ingest merge {out}` when all {n} parts are done")
    return EXIT_OK


def write_all(p: finalise.Plan, staging_dirs: list[Path], out: Path, plan_id: str, workers: Workers) -> None:
    """``merge OUT`` (and a local ``videos`` run): every shard that is not written yet, or, when the merge ran in
    parts, a check that every part finished (a one-line refusal naming those that did not)."""
    parts = part_journals(out)
    if parts:
        _check_parts_finished(p, parts, out, plan_id)
    else:
        remove_stale_temps(out)  # this process alone writes into out
        _write(p, range(len(p.shard_names())), staging_dirs, out, plan_id, workers, Journal(out / schema.JOURNAL))


def _check_parts_finished(p: finalise.Plan, parts: dict[tuple[int, int], Journal], out: Path, plan_id: str) -> None:
    n = max(m for _, m in parts)
    finished = {i for (i, m), j in parts.items() if j.done("part").get(f"{i}/{m}", {}).get("plan") == plan_id}
    missing = [f"{i}/{n}" for i in range(1, n + 1) if i not in finished]
    if missing:
        raise UsageError(f"merge parts not finished: {', '.join(missing)}; run `headcam-ingest merge {out} --part "
                         f"I/{n}` for each, then this again")
    done = {name for j in parts.values() for name, r in j.done("shard").items() if r.get("plan") == plan_id}
    lost = [name for _, name, _ in p.shard_names() if name not in done or not _exists(out, name)]
    if lost:
        raise UsageError(f"{len(lost)} shards the merge parts wrote are gone ({lost[0]}, ...) and their staged "
                         f"frames were freed; delete {out} and ingest again")
    remove_stale_temps(out)


def _exists(out: Path, name: str) -> bool:
    return (out / name).exists() and (out / name).with_suffix(".idx").exists()


def _write(p: finalise.Plan, which: range, staging_dirs: list[Path], out: Path, plan_id: str, workers: Workers,
           journal: Journal) -> int:
    """Write the shards at positions ``which`` not journaled under ``plan_id``, freeing what each one read once it
    is journaled; returns how many were written."""
    done = {name for name, r in journal.done("shard").items() if r.get("plan") == plan_id}
    gone = sorted(name for name in done if not _exists(out, name))  # deleted by hand: written again if it can be
    if gone and any((d / STAGING / MOVED).exists() for d in staging_dirs):
        raise UsageError(f"{out / gone[0]} was written and its staged frames freed, but it is gone now; delete {out} "
                         "and ingest again")
    done -= set(gone)
    free = Freer(staging_dirs, plan_id)

    def todo() -> Iterator[ShardJob]:
        for job in finalise.shard_jobs(p, which):
            if job.name in done:
                free(job.parts)  # again: a kill may have come between its journal record and its punch
                continue
            for stale in out.glob(f"{Path(job.name).stem}.*{TMP_MARK}*"):  # only this shard's: parts run beside it
                stale.unlink()
            yield job

    names = p.shard_names()[which.start:which.stop]
    n_samples = sum(p.clips[c].length for _, _, ids in names for c in ids)
    count = 0
    for job, n in progress(engine.write_jobs(todo(), out, workers, n_samples), "shards", total=len(names),
                           unit="shard"):
        journal.append("shard", job.name, samples=n, plan=plan_id)
        free(job.parts)
        count += 1
    return count


class Freer:
    """Punches the staged bytes of written shards out of their staging tars; the first punch pins the plan."""

    def __init__(self, staging_dirs: list[Path], plan_id: str):
        self.dirs, self.plan_id = staging_dirs, plan_id
        self.pinned = False
        self.able = True
        for d in staging_dirs:
            moved = d / STAGING / MOVED
            if moved.exists() and json.loads(moved.read_text(encoding="utf-8"))["plan"] != plan_id:
                raise UsageError(f"{d}'s staged frames already went into the shards of another plan (were inputs "
                                 "added or parameters changed?), and are freed; delete it and ingest again")

    def __call__(self, parts: list[SampleSpec]) -> None:
        if not self.able:
            return
        if not self.pinned:
            try:
                for d in self.dirs:
                    atomic_write_bytes(d / STAGING / MOVED, json.dumps({"plan": self.plan_id}).encode())
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
                return self._cannot(d / STAGING)
            self.pinned = True
        spans: dict[str, list[tuple[int, int]]] = {}
        for spec in parts:
            spans.setdefault(spec.tar, []).append(staged_span(spec))
        for tar, ranges in spans.items():
            if not punch(tar, _joined(ranges)):
                return self._cannot(Path(tar).parent)

    def _cannot(self, where: Path) -> None:
        self.able = False
        print(f"headcam-ingest: note: cannot free staged frames in {where} as they move (its filesystem punches no "
              "holes, or it is read-only); they are freed at the end instead (staging and output then need about "
              "twice the dataset's size)", file=sys.stderr)


def _joined(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Byte ranges sorted, touching ones joined (one punch for a clip's frames, and no partial block between)."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out
