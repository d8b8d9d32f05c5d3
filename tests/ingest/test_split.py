"""Long videos cut into time-range units: the same dataset, byte for byte, as one unit per video.

Each comparison ingests the same inputs twice in this process (so ``dataset.json``'s command line is
the same too): with ``--unit-frames 0`` (one unit per video, as before splitting existed) and with
small units, staged as ``--part 1/1`` so the unit journal can be read before ``merge`` finishes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from fixtures_videos import split_test_videos

from headcam.ingest import split
from headcam.ingest.cli import main
from headcam.ingest.decode import TimestampSampler
from headcam.ingest.inputs import video_key

FAST = ["--size", "48", "--fps", "5", "--seg-len", "4", "--clip-len", "4", "--val-every", "3", "--shard-size", "30",
        "--stream-by", "file", "--workers", "2"]
UNIT = "8"  # sampled frames per part: 1.6 s, parts of 1-2 keyframes in the generated videos


def unsplit(inputs: list[Path], out: Path, *extra: str) -> int:
    return main(["videos", "--out", str(out), *FAST, *extra, "--unit-frames", "0", "--", *map(str, inputs)])


def split_run(inputs: list[Path], out: Path, *extra: str, unit: str = UNIT) -> tuple[int, list[dict]]:
    """Stage as part 1/1, read the unit records, merge; (exit code, records)."""
    rc = main(["videos", "--out", str(out), *FAST, *extra, "--unit-frames", unit, "--part", "1/1", "--",
               *map(str, inputs)])
    records = [json.loads(line) for line in (out / ".staging" / "units.part-1-of-1.jsonl").read_text().splitlines()]
    assert main(["merge", str(out)]) == rc
    return rc, [r for r in records if r["kind"] == "unit"]


def assert_identical(a: Path, b: Path) -> None:
    """Every file of two datasets byte-equal; per-source frame lists first, to say where they differ."""
    ma, mb = pq.read_table(a / "manifest.parquet").to_pylist(), pq.read_table(b / "manifest.parquet").to_pylist()
    for src in sorted({r["source"] for r in ma} | {r["source"] for r in mb}):
        fa = sorted((r["frame_index"], r["pts"], r["label"]) for r in ma if r["source"] == src)
        fb = sorted((r["frame_index"], r["pts"], r["label"]) for r in mb if r["source"] == src)
        assert fa == fb, Path(src).name
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def parts_of(records: list[dict], path: Path) -> list[dict]:
    """The unit records of ``path``'s time-range parts, in time order (the journal holds them in the order the
    workers finished, which a loaded machine shuffles; the last part's range is open-ended)."""
    key = video_key(str(path))
    return sorted((r for r in records if r["key"].startswith(key + "-")), key=lambda r: r["key"])  # KEY-iiiiofnnnn


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    return split_test_videos(tmp_path_factory.mktemp("made"))


@pytest.fixture(scope="module")
def compared(made, media_dir, edge_dir, tmp_path_factory) -> tuple[Path, Path, list[dict], dict[str, Path]]:
    """Generated videos (B-frames, open GOP, VFR, rotation, a truncated MP4), the shared media and the
    edge files, ingested unsplit and split."""
    inputs = [*made.values(), media_dir, *sorted(edge_dir.iterdir())]
    root = tmp_path_factory.mktemp("cmp")
    assert unsplit(inputs, root / "whole") == 3  # audio_only.mp3 and the truncated MP4 fail (partly)
    rc, records = split_run(inputs, root / "split")
    assert rc == 3
    return root / "whole", root / "split", records, made


def test_split_ingest_equals_unsplit_byte_for_byte(compared):
    whole, parted, _, _ = compared
    assert_identical(whole, parted)


def test_generated_videos_were_really_split(compared):
    _, _, records, made = compared
    for name in ("bframes", "opengop", "vfr", "rotated"):
        parts = parts_of(records, made[name])
        full = [p for p in parts if p["n_samples"]]
        assert len(full) >= 4 and not any(p["failures"] for p in parts), name
        assert not [r for r in records if r["key"] == video_key(str(made[name]))], name  # no whole-video redo
    vfr = parts_of(records, made["vfr"])
    assert sum(p["n_samples"] for p in vfr) > sum(p["targets"][1] - p["targets"][0] for p in vfr[:-1]) / 2


def test_a_failing_part_has_the_video_staged_whole(compared):
    _, parted, records, made = compared
    parts = parts_of(records, made["truncated"])
    assert any(p["failures"] for p in parts)  # cuts past the end of the data land nowhere
    (whole,) = [r for r in records if r["key"] == video_key(str(made["truncated"]))]
    assert whole["n_samples"] > 0 and [f["error_type"] for f in whole["failures"]] == ["PartialDecode"]
    fails = pq.read_table(parted / "failures.parquet").to_pylist()
    assert sorted(Path(f["path"]).name for f in fails) == ["audio_only.mp3", "truncated.mp4"]  # parts' rows dropped


