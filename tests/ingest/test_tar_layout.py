"""The shard writer lays out tars itself (for speed); they must equal what ``tarfile`` writes, byte for byte."""

from __future__ import annotations

import io
import os
import random
import tarfile

from headcam.shards.writer import Sample, _tarinfo, member_header, write_shard


def test_fast_header_equals_tarfile_header():
    rng = random.Random(0)
    alphabet = "abcdef0123456789_-XYZ"
    names = [f"{''.join(rng.choice(alphabet) for _ in range(rng.randint(1, 92)))}.{ext}"
             for ext in ("jpg", "sal.png", "cls", "lbl", "json") for _ in range(50)] + ["a" * 96 + ".jpg"]
    for name in names:
        for size in (0, 1, 511, 512, 513, 123_456, 8**11 - 1):
            assert member_header(name, size) == _tarinfo(name, size).tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING,
                                                                     "surrogateescape"), (name, size)


def test_shard_equals_a_tarfile_written_one(tmp_path):
    rng = random.Random(1)
    samples = [Sample(key=f"k{i:06d}", jpg=os.urandom(rng.randint(1, 3000)), label=i % 5, meta={"i": i},
                      saliency_png=os.urandom(rng.randint(1, 300)) if i % 2 else None) for i in range(40)]
    write_shard(tmp_path / "ours.tar", samples)
    ref = io.BytesIO()
    with tarfile.open(fileobj=ref, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for s in samples:
            for ext, data in s.members():
                tar.addfile(_tarinfo(f"{s.key}.{ext}", len(data)), io.BytesIO(data))
    assert (tmp_path / "ours.tar").read_bytes() == ref.getvalue()
    with tarfile.open(tmp_path / "ours.tar") as tar:  # and the .idx offsets point at the data
        for line in (tmp_path / "ours.idx").read_text().splitlines()[1:]:
            parts = line.split()
            for j in range(0, len(parts), 4):
                ext, offset, size, name = parts[j:j + 4]
                member = tar.getmember(name)
                assert (member.offset_data, member.size) == (int(offset), int(size))
