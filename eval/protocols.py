"""Which samples train the readout and which ones score it (SPEC §7): named presets, one per reference protocol.

A protocol is data (:class:`Preset` in :data:`PRESETS`), read by :func:`resolve_protocol`; each
follows one of three rules, transcribed from the script that produced the published numbers
(configs/REFERENCES.md, "Evaluation protocols"):

- ``shuffle`` (``labeled-s``, ``konkle-objects``): one folder, shuffled and cut in two, as
  eminorhan/dino's ``eval_linear.py --split [--subsample]`` (and baby-vision's
  ``linear_decoding.py``) do: half / half, or with ``subsample`` only the first 10 % of the
  shuffle, 5 % / 5 %. The scripts shuffle unseeded; here the shuffle is
  ``np.random.RandomState(seed).shuffle`` over torchvision ImageFolder's sample order (class, then
  file path), i.e. the split the script makes after ``np.random.seed(seed)``.
- ``splits`` (``core50``, ``ecoset``, ``places365``, ``imagenet``, ``splits``): the dataset's own
  train split against its val (else test) split, or a second dataset (``--test-data``) whose
  labels are matched by class name; on a video dataset (``splits``) train clips vs held-out clips.
- ``column`` (``toybox-iid``, ``toybox-exemplar``): one Toybox dataset whose manifest columns
  ``split_iid`` / ``split_exemplar`` (written by ``headcam-ingest images``) decide.

A protocol is resolved from the manifests alone, before any feature is computed, so a missing
column or a class without training samples costs one line and no extraction time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from headcam.console import UsageError

if TYPE_CHECKING:
    from headcam.shards.dataset import Dataset

#: ``eval_linear.py:95``: ``split = int(np.floor(0.5 * num_train))``.
SPLIT_FRACTION = 0.5
#: ``eval_linear.py:92``: ``num_data = int(0.1 * num_train)``, then half of it trains, half tests.
SUBSAMPLE_FRACTION = 0.1
TEST_SPLIT_PREFERENCE = ("val", "test")


@dataclass(frozen=True)
class Preset:
    """One evaluation protocol as its reference builds it."""

    name: str
    rule: str  # "shuffle" | "splits" | "column" (module docstring)
    reference: str  # the script lines it follows (commits in configs/REFERENCES.md)
    layout: str  # how the dataset ships and which ingest reads it
    n_classes: int | None = None  # the reference's class count (--num_labels); None: whatever the data has
    subsample: bool = False  # shuffle: only the first 10 % of the shuffle, 5 % train / 5 % test
    column: str | None = None  # column: the manifest column holding train/test
    test_data: bool = False  # splits: may the held-out samples come from a second dataset (--test-data)

    @property
    def rule_text(self) -> str:
        if self.rule == "shuffle":
            return ("one folder shuffled (--seed), first 10 % kept: 5 % train / 5 % test" if self.subsample
                    else "one folder shuffled (--seed), 50 % train / 50 % test")
        if self.rule == "column":
            return f"manifest column {self.column} (train/test, fixed at ingest)"
        return "train split vs val (else test) split" + (", or vs --test-data" if self.test_data else "")


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("labeled-s", "shuffle", "ed/eval_scripts/eval_linear_labeled_s.sh:38-42; ed/eval_linear.py:79-96",
           "26 class folders: --format folder", n_classes=26, subsample=True),
    Preset("konkle-objects", "shuffle", "ed/eval_scripts/eval_linear_konkle.sh:38-41; ed/eval_linear.py:79-96",
           "240 object-category folders: --format folder", n_classes=240),
    Preset("core50", "splits", "ed/eval_scripts/eval_linear_core50.sh:38-40",
           "s<session>/o<object>/: --format core50 (sessions 3, 7, 10 held out); train/ + val/ class folders: "
           "--format folder", n_classes=50, test_data=True),
    Preset("ecoset", "splits", "ed/eval_scripts/eval_linear_ecoset.sh:38-40",
           "train/ val/ test/ class folders: --format folder (scored on val)", n_classes=565, test_data=True),
    Preset("places365", "splits", "ed/eval_scripts/eval_linear_places365.sh:38-40",
           "data_256/ + val_256/ + file lists: --format places365; places365_standard/ (easy format): --format folder",
           n_classes=365, test_data=True),
    Preset("imagenet", "splits", "ed/eval_scripts/eval_linear_imagenet.sh:38-40",
           "train/<wnid>/ + val/<wnid>/ (val sorted into class folders): --format folder, or two datasets with "
           "--test-data", n_classes=1000, test_data=True),
    Preset("toybox-iid", "column", "bv/linear_decoding.py:59-80 (train_frac 0.5); SPEC §7",
           "Toybox clips: --format toybox", n_classes=12, column="split_iid"),
    Preset("toybox-exemplar", "column", "SPEC §7 (objects 28-30 held out)",
           "Toybox clips: --format toybox", n_classes=12, column="split_exemplar"),
    Preset("splits", "splits", "headcam: the dataset's own splits", "any headcam dataset"),
)}
PROTOCOLS = tuple(PRESETS)


@dataclass
class Source:
    """Labelled samples of one dataset: the splits to extract and the keys to keep (in order)."""

    dataset: Dataset
    splits: list[str]
    keys: list[str]
    labels: np.ndarray  # from the manifest, already mapped to the protocol's class indices
    label_map: np.ndarray | None = None  # dataset label -> protocol label (None: identity)


@dataclass
class Plan:
    protocol: str
    train: Source
    test: Source
    class_names: list[str]
    notes: dict[str, Any] = field(default_factory=dict)  # how the split was made, for the report

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def _column(ds: Dataset, name: str) -> list:
    return ds.manifest.column(name).to_pylist()


def _source(ds: Dataset, mask: np.ndarray, label_map: np.ndarray | None = None) -> Source:
    keys = np.array(_column(ds, "key"), dtype=object)
    labels = np.array(_column(ds, "label"), dtype=np.int64)
    splits = np.array(_column(ds, "split"), dtype=object)
    mask = mask & (labels >= 0)  # unlabelled samples (STL-10 "unlabeled") never enter a readout
    if label_map is not None:
        mapped = np.full(len(labels), -1, dtype=np.int64)
        mapped[mask] = label_map[labels[mask]]
        mask &= mapped >= 0
        labels = mapped
    return Source(dataset=ds, splits=sorted(set(splits[mask].tolist())), keys=keys[mask].tolist(),
                  labels=labels[mask], label_map=label_map)


def _class_names(ds: Dataset) -> list[str]:
    labels = [x for x in _column(ds, "label") if x >= 0]
    n = max(ds.n_classes, (max(labels) + 1) if labels else 0)
    names = ds.class_names
    return names + [str(i) for i in range(len(names), n)]


def _column_plan(ds: Dataset, preset: Preset) -> Plan:
    column = preset.column
    if column not in ds.manifest.column_names:
        raise UsageError(f"{ds.root}: protocol {preset.name} needs the manifest column '{column}' (written by "
                         f"headcam-ingest images for Toybox); this manifest has: "
                         f"{', '.join(ds.manifest.column_names)}")
    which = np.array(_column(ds, column), dtype=object)
    return Plan(preset.name, _source(ds, which == "train"), _source(ds, which == "test"), _class_names(ds),
                notes={"column": column})


def shuffled_split(n: int, seed: int, subsample: bool) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in ImageFolder order) of the training and the test samples out of ``n``.

    ``eval_linear.py:88-96`` (and ``linear_decoding.py:72-80``) after ``np.random.seed(seed)``: the
    legacy Mersenne-Twister shuffle of ``range(n)``; half / half (floor), or with ``subsample`` the
    first ``int(0.1 n)`` of the shuffle, its first half (floor) training.
    """
    indices = np.arange(n)
    np.random.RandomState(seed).shuffle(indices)
    if subsample:
        num_data = int(SUBSAMPLE_FRACTION * n)
        return indices[:num_data // 2], indices[num_data // 2:num_data]
    split = int(np.floor(SPLIT_FRACTION * n))
    return indices[:split], indices[split:]


def imagefolder_order(ds: Dataset) -> np.ndarray:
    """Manifest rows of the labelled samples in torchvision ImageFolder's order: class name, then file path
    (then frame, for sources that hold several), which is the order the reference's indices count in."""
    names = _class_names(ds)
    labels = _column(ds, "label")
    sources = _column(ds, "source")
    frames = _column(ds, "frame_index")
    rows = [i for i, lab in enumerate(labels) if lab >= 0]
    return np.array(sorted(rows, key=lambda i: (names[labels[i]], sources[i], frames[i])), dtype=np.int64)


def _shuffle_plan(ds: Dataset, preset: Preset, seed: int) -> Plan:
    order = imagefolder_order(ds)
    train_pos, test_pos = shuffled_split(len(order), seed, preset.subsample)
    n_rows = ds.manifest.num_rows
    train, test = np.zeros(n_rows, dtype=bool), np.zeros(n_rows, dtype=bool)
    train[order[train_pos]] = True
    test[order[test_pos]] = True
    frac = SUBSAMPLE_FRACTION / 2 if preset.subsample else SPLIT_FRACTION
    return Plan(preset.name, _source(ds, train), _source(ds, test), _class_names(ds),
                notes={"seed": seed, "shuffle": "np.random.RandomState(seed).shuffle over ImageFolder order",
                       "pool": len(order), "train_fraction": frac,
                       "test_fraction": frac if preset.subsample else 1 - SPLIT_FRACTION})


def _pick_test_split(ds: Dataset, asked: str | None, exclude: str | None) -> str:
    if asked is not None:
        if asked not in ds.splits:
            raise UsageError(f"{ds.root}: no split '{asked}' (splits here: {', '.join(ds.splits)})")
        return asked
    for s in TEST_SPLIT_PREFERENCE:
        if s in ds.splits and s != exclude:
            return s
    others = [s for s in ds.splits if s != exclude]
    if len(others) == 1 and exclude is None:
        return others[0]
    raise UsageError(f"{ds.root}: no held-out split ({' or '.join(TEST_SPLIT_PREFERENCE)}) here "
                     f"(splits: {', '.join(ds.splits)}); name one with --test-split")


def _splits_plan(train_ds: Dataset, test_ds: Dataset, protocol: str, train_split: str | None,
                 test_split: str | None) -> Plan:
    same = train_ds.root.resolve() == test_ds.root.resolve()
    if train_split is None:
        train_split = "train" if "train" in train_ds.splits or same else _only_split(train_ds)
    if train_split not in train_ds.splits:
        raise UsageError(f"{train_ds.root}: no split '{train_split}' (splits here: {', '.join(train_ds.splits)})")
    test_split = _pick_test_split(test_ds, test_split, train_split if same else None)
    names = _class_names(train_ds)
    label_map = None if same else _match_classes(names, _class_names(test_ds), test_ds)
    train_splits = np.array(_column(train_ds, "split"), dtype=object)
    test_splits = np.array(_column(test_ds, "split"), dtype=object)
    return Plan(protocol, _source(train_ds, train_splits == train_split),
                _source(test_ds, test_splits == test_split, label_map), names,
                notes={"train": f"{train_ds.root} split {train_split}", "test": f"{test_ds.root} split {test_split}"})


def _only_split(ds: Dataset) -> str:
    if len(ds.splits) != 1:
        raise UsageError(f"{ds.root}: no 'train' split and several others ({', '.join(ds.splits)}); "
                         "name one with --train-split")
    return ds.splits[0]


def _match_classes(train_names: list[str], test_names: list[str], test_ds: Dataset) -> np.ndarray | None:
    """Test label -> train label by class name (identity when the names agree)."""
    if train_names == test_names:
        return None
    index = {n: i for i, n in enumerate(train_names)}
    unknown = [n for n in test_names if n not in index]
    if unknown:
        raise UsageError(f"{test_ds.root}: class(es) {', '.join(unknown[:5])} are not classes of the training "
                         f"dataset ({len(train_names)} classes)")
    return np.array([index[n] for n in test_names], dtype=np.int64)


def check_plan(plan: Plan) -> None:
    """One clear line for an unusable protocol: nothing to train on, nothing to test, empty classes."""
    for role, src in (("training", plan.train), ("test", plan.test)):
        if len(src.keys) == 0:
            raise UsageError(f"protocol {plan.protocol}: no labelled {role} samples in {src.dataset.root}")
    counts = np.bincount(plan.train.labels, minlength=plan.n_classes)
    tested = np.unique(plan.test.labels)
    empty = [plan.class_names[c] for c in tested if counts[c] == 0]
    if empty:
        raise UsageError(f"protocol {plan.protocol}: class '{empty[0]}' has test samples but no training samples"
                         + (f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""))
    if np.count_nonzero(counts) < 2:
        raise UsageError(f"protocol {plan.protocol}: the training samples hold {np.count_nonzero(counts)} class; "
                         "a readout needs at least 2")


def resolve_protocol(protocol: str, data: Dataset, test_data: Dataset | None = None, *,
                     train_split: str | None = None, test_split: str | None = None, seed: int = 0) -> Plan:
    """The checked :class:`Plan` of preset ``protocol`` over ``data`` (and ``test_data``, where the preset takes
    one); ``seed`` draws the ``shuffle`` presets' split."""
    preset = PRESETS.get(protocol)
    if preset is None:
        raise UsageError(f"unknown protocol '{protocol}'; one of {', '.join(PROTOCOLS)}")
    if test_data is not None and not preset.test_data:
        hint = ("uses one dataset's own splits; use --protocol imagenet with --test-data" if preset.rule == "splits"
                else f"reads one dataset ({preset.layout}); drop --test-data")
        raise UsageError(f"protocol {protocol} {hint}")
    if preset.rule != "splits" and (train_split or test_split):
        raise UsageError(f"protocol {protocol} decides its own train and test samples ({preset.rule_text}); "
                         "drop --train-split / --test-split")
    if preset.rule == "shuffle":
        plan = _shuffle_plan(data, preset, seed)
    elif preset.rule == "column":
        plan = _column_plan(data, preset)
    else:
        plan = _splits_plan(data, test_data or data, protocol, train_split, test_split)
    plan.notes = {"rule": preset.rule_text, "reference": preset.reference, **plan.notes,
                  "n_train": len(plan.train.keys), "n_test": len(plan.test.keys), "n_classes": plan.n_classes,
                  "reference_classes": preset.n_classes}
    check_plan(plan)
    return plan


def describe(plan: Plan) -> str:
    """One line for the terminal: the split rule, the seed where it draws one, the counts, and a note when the
    dataset's class count is not the reference's (a wrong layout, or a fixture)."""
    notes = plan.notes
    seed = f" (seed {notes['seed']})" if "seed" in notes else ""
    ref = notes.get("reference_classes")
    mismatch = f"; the reference has {ref} classes" if ref is not None and ref != plan.n_classes else ""
    return (f"protocol {plan.protocol}: {notes['rule']}{seed}: {notes['n_train']} train, {notes['n_test']} test, "
            f"{plan.n_classes} classes{mismatch}")
