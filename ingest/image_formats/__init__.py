"""Readers of image datasets in their own on-disk formats, one module per format.

Each module's ``open_source(src, seed[, fps])`` checks that ``src`` is in its format (a
``UsageError`` says what is missing otherwise) and returns a :class:`~.base.Source`.
"""

from __future__ import annotations

from pathlib import Path

from headcam.ingest.image_formats.base import Source

#: Every format and the on-disk layout it reads (one line each for ``--format``'s help).
LAYOUTS = {
    "folder": "SRC/[train|val|test/]<class>/*.jpg (ImageFolder; Labeled-S, Konkle, ecoset, ImageNet)",
    "cifar10": "cifar-10-batches-py",
    "stl10": "stl10_binary",
    "toybox": "ROOT/<super>/<cat>_<id>_pivothead/*.mp4",
    "core50": "[core50_128x128/]s<session>/o<object>/*.png (50 objects; sessions 3, 7, 10 = test)",
    "places365": "data_256/ + val_256/ + the filelist_places365-standard lists",
}
FORMATS = tuple(LAYOUTS)


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
    if fmt == "core50":
        from headcam.ingest.image_formats import core50

        return core50.open_source(src, seed)
    if fmt == "places365":
        from headcam.ingest.image_formats import places365

        return places365.open_source(src, seed)
    if fmt == "toybox":
        from headcam.ingest.image_formats import toybox

        return toybox.open_source(src, seed, fps=1.0 if fps is None else fps)
    raise ValueError(f"unknown image format {fmt!r}; one of {FORMATS}")
