"""What the two Slurm launchers (``headcam-train slurm.*``, ``headcam-ingest videos --slurm``) share: the time
limit's format and a submission whose failure is one line. Both submit through submitit; nothing here
imports it until a job is submitted."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def sbatch_errors() -> Iterator[None]:
    """Around a submitit executor and its submission: no ``sbatch`` here or its refusal is one line (exit 2)."""
    from submitit.core.utils import FailedJobError

    if not (shutil.which("sbatch") and shutil.which("srun")):
        raise UsageError("sbatch/srun not found: submitting needs a Slurm cluster's client tools")
    try:
        yield
    except FailedJobError as e:
        said = [line.strip().removeprefix("sbatch: error: ") for line in str(e).splitlines() if line.strip()]
        raise UsageError(f"sbatch refused the job: {'; '.join(said)}") from None
