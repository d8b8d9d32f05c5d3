"""Collect the JSON each benchmark wrote into one Markdown page (bench/RESULTS.md from `bench/run --full`).

Each benchmark owns its JSON layout; this page only flattens it (``a.b.c: value``) under a
heading per benchmark, with the machine it ran on, so ratios from one run stay side by side.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path


def flatten(data: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(data, dict):
        rows = []
        for k, v in data.items():
            rows += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return rows
    return [(prefix, data)]


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def main(src: str, dst: str) -> int:
    lines = ["# Benchmark results", "",
             f"Written by `bench/run` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
             f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}.",
             "Each section is one benchmark's own JSON, flattened; ratios compare against the alternative measured "
             "in the same run.",
             "GPU: " + ("present (see the GPU entries)" if shutil.which("nvidia-smi") else
                        "none on this machine, so no GPU figures in this run."), ""]
    for path in sorted(Path(src).glob("*.json")):
        data = json.loads(path.read_text())
        lines += [f"## {path.stem}", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {fmt(v)} |" for k, v in flatten(data)]
        lines.append("")
    Path(dst).write_text("\n".join(lines))
    print(f"wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
