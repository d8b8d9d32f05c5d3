"""Places365-Standard as it ships: image tars plus the ``filelist_places365-standard`` text files.

::

    SRC/categories_places365.txt        /a/airfield 0            (365 lines: category path, label)
    SRC/places365_train_standard.txt    /a/airfield/00000001.jpg 0
    SRC/places365_val.txt               Places365_val_00000001.jpg 165
    SRC/data_256/a/airfield/00000001.jpg       (train; or data_large/)
    SRC/val_256/Places365_val_00000001.jpg     (val, one flat folder; or val_large/)

The three lists may also sit in ``SRC/filelist_places365-standard/``. The val images are one flat
folder whose labels live only in ``places365_val.txt``, which is why a plain ImageFolder cannot
read this layout. (The "easy format" download, ``places365_standard/{train,val}/<class>/``, is an
ImageFolder tree: ingest it with ``--format folder``.)

Labels are the lists' own indices; class names are the category paths without the leading letter
folder (``/a/apartment_building/outdoor`` -> ``apartment_building/outdoor``). A split whose image
folder is absent is left out (and said in ``dataset.json``); a listed file missing on disk is a
failure row. ``dataset.json`` lists the file lists as the sources (they index the images).
Keys: ``places365_<split>_<line number in the list>``.
"""

from __future__ import annotations

from pathlib import Path

from headcam.console import UsageError
from headcam.ingest.image_formats.base import Source
from headcam.ingest.image_formats.folder import FileItem, files_source

LIST_DIR = "filelist_places365-standard"
CATEGORIES = "categories_places365.txt"
LISTS = {"train": "places365_train_standard.txt", "val": "places365_val.txt"}
IMAGE_DIRS = {"train": ("data_256", "data_large"), "val": ("val_256", "val_large")}


def _list_file(src: Path, name: str) -> Path | None:
    return next((p for p in (src / name, src / LIST_DIR / name) if p.is_file()), None)


def _pairs(path: Path) -> list[tuple[str, int]]:
    """``(path, label)`` of every non-empty line of a Places365 list file."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        name, _, label = line.strip().rpartition(" ")
        if not name or not label.isdigit():
            raise UsageError(f"{path}:{n}: not '<path> <label>': {line.strip()!r}")
        out.append((name, int(label)))
    return out


def class_name(category_path: str) -> str:
    """``/a/apartment_building/outdoor`` -> ``apartment_building/outdoor``."""
    parts = category_path.strip("/").split("/")
    return "/".join(parts[1:] if len(parts) > 1 and len(parts[0]) == 1 else parts)


def open_source(src: Path, seed: int) -> Source:
    if not src.is_dir():
        raise UsageError(f"{src}: not a directory (places365 wants {CATEGORIES}, the split lists and data_256/)")
    cats = _list_file(src, CATEGORIES)
    if cats is None:
        raise UsageError(f"{src}: no {CATEGORIES} (here or in {LIST_DIR}/); places365 reads the official file lists")
    categories = _pairs(cats)
    if [label for _, label in categories] != list(range(len(categories))):
        raise UsageError(f"{cats}: labels are not 0..{len(categories) - 1} in order")
    names = [class_name(path) for path, _ in categories]
    items: dict[str, list[FileItem]] = {}
    inputs = [str(cats)]  # the lists are the index: an image they name may be missing (a failure row, not a crash)
    missing = []
    for split, list_name in LISTS.items():
        listed = _list_file(src, list_name)
        image_dir = next((src / d for d in IMAGE_DIRS[split] if (src / d).is_dir()), None)
        if listed is None or image_dir is None:
            missing.append(f"{split}: {list_name if listed is None else ' or '.join(IMAGE_DIRS[split]) + '/'}")
            continue
        pairs = _pairs(listed)
        inputs.append(str(listed))
        bad = next(((p, lab) for p, lab in pairs if lab >= len(names)), None)
        if bad is not None:
            raise UsageError(f"{listed}: label {bad[1]} of {bad[0]} is not one of the {len(names)} categories")
        items[split] = [FileItem(key=f"places365_{split}_{n:07d}", split=split, label=label,
                                 path=str(image_dir / rel.lstrip("/")), index=n)
                        for n, (rel, label) in enumerate(pairs, start=1)]
    if not items:
        raise UsageError(f"{src}: no split has both its list and its image folder ({'; '.join(missing)})")
    return files_source("places365", items, names, seed, notes={"categories": str(cats), "left_out": missing},
                        inputs=inputs)
