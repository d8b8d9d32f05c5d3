"""Reports: ``report.json`` (everything), ``report.md`` (the table people read) and plots.

One report directory holds the rows of one ``headcam-eval linear|knn`` run (one row per model),
an accuracy bar chart over those models (learned ones next to their baselines) and one confusion
matrix per model. :func:`compare` merges several report directories into one table and chart.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from headcam.console import UsageError
from headcam.shards.atomic import atomic_write_bytes

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
ACCURACY_PNG = "accuracy.png"
TABLE_COLUMNS = ("model", "protocol", "probe", "top1", "top5", "n_train", "n_test")
#: With rows of a probe that was tested after every epoch (``--recipe dino|eminorhan``), the table says which
#: epoch each score is from: the final epoch's, always, and the best epoch's, where the reference reports it.
BEST_COLUMNS = (("model", "model"), ("protocol", "protocol"), ("recipe", "recipe"), ("top1", "top1 (final epoch)"),
                ("top5", "top5 (final epoch)"), ("best_top1", "top1 (best epoch)"), ("best_top5", "top5 (best epoch)"),
                ("best_epoch", "best epoch"), ("epochs", "epochs"), ("n_train", "n_train"), ("n_test", "n_test"))
BEST_NOTE = ("final epoch: the probe after its last training epoch. best epoch: the epoch the reference code reports, "
             "by the highest test top-1, or by the highest test top-5 where its script keeps that checkpoint (mae_st; "
             "each row's `reported` says which); it is chosen on the test samples, so it is an optimistic number.")


def pyplot():
    """matplotlib.pyplot on the Agg backend: reports are written on headless machines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def confusion_matrix(y_true: np.ndarray, scores: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts: rows = true class, columns = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, scores.argmax(axis=1)), 1)
    return cm


def plot_confusion(cm: np.ndarray, class_names: list[str], title: str, path: Path) -> None:
    """Row-normalised confusion matrix; class names on the axes when there are few enough to read."""
    plt = pyplot()
    n = len(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(min(2 + 0.4 * n, 14), min(2 + 0.4 * n, 14)))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    if n <= 40:
        ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_accuracy(rows: list[dict[str, Any]], path: Path, title: str = "linear decoding") -> None:
    """Top-1 (and top-5) per model/protocol with each row's chance level marked."""
    plt = pyplot()
    labels = [f"{r['model']}\n{r['protocol']}/{r['probe']}" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rows) + 2), 4))
    ax.bar(x - 0.2, [r["top1"] for r in rows], 0.4, label="top-1")
    ax.bar(x + 0.2, [r["top5"] for r in rows], 0.4, label="top-5", alpha=0.6)
    for i, r in enumerate(rows):
        if r.get("chance") is not None:
            ax.hlines(r["chance"], i - 0.45, i + 0.45, colors="k", linestyles="dashed",
                      label="chance" if i == 0 else None)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


LEARNING_PNG = "learning_curves.png"


