"""Readers of image datasets in their own on-disk formats, one module per format.

Each module's ``open_source(src, seed[, fps])`` checks that ``src`` is in its format (a
``UsageError`` says what is missing otherwise) and returns a :class:`~.base.Source`.
"""

from __future__ import annotations

from pathlib import Path

from headcam.ingest.image_formats.base import Source

FORMATS = ("folder", "cifar10", "stl10", "toybox")


def open_source(fmt: str, src: Path, seed: int, fps: float | None = None) -> Source:
    """Open ``src`` as a dataset of format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "folder":
        from headcam.ingest.image_formats import folder

        return folder.open_source(src, seed)
    if fmt == "cifar10":
        from headcam.ingest.image_formats import cifar10

        return cifar10.open_source(src, seed)
    if fmt == "stl10":
        from headcam.ingest.image_formats import stl10

        return stl10.open_source(src, seed)
    if fmt == "toybox":
        from headcam.ingest.image_formats import toybox

        return toybox.open_source(src, seed, fps=1.0 if fps is None else fps)
    raise ValueError(f"unknown image format {fmt!r}; one of {FORMATS}")
