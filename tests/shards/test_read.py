"""Split reading in one place: selection and key filter, ordered reading with a rank split, the one error
handler, and shuffled planned reading under a key filter."""

from __future__ import annotations

import shutil

import pytest

from headcam.shards import DatasetError, OrderedStream, SampleStream, open_dataset, read_samples, select


def _manifest(ds) -> list[dict]:
    return ds.manifest.select(["key", "split", "shard"]).to_pylist()


def test_key_filter_reads_exactly_the_given_keys_across_splits(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    rows = _manifest(ds)
    keys = {r["key"] for i, r in enumerate(rows) if i % 5 == 0}  # both splits, most shards
    sel = select(ds, ["train", "val"], keys)
    assert sel.count == len(keys) and sel.keys == keys
    holding = {r["shard"] for r in rows if r["key"] in keys}
    assert [p.rsplit("/", 1)[-1] for p, _ in sel.shards] == sorted(holding)  # only the shards that hold them
    got = [s.key for s in read_samples(sel)]
    assert sorted(got) == sorted(keys) and len(got) == len(set(got))
    order = [r["key"] for r in sorted(rows, key=lambda r: r["shard"]) if r["key"] in keys]
    assert got == order  # shard, then member order
    with pytest.raises(DatasetError, match="1 of the 2 selected keys are not in split"):
        select(ds, "val", [next(r["key"] for r in rows if r["split"] == "train"),
                           next(r["key"] for r in rows if r["split"] == "val")])


def test_filtered_shuffled_epochs_stay_equal_across_two_ranks(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    train = [r["key"] for r in _manifest(ds) if r["split"] == "train"]
    keys = set(train[::3])  # 9 of 27, spread over the 3 train shards
    sel = select(ds, "train", keys)
    assert len(sel.shards) == 3 and sel.count == 9
    for epoch in range(3):
        got = [[s.key for s in SampleStream(sel, rank=r, world=2, epoch=epoch, shuffle_buffer=4)] for r in range(2)]
        assert len(got[0]) == len(got[1]) == 9 // 2  # the plan counts filtered samples only
        assert set(got[0]) | set(got[1]) <= keys and not set(got[0]) & set(got[1])


@pytest.mark.parametrize("workers", [1, 2])
def test_ordered_reading_with_a_rank_split_covers_every_sample_once(tiny_dataset, workers):
    ds = open_dataset(tiny_dataset)
    sel = select(ds, "train")
    seen = []
    for rank in range(2):
        stream = OrderedStream(sel, batch_size=2, rank=rank, world=2)
        for w in range(workers):
            seen += [s.key for s in stream.iter_slot(w, workers)]
        assert sum(stream.batches_per_worker(workers)) == -(-stream.selection.count // 2)
    assert sorted(seen) == sorted(r["key"] for r in _manifest(ds) if r["split"] == "train")
    whole = OrderedStream(sel, batch_size=2)  # no rank given: the whole selection, whatever the process group
    assert [s.key for s in whole.iter_slot(0, 1)] == [s.key for s in read_samples(sel)]


def test_the_one_error_handler_warns_and_counts_a_corrupt_shard(tiny_dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset, root)
    ds = open_dataset(root)
    shard = ds.shards("train")[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2] + b"\xff" * 700)  # a tar cut short in the middle of a member
    sel = select(ds, "train")
    ordered = OrderedStream(sel, batch_size=4)
    with pytest.warns(UserWarning, match="skipping unreadable shard data"):
        n = sum(1 for _ in ordered.iter_slot(0, 1))
    assert ordered.errors.count == 1 and 0 < n < sel.count
    shuffled = SampleStream(sel, shuffle_buffer=1)
    with pytest.warns(UserWarning, match="skipping unreadable shard data"):
        assert len(list(shuffled)) == n  # the same survivors (the torch loader pads its batches to stay in step)
    assert shuffled.errors.count == 1
