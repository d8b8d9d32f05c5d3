"""Turning the command line's INPUT... into a sorted list of video files.

An input is a file, a directory (searched recursively for video extensions) or ``@list.txt``
(one path per line; relative lines are relative to the list file; blank lines and ``#``
comments ignored). Paths are made absolute but symlinks are *not* resolved, so two links to one
file stay two inputs. Anything under the output directory is never taken as input, so ``--out``
may live inside the input tree. Problems (missing path, unreadable directory) become failures,
not crashes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from headcam.ingest.failures import FailureLog

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".m2v", ".ts", ".mts", ".m2ts", ".wmv",
    ".flv", ".3gp", ".ogv", ".dv", ".mxf",
})


def video_key(path: str) -> str:
    """The dot-free, deterministic id of a source: 10 hex digits of SHA-1 of its absolute path.

    Sample keys are ``<video_key>_<sampled frame index:06d>``; re-ingesting the same paths gives
    the same keys.
    """
    return hashlib.sha1(os.fsencode(path)).hexdigest()[:10]


@dataclass
class InputList:
    videos: list[str] = field(default_factory=list)  # absolute paths, sorted, unique
    skipped_non_video: int = 0  # files in searched directories without a video extension


def _absolute(path: str | Path) -> str:
    return os.path.abspath(os.fspath(path))


def _inside(path: str, root: str | None) -> bool:
    return root is not None and (path == root or path.startswith(root.rstrip(os.sep) + os.sep))


def _walk(directory: str, out_dir: str | None, failures: FailureLog, result: InputList, found: set[str]) -> None:
    def onerror(err: OSError) -> None:
        failures.add(err.filename or directory, "read", type(err).__name__, f"cannot read directory: {err.strerror}")

    for root, dirs, files in os.walk(directory, onerror=onerror, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not _inside(os.path.join(root, d), out_dir))
        for name in sorted(files):
            if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                found.add(os.path.join(root, name))
            else:
                result.skipped_non_video += 1


def _read_list(list_path: str, failures: FailureLog) -> list[str]:
    try:
        text = Path(list_path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        failures.add_exception(list_path, "read", e)
        return []
    base = os.path.dirname(list_path)
    lines = (line.strip() for line in text.splitlines())
    return [os.path.join(base, line) for line in lines if line and not line.startswith("#")]


def expand_inputs(inputs: list[str], failures: FailureLog, out_dir: str | Path | None = None) -> InputList:
    """Expand files, directories and ``@list`` files into sorted unique absolute video paths."""
    out_abs = _absolute(out_dir) if out_dir is not None else None
    result = InputList()
    found: set[str] = set()
    pending = list(inputs)
    while pending:
        item = pending.pop(0)
        if item.startswith("@") and not os.path.exists(item):
            pending[:0] = _read_list(_absolute(item[1:]), failures)
            continue
        path = _absolute(item)
        if _inside(path, out_abs):
            continue
        if os.path.isdir(path):
            _walk(path, out_abs, failures, result, found)
        elif os.path.isfile(path):
            found.add(path)  # named explicitly: taken whatever its extension, so it is reported if unreadable
        else:
            failures.add(path, "read", "FileNotFoundError", "no such file or directory")
    result.videos = sorted(found)
    return result
