"""Which samples train the readout and which ones score it (SPEC §7).

- ``toybox-iid`` / ``toybox-exemplar``: one Toybox dataset; the manifest columns ``split_iid`` /
  ``split_exemplar`` (``train``/``test``, written by ``headcam-ingest images``) decide.
- ``imagenet``: a train dataset and a val dataset (``--test-data``), or one dataset holding both
  splits; labels are matched by class name when the two datasets name their classes.
- ``splits``: the dataset's own train split against its val (else test) split; on a video dataset
  this is train clips vs held-out clips with label = temporal segment.

A protocol is resolved from the manifests alone, before any feature is computed, so a missing
column or a class without training samples costs one line and no extraction time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headcam.console import UsageError
from headcam.shards.dataset import Dataset

PROTOCOLS = ("toybox-iid", "toybox-exemplar", "imagenet", "splits")
TEST_SPLIT_PREFERENCE = ("val", "test")


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


def _toybox(ds: Dataset, column: str, protocol: str) -> Plan:
    if column not in ds.manifest.column_names:
        raise UsageError(f"{ds.root}: protocol {protocol} needs the manifest column '{column}' (written by "
                         f"headcam-ingest images for Toybox); this manifest has: "
                         f"{', '.join(ds.manifest.column_names)}")
    which = np.array(_column(ds, column), dtype=object)
    return Plan(protocol, _source(ds, which == "train"), _source(ds, which == "test"), _class_names(ds))


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
                _source(test_ds, test_splits == test_split, label_map), names)


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
                     train_split: str | None = None, test_split: str | None = None) -> Plan:
    """The checked :class:`Plan` for ``protocol`` over ``data`` (and ``test_data`` for ``imagenet``)."""
    if protocol in ("toybox-iid", "toybox-exemplar"):
        if test_data is not None:
            raise UsageError(f"protocol {protocol} reads one Toybox dataset; drop --test-data")
        plan = _toybox(data, "split_" + protocol.split("-", 1)[1], protocol)
    elif protocol == "imagenet":
        plan = _splits_plan(data, test_data or data, protocol, train_split, test_split)
    elif protocol == "splits":
        if test_data is not None:
            raise UsageError("protocol splits uses one dataset's own splits; use --protocol imagenet with --test-data")
        plan = _splits_plan(data, data, protocol, train_split, test_split)
    else:
        raise UsageError(f"unknown protocol '{protocol}'; one of {', '.join(PROTOCOLS)}")
    check_plan(plan)
    return plan