def test_shared_media_split_where_the_format_has_an_index(compared, media_dir):
    _, _, records, _ = compared
    assert len(parts_of(records, media_dir / "nasa_13013.mp4")) > 1
    assert len(parts_of(records, media_dir / "tree.avi")) > 1
    assert not parts_of(records, media_dir / "cityCC0.mpg")  # MPEG-PS seeks by searching: one unit


def test_sampler_parts_equal_one_pass():
    """Any cut of the targets: the parts' samplers, each fed every frame from some point before its
    first target, pick the frames one sampler picks, with the same repeat counts."""
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.choice([1 / 30, 1 / 30, 0.5, 1.3], size=400))
    one = TimestampSampler(5)
    expected = [one.take(t) for t in times]
    for cuts in ([37], [10, 11, 50, 200], list(range(5, 300, 7))):
        got = [0] * len(times)
        for k0, k1 in zip([0, *cuts], [*cuts, None], strict=True):
            s = TimestampSampler(5, k0, k1)
            start = int(np.searchsorted(times, (k0 - 3) / 5)) if k0 else 0  # from a "keyframe" before it
            for i in range(start, len(times)):
                got[i] += s.take(times[i])
                if s.done:
                    break
        assert got == expected, cuts


def test_plan_keeps_unsplittable_videos_whole(media_dir, made, tmp_path):
    mp4 = str(made["bframes"])
    spans, per_part = split.plan(mp4, 5.0, 8, "pyav")
    assert len(spans) == 10 and spans[0].start is None and spans[-1].stop is None and 7 < per_part < 9
    assert all(a.stop == b.start for a, b in zip(spans, spans[1:], strict=False))
    assert split.plan(mp4, 5.0, 0, "pyav")[0] == [None]  # --unit-frames 0
    assert split.plan(mp4, 5.0, 8, "decord")[0] == [None]  # decord and nvdec read whole files
    assert split.plan(mp4, 5.0, 50, "pyav")[0] == [None]  # 80 frames: not two parts of 50
    assert split.plan(str(media_dir / "cityCC0.mpg"), 5.0, 8, "pyav")[0] == [None]
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 100)
    assert split.plan(str(junk), 5.0, 8, "pyav")[0] == [None]  # the worker reports it


def test_records_that_do_not_meet_are_not_a_video():
    def part(j, n, targets, **kw):
        return {"key": split.unit_key("abc", j, n), "failures": [], "first_pts": 0.0, "targets": targets, **kw}

    good = [part(0, 2, [0, 7]), part(1, 2, [7, None])]
    assert split.video_records(good)["abc"] == good
    assert split.restage_whole([part(0, 2, [0, 7]), part(1, 2, [8, None])], ["abc"]) == ["abc"]  # a gap
    assert split.restage_whole([good[0]], ["abc"]) == ["abc"]  # a part missing
    assert split.restage_whole([good[0], part(1, 2, [7, None], first_pts=0.5)], ["abc"]) == ["abc"]
    whole = {"key": "abc", "failures": [{"stage": "decode"}]}
    assert split.video_records([*good, whole])["abc"] == [whole]  # a whole-video record wins
    assert split.video_records([part(0, 3, [0, 4]), part(1, 3, [4, 9]), *good])["abc"] == good  # a complete plan


def test_decord_keeps_one_unit_per_video(made, tmp_path):
    _, records = split_run([made["bframes"]], tmp_path / "d", "--decoder", "decord")
    assert [r["key"] for r in records] == [video_key(str(made["bframes"]))]


def _start(args: list[str]) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("headcam-ingest"))
    return subprocess.Popen([exe, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HEADCAM_QUIET": "1"})


def test_sigkill_during_a_split_ingest_then_resume(made, tmp_path):
    """Killed after some parts of one video are staged: the resume stages only the rest, each part
    once, and the dataset equals an unsplit ingest."""
    src = [made["bframes"]]
    clean = tmp_path / "clean"
    assert unsplit(src, clean) == 0
    out = tmp_path / "killed"
    args = ["videos", "--out", str(out), *FAST, "--workers", "1", "--unit-frames", UNIT, "--", str(src[0])]
    journal = out / ".staging" / "units.all.jsonl"
    proc = _start(args)
    end = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < end:
        if journal.exists() and journal.read_text().count("\n") >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the ingest finished before it could be killed"
    before = [json.loads(x)["key"] for x in journal.read_text().splitlines()]
    assert 3 <= len(before) < 10
    rc, after = split_run(src, out)  # the same run, resumed as part 1/1 to see what it stages
    assert rc == 0
    keys = before + [r["key"] for r in after]
    assert len(keys) == len(set(keys)) == 10  # nothing staged twice, nothing missing
    assert_identical(clean, out)
