"""learning_curves.png: a run with one logged point is still visible, and a missing kNN monitor is said, not
drawn as empty 0-1 axes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from headcam.eval.report import learning_curves_figure, plot_learning_curves, pyplot


def write_run(path: Path, rows: list[dict]) -> Path:
    path.mkdir(parents=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_one_logged_point_is_a_marker_and_no_monitor_is_said(tmp_path):
    run = write_run(tmp_path / "short", [{"step": 1, "loss": 4.2}])
    fig = learning_curves_figure([run])
    loss_ax, knn_ax = fig.axes
    (line,) = loss_ax.get_lines()
    assert line.get_marker() == "o" and list(line.get_xdata()) == [1]
    lo, hi = loss_ax.get_xlim()
    assert lo <= 0 and hi >= 2  # a step either side of the one point
    assert not knn_ax.axison and not knn_ax.has_data()
    assert [t.get_text() for t in knn_ax.texts] == ["no kNN monitor in this run"]
    pyplot().close(fig)
    # the written picture: the loss panel holds the point's colour (matplotlib's C0), the kNN panel none
    plot_learning_curves([run], tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as img:
        rgb = np.asarray(img.convert("RGB")).astype(int)
    blue = (np.abs(rgb - [31, 119, 180]).sum(axis=2) < 60)
    half = rgb.shape[1] // 2
    assert blue[:, :half].sum() > 15 and blue[:, half:].sum() == 0


def test_monitored_runs_keep_their_curves_and_step_zero_line(tmp_path):
    run = write_run(tmp_path / "tc", [{"step": 0, "knn_top1": 30.0}, {"step": 5, "loss": 3.0},
                                      {"step": 10, "loss": 2.0}, {"step": 10, "knn_top1": 45.0}])
    fig = learning_curves_figure([run, write_run(tmp_path / "bare", [{"step": 3, "loss": 1.0}])])
    loss_ax, knn_ax = fig.axes
    assert len(loss_ax.get_lines()) == 2 and knn_ax.axison and not knn_ax.texts
    knn_line, step0 = knn_ax.get_lines()
    assert list(knn_line.get_ydata()) == [30.0, 45.0] and list(step0.get_ydata()) == [30.0, 30.0]
    pyplot().close(fig)
