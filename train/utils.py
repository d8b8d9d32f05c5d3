"""Run-directory helpers shared by the trainer: metric logging and preemption signals.

Metrics go to three places, all from rank 0 only: the progress bar's postfix, TensorBoard
scalars under ``OUT/tb`` and one JSON object per line in ``OUT/metrics.jsonl`` (easy to load
with pandas or ``json``; appended, so a resumed run continues the same file).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import FrameType
from typing import Any


class MetricsLog:
    """Scalars -> ``metrics.jsonl`` + TensorBoard; a no-op on ranks other than 0."""

    def __init__(self, out: Path, enabled: bool):
        self.enabled = enabled
        self._tb = None
        self._jsonl = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(out / "tb"))
            self._jsonl = open(out / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in scalars.items():
            self._tb.add_scalar(f"train/{name}", value, step)
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


class StopRequest:
    """Remembers a SIGTERM (preemption), Ctrl-C or SIGUSR2 (Slurm's warning before the time limit, as submitit
    asks for it) so the loop can finish its step, checkpoint and exit.

    A second signal of the same kind acts as it normally would (Ctrl-C twice interrupts at once).
    :attr:`last_signal` keeps the signal that stopped a run, for the Slurm launcher (:mod:`headcam.train.slurm`),
    which requeues the job only on the time-limit warning, not on ``scancel``'s SIGTERM.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)
    last_signal: int | None = None  # per process, as signals are

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        StopRequest.last_signal = signum
        signal.signal(signum, self._previous[signum])

    def __enter__(self) -> StopRequest:
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
