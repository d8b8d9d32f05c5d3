"""CORe50 as it ships: ``core50_128x128/s<session>/o<object>/C_<ss>_<oo>_<fff>.png`` (or ``core50_350x350``).

50 domestic objects, 5 per category, each filmed in 11 sessions (8 indoor, 3 outdoor backgrounds),
~300 frames per session and object (Lomonaco & Maltoni 2017). Labels are the **object** (50
classes ``o1`` ... ``o50``, in number order): eminorhan/dino's ``eval_linear_core50.sh`` reads
``--num_labels 50`` (its logs' classifier is 50 wide). The category (10 classes) is kept in a
manifest column for anyone who wants it.

Splits follow the dataset's own benchmark: sessions 3, 7 and 10 are ``test``, the other eight are
``train``. (The reference's ``core50/train`` and ``core50/val`` folders were made outside its
published code; its logs score 75,000 val images, so its held-out sessions cannot be read off it:
configs/REFERENCES.md.) Extra manifest columns: ``session``, ``object``, ``category``.
Keys: ``core50_s<ss>_o<oo>_<index of the file in its folder, sorted>``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from headcam.console import UsageError
from headcam.ingest.image_formats.base import Source
from headcam.ingest.image_formats.folder import FileItem, files_source, images_under

N_OBJECTS = 50
N_SESSIONS = 11
TEST_SESSIONS = frozenset({3, 7, 10})
#: Objects 1-5 are plug adapters, 6-10 mobile phones, ... (the dataset's class list, 5 objects each).
CATEGORIES = ("plug_adapter", "mobile_phone", "scissors", "light_bulb", "can", "glasses", "ball", "marker", "cup",
              "remote_control")
CLASS_NAMES = [f"o{i}" for i in range(1, N_OBJECTS + 1)]
ROOT_NAMES = ("core50_128x128", "core50_350x350")
SESSION_DIR = re.compile(r"^s(\d+)$")
OBJECT_DIR = re.compile(r"^o(\d+)$")

EXTRA_SCHEMA = pa.schema([("session", pa.int64()), ("object", pa.int64()), ("category", pa.string())])


def category(object_id: int) -> str:
    return CATEGORIES[(object_id - 1) // 5]


def split_of(session: int) -> str:
    return "test" if session in TEST_SESSIONS else "train"


def find_root(src: Path) -> Path:
    """``src`` itself when it holds session folders, else its ``core50_128x128`` / ``core50_350x350``."""
    if any(SESSION_DIR.match(p.name) for p in src.iterdir() if p.is_dir()):
        return src
    for name in ROOT_NAMES:
        if (src / name).is_dir():
            return src / name
    raise UsageError(f"{src}: no CORe50 session folders (core50 wants [core50_128x128/]s<session>/o<object>/*.png)")


def open_source(src: Path, seed: int) -> Source:
    if not src.is_dir():
        raise UsageError(f"{src}: not a directory (core50 wants [core50_128x128/]s<session>/o<object>/*.png)")
    root = find_root(src)
    items: dict[str, list[FileItem]] = {"train": [], "test": []}
    skipped = []
    for sdir in sorted(p for p in root.iterdir() if p.is_dir()):
        s = SESSION_DIR.match(sdir.name)
        if s is None or not 1 <= int(s[1]) <= N_SESSIONS:
            skipped.append(str(sdir))
            continue
        session = int(s[1])
        for odir in sorted(p for p in sdir.iterdir() if p.is_dir()):
            o = OBJECT_DIR.match(odir.name)
            if o is None or not 1 <= int(o[1]) <= N_OBJECTS:
                skipped.append(str(odir))
                continue
            obj = int(o[1])
            extra = {"session": session, "object": obj, "category": category(obj)}
            items[split_of(session)] += [
                FileItem(key=f"core50_s{session:02d}_o{obj:02d}_{i:03d}", split=split_of(session), label=obj - 1,
                         path=str(p), index=i, extra=extra)
                for i, p in enumerate(images_under(odir))]
    items = {split: v for split, v in items.items() if v}
    if not items:
        raise UsageError(f"{root}: no images under s<session>/o<object>/ (sessions 1-{N_SESSIONS}, "
                         f"objects 1-{N_OBJECTS})")
    return files_source("core50", items, CLASS_NAMES, seed, extra_schema=EXTRA_SCHEMA,
                        notes={"root": str(root), "labels": "object (50 classes)",
                               "test_sessions": sorted(TEST_SESSIONS), "skipped_dirs": skipped})
