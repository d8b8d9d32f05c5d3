"""The shard contract read back with no headcam code (tarfile, webdataset, pyarrow) and with ours."""

from __future__ import annotations

import json
import struct
import tarfile

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from headcam.shards import DatasetError, SampleStream, open_dataset, plan_epoch, select
from headcam.shards.writer import Sample, write_shard


def test_plain_readers_agree_with_manifest(tiny_dataset):
    man = pq.read_table(tiny_dataset / "manifest.parquet").to_pylist()
    by_key = {r["key"]: r for r in man}
    seen = 0
    for shard in sorted(tiny_dataset.glob("*.tar")):
        with tarfile.open(shard) as tar:
            names = tar.getnames()
        assert all(n.count(".") >= 1 for n in names)
        for s in wds.WebDataset(str(shard), shardshuffle=False):
            row = by_key[s["__key__"]]
            assert row["shard"] == shard.name
            assert int(s["cls"]) == row["label"] == struct.unpack("<q", s["lbl"])[0]
            assert s["jpg"][:2] == b"\xff\xd8"
            json.loads(s["json"])
            seen += 1
    assert seen == len(man)


def test_dali_index_offsets_point_at_members(tiny_dataset):
    shard = sorted(tiny_dataset.glob("train-*.tar"))[0]
    lines = shard.with_suffix(".idx").read_text().splitlines()
    version, n = lines[0].split()
    assert version == "v1.2" and int(n) == len(lines) - 1
    data = shard.read_bytes()
    with tarfile.open(shard) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    for line in lines[1:]:
        parts = line.split()
        for ext, off, size, name in zip(parts[0::4], parts[1::4], parts[2::4], parts[3::4], strict=True):
            assert name.endswith("." + ext)
            assert data[int(off):int(off) + int(size)] == members[name]


def test_rewrite_is_byte_identical(tmp_path):
    samples = [Sample(key=f"k{i}", jpg=bytes([i]) * 10, label=i, meta={"i": i}) for i in range(3)]
    write_shard(tmp_path / "a.tar", samples)
    write_shard(tmp_path / "b.tar", samples)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert not list(tmp_path.glob("*.tmp-*"))


def test_key_with_dot_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="dot-free"):
        write_shard(tmp_path / "a.tar", [Sample(key="a.b", jpg=b"x", label=0)])


def test_check_finds_disagreement(tiny_dataset, tmp_path):
    ds = open_dataset(tiny_dataset)
    assert ds.check() == []
    assert ds.n_classes == 3 and ds.count("train") + ds.count("val") == ds.manifest.num_rows


def test_plan_equalises_slots_and_rejects_too_few_shards():
    shards = [(f"s{i}", 10 - i) for i in range(5)]
    plan = plan_epoch(shards, epoch=0, seed=1, world=2, workers=2)
    assert len(plan.slots) == 4 and plan.samples_per_slot == sum(n for _, n in shards) // 4
    assert sorted(p for slot in plan.slots for p in slot) == sorted(p for p, _ in shards)
    assert plan_epoch(shards, epoch=0, seed=1, world=2, workers=2) == plan
    with pytest.raises(DatasetError, match="need at least 6"):
        plan_epoch(shards, epoch=0, seed=1, world=3, workers=2)


def test_ranks_get_equal_counts_and_disjoint_samples(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    got = [[s.key for s in SampleStream(select(ds, "train"), rank=r, world=2, shuffle_buffer=4)] for r in range(2)]
    assert len(got[0]) == len(got[1]) > 0
    assert not set(got[0]) & set(got[1])


def test_short_slots_go_round_again_so_an_epoch_is_the_split_size(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    n = ds.count("train")
    seen: set[str] = set()
    for epoch in range(4):
        got = [[s.key for s in SampleStream(select(ds, "train"), rank=r, world=2, shuffle_buffer=1, epoch=epoch)]
               for r in range(2)]
        assert len(got[0]) == len(got[1]) == n // 2  # an epoch is the split's size, not 2 x the smallest slot
        seen |= set(got[0]) | set(got[1])
    assert len(seen) == n  # the per-epoch reshuffle moves the cut, so nothing is left out for good


def test_resume_skip_continues_the_same_order(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    full = [s.key for s in SampleStream(select(ds, "train"), seed=3, shuffle_buffer=5)]
    rest = [s.key for s in SampleStream(select(ds, "train"), seed=3, shuffle_buffer=5, skip_batches=2, batch_size=3)]
    assert rest == full[6:]


def _keys(batch):
    return [s.key for s in batch]


def test_resume_in_a_dataloader_with_two_workers_continues_the_same_batches(tiny_dataset):
    """A resumed DataLoader asks worker 0 first; the stream rotates slots so batch k is still batch k."""
    import torch

    ds = open_dataset(tiny_dataset)

    def batches(skip: int) -> list[list[str]]:
        stream = SampleStream(select(ds, "train"), seed=3, shuffle_buffer=4, skip_batches=skip, batch_size=3)
        loader = torch.utils.data.DataLoader(stream, batch_size=3, num_workers=2, collate_fn=_keys)
        return list(loader)

    full = batches(0)
    assert len(full) >= 4
    assert batches(3) == full[3:]
