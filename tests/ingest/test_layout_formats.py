"""``headcam-ingest images --format core50 | places365``: the layouts those datasets ship in, built tiny."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
from fixtures_layouts import PLACES_CATEGORIES, make_core50, make_places365

from headcam.ingest.cli import main as cli_main
from headcam.shards import open_dataset


def ingest(fmt: str, src: Path, out: Path, *extra: str) -> int:
    return cli_main(["images", "--format", fmt, str(src), "--out", str(out), "--workers", "1", *extra])


def rows(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest.parquet").to_pylist()


def test_core50_labels_objects_and_holds_out_sessions_3_7_10(tmp_path, capsys):
    written = make_core50(tmp_path / "src", sessions=(1, 2, 3, 10), objects=(1, 6, 50), frames=2)
    out = tmp_path / "out"
    assert ingest("core50", tmp_path / "src", out) == 0  # the parent of core50_128x128/ is enough
    assert "24 images (test 12, train 12), 50 classes" in capsys.readouterr().out
    ds = open_dataset(out)
    assert ds.check() == []
    assert ds.class_names == [f"o{i}" for i in range(1, 51)]
    got = rows(out)
    assert sorted(r["source"] for r in got) == sorted(map(str, written))  # strays (s12, o51, README) skipped
    for r in got:
        name = Path(r["source"]).stem  # C_<ss>_<oo>_<fff>
        session, obj = int(name[2:4]), int(name[5:7])
        assert (r["session"], r["object"], r["label"]) == (session, obj, obj - 1)
        assert r["split"] == ("test" if session in (3, 7, 10) else "train")
        assert r["key"] == f"core50_s{session:02d}_o{obj:02d}_{int(name[8:]):03d}"
        assert (r["width"], r["height"]) == (32, 32)  # native size kept
    assert {(r["object"], r["category"]) for r in got} == {(1, "plug_adapter"), (6, "mobile_phone"),
                                                             (50, "remote_control")}
    notes = json.loads((out / "dataset.json").read_text())["format_notes"]
    assert notes["test_sessions"] == [3, 7, 10] and len(notes["skipped_dirs"]) == 2


def test_core50_without_sessions_is_one_line(tmp_path, capsys):
    (tmp_path / "src" / "o1").mkdir(parents=True)
    capsys.readouterr()
    assert ingest("core50", tmp_path / "src", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert "no CORe50 session folders" in err and "\n" not in err


def test_places365_reads_the_official_lists_and_flat_val(tmp_path, capsys):
    listed = make_places365(tmp_path / "src", n_train=3, n_val=2, missing_val=1)
    out = tmp_path / "out"
    assert ingest("places365", tmp_path / "src", out) == 3  # one listed val image is missing: partial
    ds = open_dataset(out)
    assert ds.class_names == ["airfield", "apartment_building/outdoor", "bakery/shop"]
    got = rows(out)
    assert Counter(r["split"] for r in got) == {"train": 9, "val": 5}
    by_key = {r["key"]: r for r in got}
    for split, folder in (("train", "data_256"), ("val", "val_256")):
        for n, (rel, label) in enumerate(listed[split], start=1):
            key = f"places365_{split}_{n:07d}"
            if split == "val" and n == 1:
                assert key not in by_key
                continue
            assert by_key[key]["label"] == label
            assert by_key[key]["source"] == str(tmp_path / "src" / folder / rel.lstrip("/"))
    fails = ds.failures().to_pylist()
    assert [Path(f["path"]).name for f in fails] == [listed["val"][0][0]]
    assert len(PLACES_CATEGORIES) == ds.n_classes


def test_places365_without_lists_is_one_line(tmp_path, capsys):
    (tmp_path / "src" / "val_256").mkdir(parents=True)
    capsys.readouterr()
    assert ingest("places365", tmp_path / "src", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert "categories_places365.txt" in err and "\n" not in err
