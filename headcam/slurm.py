"""What the two Slurm launchers (``headcam-train slurm.*``, ``headcam-ingest videos --slurm``) share: the time
limit's format and a submission whose failure is one line. Both submit through submitit; nothing here
imports it until a job is submitted."""

from __future__ import annotations

import re
from typing import Any

from headcam.console import UsageError


def minutes(value: str | int, key: str) -> int:
    """A time limit in minutes from ``[D-]HH:MM`` or a number of minutes; 0 for ``""``. (Unquoted YAML reads
    ``4:00`` as the number 240, which is 4 h in minutes, so ``key=4:00`` means the same as ``key=04:00``.)"""
    if isinstance(value, int):
        return value
    if not value.strip():
        return 0
    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d\d)|(\d+)", value.strip())
    if not m:
        raise UsageError(f"{key}={value!r}: give [D-]HH:MM (e.g. 04:00) or minutes")
    days, hours, mins, plain = (int(g or 0) for g in m.groups())
    return plain or (days * 24 + hours) * 60 + mins


def submit(executor: Any, fn: Any, *args: Any) -> Any:
    """``executor.submit(fn, *args)`` (a submitit Job), with a missing ``sbatch`` or its refusal as one line."""
    from submitit.core.utils import FailedJobError

    try:
        return executor.submit(fn, *args)
    except FileNotFoundError:
        raise UsageError("sbatch not found: submitting needs a Slurm cluster") from None
    except FailedJobError as e:
        raise UsageError(f"sbatch refused the job: {' '.join(str(e).split())}") from None
