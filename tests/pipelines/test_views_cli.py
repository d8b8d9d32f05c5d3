"""headcam-views: the gallery PNG is written and opens; user mistakes are one line and exit 2."""

from __future__ import annotations

from PIL import Image

from headcam.pipelines.cli import main


def test_gallery_png_is_written_and_opens(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "grid.png"
    rc = main([str(tiny_dataset), "--recipe", "simclr_foveation", "--n", "3", "--size", "32", "--out", str(out)])
    assert rc == 0
    with Image.open(out) as img:
        img.load()
        assert img.width > 200 and img.height > 150
        # Not a blank canvas: the panels hold pictures.
        assert len(set(img.convert("L").getdata())) > 50
    assert "3 samples x 2 views" in capsys.readouterr().out


def test_cli_user_errors_exit_2(tiny_dataset, tmp_path, capsys):
    assert main([str(tiny_dataset), "--recipe", "nope", "--out", str(tmp_path / "g.png")]) == 2
    assert "valid recipes: simclr" in capsys.readouterr().err
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "g.png")]) == 2
    assert main([str(tiny_dataset), "flip_p=oops", "--out", str(tmp_path / "g.png")]) == 2
    assert not (tmp_path / "g.png").exists()


def _manifest_only(rows: list[tuple[str, str, int]]):
    """A stand-in for a Dataset with only the manifest columns gallery_keys reads (key, split, source, frame)."""
    from types import SimpleNamespace

    import pyarrow as pa

    keys, sources, frames = zip(*rows, strict=True)
    return SimpleNamespace(manifest=pa.table({"key": list(keys), "split": ["train"] * len(keys),
                                              "source": list(sources), "frame_index": list(frames)}))


def test_gallery_takes_turns_over_sources_and_spreads_in_time():
    from headcam.pipelines.cli import gallery_keys

    rows = ([(f"a{i:03d}", "/v/a.mp4", i) for i in range(100)] + [(f"b{i:03d}", "/v/b.mp4", i) for i in range(10)]
            + [(f"c{i:03d}", "/v/c.mp4", i) for i in range(2)])
    ds = _manifest_only(rows[::-1])  # manifest order is not time order
    assert gallery_keys(ds, "train", 8) == ["a016", "b001", "c000", "a050", "b005", "c001", "a083", "b008"]
    everything = gallery_keys(ds, "train", 500)  # more rows than samples: each sample once
    assert len(everything) == len(set(everything)) == 112 and gallery_keys(ds, "val", 4) == []
    # an image folder (one source per image): the rows spread over the whole sorted list, not its first n
    images = _manifest_only([(f"k{i:02d}", f"/img/class{i // 10}/{i:02d}.jpg", 0) for i in range(40)])
    assert gallery_keys(images, "train", 4) == ["k00", "k13", "k26", "k39"]


def test_gallery_rows_come_from_every_source_and_saliency_has_a_colour_scale(tiny_dataset, tmp_path):
    import matplotlib.pyplot as plt

    from headcam.pipelines.cli import _torch_rows, gallery_figure
    from headcam.pipelines.spec import resolve_spec
    from headcam.shards.dataset import open_dataset

    rows = _torch_rows(open_dataset(tiny_dataset), "train", resolve_spec("simclr_foveation", []), 3, 2, 32, 0)
    # the split's first three samples are all from video0; the gallery's are the middle train frames of video0,
    # video1 and video2 (keys as captions: this fixture's samples carry no source in their metadata)
    assert [r[4] for r in rows] == ["f00005", "f00017", "f00029"]
    fig = gallery_figure(rows, "t")
    colour_scales = [ax for ax in fig.axes if ax.get_xlabel().startswith("saliency")]
    assert len(colour_scales) == 1
    assert colour_scales[0].get_xlim() == (0.0, 1.0)  # one fixed 0-1 scale for every row's map
    plt.close(fig)
