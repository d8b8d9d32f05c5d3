"""Inputs that could not be read: collected as rows, written as ``failures.parquet``.

A bad file never stops an ingest; it becomes one row (path, stage, error type, message) so the
run can finish, print a summary and exit 3, and ``inspect`` can show what was lost.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from headcam.shards import schema

#: The stages a failure can be attributed to (FAILURES_SCHEMA's ``stage`` column).
STAGES = ("probe", "decode", "encode", "saliency", "read", "write")


def one_line(message: str, limit: int = 300) -> str:
    """Decoder messages can be multi-line C++ dumps; keep one readable line."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    text = " | ".join(lines) if lines else message
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_row(path: str, stage: str, exc: BaseException) -> dict[str, str]:
    """One row of failures.parquet for ``exc`` (as a worker returns it)."""
    return {"path": path, "stage": stage, "error_type": type(exc).__name__,
            "message": one_line(str(exc) or type(exc).__name__)}


class StageFailure(Exception):
    """An input failed at ``stage`` (one of :data:`STAGES`): it becomes a row, the run goes on."""

    def __init__(self, stage: str, exc: BaseException):
        super().__init__(str(exc))
        self.stage, self.exc = stage, exc


class FailureLog:
    """Rows of failures, de-duplicated by (path, stage), in the order first seen."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], dict[str, str]] = {}

    def add(self, path: str | Path, stage: str, error_type: str, message: str) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown failure stage {stage!r}; one of {STAGES}")
        row = {"path": str(path), "stage": stage, "error_type": error_type, "message": message.strip()}
        self._rows.setdefault((row["path"], stage), row)

    def add_exception(self, path: str | Path, stage: str, exc: BaseException) -> None:
        self.add(path, stage, type(exc).__name__, str(exc) or type(exc).__name__)

    @property
    def rows(self) -> list[dict[str, str]]:
        return list(self._rows.values())

    def __len__(self) -> int:
        return len(self._rows)

    def summary(self) -> str:
        """E.g. ``2 failed (decode: 1, probe: 1)``; empty when nothing failed."""
        if not self._rows:
            return ""
        by_stage = Counter(r["stage"] for r in self._rows.values())
        return f"{len(self._rows)} failed ({', '.join(f'{s}: {n}' for s, n in sorted(by_stage.items()))})"

    def write(self, out_dir: str | Path) -> Path:
        """Write ``failures.parquet`` atomically (always, even empty, so readers need not guess)."""
        from headcam.shards.dataset import failures_table, write_table  # pyarrow: not in worker processes

        path = Path(out_dir) / schema.FAILURES
        write_table(path, failures_table(self.rows))
        return path