def metrics_path(run: Path) -> Path:
    """``RUN/metrics.jsonl``, or a UsageError when ``run`` is not a headcam-train run directory."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise UsageError(f"--run {run}: no metrics.jsonl (not a headcam-train run directory)")
    return path


def read_metrics(run: Path) -> list[dict[str, Any]]:
    """The rows of a ``headcam-train`` run's ``metrics.jsonl``; the last row per (step, kind) wins, since a
    resumed run repeats the steps after its last checkpoint."""
    path = metrics_path(run)
    rows: dict[tuple[int, bool], dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            rows[(r["step"], "knn_top1" in r)] = r
    return [rows[k] for k in sorted(rows)]


#: Up to this many logged points a curve is drawn with markers: a run with one point is otherwise invisible.
MARKERS_UP_TO = 50


def plot_learning_curves(runs: list[Path], path: Path) -> None:
    """Write :func:`learning_curves_figure` of ``runs`` to ``path``."""
    fig = learning_curves_figure(runs)
    fig.savefig(path, dpi=90)
    pyplot().close(fig)


def learning_curves_figure(runs: list[Path]):
    """Loss and kNN top-1 against steps, one line per run; the step-0 kNN value (the network before any
    training) is drawn as a dotted line of the same colour, so learning shows as the gap between them. A panel
    with nothing to draw says so instead of showing empty axes; steps are whole numbers on the axis."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, (loss_ax, knn_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, run in enumerate(runs):
        rows, colour, name = read_metrics(run), f"C{i}", Path(run).name
        losses = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        knn = [(r["step"], r["knn_top1"]) for r in rows if "knn_top1" in r]
        if losses:
            loss_ax.plot(*zip(*losses, strict=True), color=colour, label=name,
                         marker="o" if len(losses) <= MARKERS_UP_TO else None, markersize=4)
        if knn:
            knn_ax.plot(*zip(*knn, strict=True), "o-", color=colour, label=name)
            if knn[0][0] == 0:
                knn_ax.axhline(knn[0][1], color=colour, linestyle=":", label=f"{name}: step-0 network")
    loss_ax.set(xlabel="step", ylabel="training loss", title="loss")
    knn_ax.set(xlabel="step", ylabel="kNN top-1 (%)", title="online kNN monitor (held-out frames)")
    for ax, missing in ((loss_ax, "no loss logged"), (knn_ax, "no kNN monitor")):
        if ax.has_data():
            ax.legend(fontsize=7)
            lo, hi = ax.get_xlim()
            if hi - lo < 2:  # one logged step: a step either side, not ticks at 0.96, 0.98, ...
                ax.set_xlim((lo + hi) / 2 - 1, (lo + hi) / 2 + 1)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"{missing} in {'this run' if len(runs) == 1 else 'these runs'}", ha="center",
                    va="center", fontsize=11, color="0.35", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table; where any row has a best-epoch score, its columns are labelled by epoch
    (:data:`BEST_COLUMNS`) and a row without one shows its final score only."""
    columns = BEST_COLUMNS if any("best_top1" in r for r in rows) else tuple((c, c) for c in TABLE_COLUMNS)
    lines = ["| " + " | ".join(label for _, label in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [f"{r[c]:.2f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def recipe_lines(settings: dict[str, Any]) -> list[str]:
    """report.md's account of the linear recipes a run used (``probe_settings["recipes"]``): each one's
    reference, resolved epochs / lr / batch, and how headcam differs from the reference."""
    lines = []
    for name, recipe in (settings or {}).get("recipes", {}).items():
        run = recipe["run"]
        lines += [f"recipe `{name}`: {recipe['reference']}; {run['epochs']} epochs, batch {run['batch_size']}, "
                  f"{recipe['optimizer']} lr {run['lr_effective']:g} ({recipe['schedule']}), reported: final epoch"
                  + (" and best epoch" if recipe["reports_best"] else ""), ""]
        lines += [f"- differs from the reference: {d}" for d in recipe["deviations"]] + [""]
    return lines


def write_report(out: Path, rows: list[dict[str, Any]], context: dict[str, Any],
                 confusions: dict[str, tuple[np.ndarray, list[str]]] | None = None,
                 runs: list[Path] = ()) -> dict[str, Any]:
    """Write report.json, report.md, accuracy.png, confusion_<model>.png and, for training ``runs``,
    learning_curves.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    if rows:
        plot_accuracy(rows, out / ACCURACY_PNG, title=f"{context.get('command', 'decoding')}: "
                                                       f"{context.get('data', '')}"[-80:])
        plots.append(ACCURACY_PNG)
    if runs:
        plot_learning_curves(list(runs), out / LEARNING_PNG)
        plots.append(LEARNING_PNG)
        context = {**context, "runs": [str(r) for r in runs]}
    for name, (cm, class_names) in (confusions or {}).items():
        fname = f"confusion_{safe_name(name)}.png"
        plot_confusion(cm, class_names, f"{name}: confusion (row-normalised)", out / fname)
        plots.append(fname)
    report = {"format": "headcam-eval-report", "version": 1,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **context, "results": rows,
              "plots": plots}
    atomic_write_bytes(out / REPORT_JSON, (json.dumps(report, indent=2, default=str) + "\n").encode())
    md = [f"# headcam-eval {context.get('command', '')}", "", f"data: `{context.get('data', '')}`"]
    settings = {k: context[k] for k in ("test_data", "train_splits", "test_splits", "size", "vit_features", "seed",
                                        "probe_settings")
                if context.get(k) not in (None, "")}
    md += [f"settings: `{json.dumps(settings)}`" if settings else "", ""]
    md += recipe_lines(context.get("probe_settings")) + [markdown_table(rows), ""]
    md += [BEST_NOTE, ""] if any("best_top1" in r for r in rows) else []
    md += [f"![{p}]({p})" for p in plots]
    atomic_write_bytes(out / REPORT_MD, ("\n".join(md) + "\n").encode())
    return report


def read_report(directory: Path) -> dict[str, Any]:
    path = Path(directory) / REPORT_JSON
    if not path.is_file():
        raise UsageError(f"{directory}: no {REPORT_JSON} (not a headcam-eval report directory)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not valid JSON ({e})") from None
    if report.get("format") != "headcam-eval-report":
        raise UsageError(f"{path}: not a headcam-eval report")
    return report


def compare(dirs: list[Path], out: Path | None) -> tuple[str, list[dict[str, Any]]]:
    """One table (and, with ``out``, one chart + report) from several report directories."""
    rows = []
    for d in dirs:
        for r in read_report(d)["results"]:
            rows.append({**r, "report": str(d)})
    table = markdown_table(rows)
    if out is not None:
        write_report(out, rows, {"command": "compare", "data": ", ".join(str(d) for d in dirs)})
    return table, rows
