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
