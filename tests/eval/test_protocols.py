"""Protocols resolved from manifests: Toybox split columns, imagenet train->val datasets, clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pytest

from headcam.console import UsageError
from headcam.eval.protocols import resolve_protocol
from headcam.shards.dataset import open_dataset, write_json, write_table
from headcam.shards.schema import DATASET_JSON, MANIFEST


def toybox_like(src, dst, exemplar_of):
    """A copy of the tiny dataset with Toybox's extra manifest columns (split 'all' stays as the shards are)."""
    shutil.copytree(src, dst)
    ds = open_dataset(dst)
    keys = ds.manifest.column("key").to_pylist()
    labels = ds.manifest.column("label").to_pylist()
    iid = ["train" if i % 3 else "test" for i in range(len(keys))]
    exemplar = [exemplar_of(i, lab) for i, lab in enumerate(labels)]
    table = ds.manifest.append_column("split_iid", pa.array(iid)).append_column("split_exemplar", pa.array(exemplar))
    write_table(dst / MANIFEST, table)
    return open_dataset(dst)


def test_toybox_protocols_follow_split_columns(tiny_dataset, tmp_path):
    ds = toybox_like(tiny_dataset, tmp_path / "tb", lambda i, lab: "test" if i % 12 >= 9 else "train")
    iid = resolve_protocol("toybox-iid", ds)
    assert len(iid.train.keys) == 24 and len(iid.test.keys) == 12
    assert not set(iid.train.keys) & set(iid.test.keys)
    assert iid.train.splits == ["train", "val"]  # features come from every shard split that holds the rows
    ex = resolve_protocol("toybox-exemplar", ds)
    assert len(ex.test.keys) == 9 and ex.class_names == ["city", "nasa", "tree"]


def test_empty_class_is_one_clear_line(tiny_dataset, tmp_path):
    # every sample of class 2 ('tree') is in the exemplar test split: nothing to learn it from
    ds = toybox_like(tiny_dataset, tmp_path / "tb", lambda i, lab: "test" if lab == 2 or i % 5 == 0 else "train")
    with pytest.raises(UsageError, match="class 'tree' has test samples but no training samples"):
        resolve_protocol("toybox-exemplar", ds)


def test_imagenet_protocol_matches_classes_by_name(tiny_dataset, tmp_path):
    val = tmp_path / "val"
    shutil.copytree(tiny_dataset, val)
    meta = open_dataset(val).meta
    meta["classes"]["names"] = ["tree", "city", "nasa"]  # same classes, another order
    write_json(val / DATASET_JSON, meta)
    plan = resolve_protocol("imagenet", open_dataset(tiny_dataset), open_dataset(val))
    assert plan.train.splits == ["train"] and plan.test.splits == ["val"]
    raw = np.array(open_dataset(val).manifest.filter(pa.compute.equal(open_dataset(val).manifest["split"], "val"))
                   .column("label").to_pylist())
    assert plan.test.label_map.tolist() == [2, 0, 1]
    assert plan.test.labels.tolist() == [[2, 0, 1][x] for x in raw]
    meta["classes"]["names"] = ["tree", "city", "zebra"]
    write_json(val / DATASET_JSON, meta)
    with pytest.raises(UsageError, match="zebra"):
        resolve_protocol("imagenet", open_dataset(tiny_dataset), open_dataset(val))


def test_splits_protocol_errors(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    plan = resolve_protocol("splits", ds)
    assert plan.train.splits == ["train"] and plan.test.splits == ["val"]
    with pytest.raises(UsageError, match="no split 'test'"):
        resolve_protocol("splits", ds, test_split="test")
    with pytest.raises(UsageError, match="unknown protocol"):
        resolve_protocol("cifar", ds)


def test_toybox_decoding_reads_rows_across_shard_splits(tiny_dataset, tmp_path):
    from headcam.eval.decode import DecodeOptions, decode
    from headcam.eval.models import load_model

    ds = toybox_like(tiny_dataset, tmp_path / "tb", lambda i, lab: "train")
    res = decode(load_model("pixels"), resolve_protocol("toybox-iid", ds), DecodeOptions(size=32), "knn")
    assert res.row["n_train"] == 24 and res.row["n_test"] == 12 and res.row["missing"] == 0
    assert res.row["top1"] > 50
