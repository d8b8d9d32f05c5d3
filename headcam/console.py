"""What every headcam CLI shares: user errors as one line, exit codes, progress bars.

A user mistake (bad flag, missing file, wrong dataset) must end in one readable line and
exit code 2, never a traceback; a bug still shows its traceback so it can be reported.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")

EXIT_OK = 0
EXIT_NOTHING_DONE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3


class UsageError(Exception):
    """A mistake the user can fix (bad flag, missing input, incompatible dataset)."""


def run_main(prog: str, main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run a CLI ``main`` and turn user errors into a one-line message and exit code 2."""
    try:
        return main(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """A progress bar on stderr; quiet when HEADCAM_QUIET is set (tests, CI logs)."""
    import os

    disable = bool(os.environ.get("HEADCAM_QUIET"))
    yield from tqdm(items, desc=desc, total=total, unit=unit, disable=disable, dynamic_ncols=True, file=sys.stderr)
