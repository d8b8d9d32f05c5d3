"""What every headcam CLI shares: user errors as one line, exit codes, progress bars.

A user mistake (bad flag, missing file, wrong dataset) must end in one readable line and
exit code 2, never a traceback; a bug still shows its traceback so it can be reported.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")

EXIT_OK = 0
EXIT_NOTHING_DONE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3


#: Storage errors that are the machine's state, not a bug: reported in one line, resumable.
_STORAGE_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class UsageError(Exception):
    """A mistake the user can fix (bad flag, missing input, incompatible dataset)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error: ``prog: error: message (see prog --help)``, exit 2.

    Stock argparse prints the whole usage block before the error, which for a tool with many
    options buries the one line that matters. Sub-parsers inherit this class.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    except OSError as e:
        if e.errno not in _STORAGE_FULL:
            raise
        where = f" writing {e.filename}" if e.filename else ""
        print(f"{prog}: error: {e.strerror}{where}; free some space and run the same command again to resume "
              "(finished work is kept, nothing half-written counts as done)", file=sys.stderr)
        return EXIT_NOTHING_DONE


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """A progress bar on stderr; quiet when HEADCAM_QUIET is set (tests, CI logs)."""
    disable = bool(os.environ.get("HEADCAM_QUIET"))
    yield from tqdm(items, desc=desc, total=total, unit=unit, disable=disable, dynamic_ncols=True, file=sys.stderr)
