"""Where a dataset lives: a local directory, a URL that fsspec opens, or a ``pipe:`` command.

Why here: every reader takes the dataset's location from the user as one string (``data=``, ``--data``),
and only the shard contract's package should know how a location becomes bytes. A location is one of:

- a **local directory** (no scheme): a :class:`pathlib.Path`, read as before;
- a **URL** with a scheme fsspec knows (``http(s)://``, ``s3://``, ``gs://``, ``hf://datasets/...``, ...):
  ``dataset.json``, ``manifest.parquet`` and the shards are read through fsspec. ``s3://``/``gs://`` need
  ``s3fs``/``gcsfs`` installed (headcam does not depend on them), ``hf://`` uses ``huggingface_hub``'s
  ``HfFileSystem``. HTTP shards are read as one streamed GET each, so any static file server will do (no
  Range requests needed);
- a **``pipe:`` command template** (webdataset's convention: a shard URL that is a shell command whose
  stdout is the file): ``{}`` stands for the file name, and every file of the dataset, ``dataset.json`` and
  the manifest included, is read by running the command with it, e.g. ``pipe:ssh host cat /data/ds/{}``.

:class:`RemotePath` stands for a remote dataset root and the files in it. It has the few
:class:`pathlib.Path` members that readers of :attr:`headcam.shards.dataset.Dataset.root` use (``/``,
``resolve``, ``read_bytes``, ``exists``, ``str``), so code written for local datasets reads remote ones
unchanged. Anything unreadable is a one-line :class:`LocationError`.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
PIPE = "pipe:"
#: fsspec protocols whose files are read as one streamed request (no Range requests, no size needed)
_STREAMED = ("http", "https")


class LocationError(Exception):
    """A remote location cannot be read (missing package, not found, unreachable, failing command)."""


def is_remote(location: str | Path) -> bool:
    """True for a URL (``scheme://``) or a ``pipe:`` command; False for a local path."""
    text = str(location)
    return text.startswith(PIPE) or bool(_SCHEME.match(text))


def locate(location: str | Path) -> Path | RemotePath:
    """The dataset root ``location`` names: a :class:`Path`, or a :class:`RemotePath` for a URL or ``pipe:``."""
    if isinstance(location, RemotePath):
        return location
    if not is_remote(location):
        return Path(location)
    text = str(location)
    if text.startswith(PIPE) and "{}" not in text:
        raise LocationError(f"{text}: a pipe: dataset names its files with {{}}, e.g. pipe:ssh host cat /data/ds/{{}}")
    return RemotePath(text if text.startswith(PIPE) else text.rstrip("/"))


@dataclass(frozen=True)
class RemotePath:
    """A remote dataset root (``name=""``) or one file in it; ``str()`` is the URL or command that reads it."""

    root: str
    name: str = ""

    def __truediv__(self, name: str) -> RemotePath:
        return RemotePath(self.root, name)

    @property
    def is_pipe(self) -> bool:
        return self.root.startswith(PIPE)

    def __str__(self) -> str:
        if not self.name:
            return self.root
        return self.root.replace("{}", self.name) if self.is_pipe else f"{self.root}/{self.name}"

    def resolve(self) -> RemotePath:
        """Already absolute (here so ``Dataset.root.resolve()`` works for every dataset)."""
        return self

    def read_bytes(self) -> bytes:
        """The whole file; :class:`LocationError` in one line when it cannot be read."""
        if self.is_pipe:
            done = self._run()
            if done.returncode:
                err = done.stderr.decode(errors="replace").strip().splitlines()
                raise LocationError(f"{self}: exit {done.returncode}" + (f" ({err[-1]})" if err else ""))
            return done.stdout
        try:
            with open_remote(str(self)) as f:
                return f.read()
        except LocationError:
            raise
        except Exception as e:  # any backend's read error is the same problem to the user
            raise LocationError(f"{self}: cannot read ({type(e).__name__}: {_line(e)})") from None

    def exists(self) -> bool:
        """Whether the file can be read (a ``pipe:`` command is run to find out)."""
        if self.is_pipe:
            return self._run().returncode == 0
        fs, path = _filesystem(str(self))
        return fs.exists(path)


    def _run(self) -> subprocess.CompletedProcess:
        """Run this file's ``pipe:`` command (webdataset's convention: a shell command, stdout is the file)."""
        return subprocess.run(str(self)[len(PIPE):], shell=True, capture_output=True)


def open_remote(url: str) -> IO[bytes]:
    """A readable binary stream of an fsspec ``url``; :class:`LocationError` in one line when it cannot be
    opened (the fsspec package for the scheme missing, not found, unreachable)."""
    fs, path = _filesystem(url)
    options = {"block_size": 0} if url.split("://", 1)[0].lower() in _STREAMED else {}
    try:
        return fs.open(path, "rb", **options)
    except FileNotFoundError:
        raise LocationError(f"{url}: not found (or its server is unreachable)") from None
    except Exception as e:  # fsspec backends raise their own types (aiohttp, httpx, botocore, ...)
        raise LocationError(f"{url}: cannot open ({type(e).__name__}: {_line(e)})") from None


def _filesystem(url: str):
    """fsspec's filesystem for ``url`` and the path inside it; a missing backend package is one line."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:
        raise LocationError(f"{url}: {_line(e)} (its fsspec backend is not installed)") from None
    except ValueError as e:
        raise LocationError(f"{url}: {_line(e)}") from None


def _line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def open_shard(url: str) -> IO[bytes]:
    """A shard's bytes: fsspec URLs as :func:`open_remote`; local paths and ``pipe:`` commands through
    webdataset's ``gopen`` (a file, or the command's stdout)."""
    if is_remote(url) and not url.startswith(PIPE):
        return open_remote(url)
    import webdataset as wds

    return wds.gopen(url, "rb")
