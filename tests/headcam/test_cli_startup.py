"""``--help`` and usage errors of headcam-eval, headcam-ingest and headcam-views answer without importing torch,
timm or DALI (seconds each on a cold disk): heavy modules load where they are used, after the arguments and
the inputs they name are checked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "timm", "nvidia.dali")

PROBE = """
import contextlib, io, json, sys
from {module} import main
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        code = main({argv!r})
    except SystemExit as e:  # --help and argparse errors exit from inside parse_args
        code = e.code
print(json.dumps({{"code": code, "out": out.getvalue(), "err": err.getvalue(),
                  "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""

CASES = [
    ("headcam.eval.cli", ["--help"], 0),
    ("headcam.eval.cli", ["knn", "--help"], 0),
    ("headcam.eval.cli", ["knn", "--model", "hog"], 2),  # argparse: --data, --out missing
    ("headcam.eval.cli", ["knn", "--model", "{tmp}/missing.pt", "--data", "{tmp}", "--out", "{tmp}/r"], 2),
    ("headcam.eval.cli", ["linear", "--model", "hog", "--data", "{tmp}/nope", "--out", "{tmp}/r"], 2),
    ("headcam.ingest.cli", ["--help"], 0),
    ("headcam.ingest.cli", ["videos", "--help"], 0),
    ("headcam.ingest.cli", ["videos", "{tmp}/missing.mp4", "--out", "{tmp}/o"], 2),
    ("headcam.ingest.cli", ["images", "--format", "folder", "{tmp}/nope", "--out", "{tmp}/o"], 2),
    ("headcam.pipelines.cli", ["--help"], 0),
    ("headcam.pipelines.cli", ["{tmp}/nope", "--out", "{tmp}/g.png"], 2),
    ("headcam.pipelines.cli", ["{tmp}", "--recipe", "nope"], 2),
]


@pytest.mark.parametrize(("module", "argv", "code"), CASES, ids=[f"{m.split('.')[1]} {' '.join(a)[:40]}"
                                                                  for m, a, _ in CASES])
def test_help_and_usage_errors_do_not_import_torch(module, argv, code, tmp_path):
    argv = [a.format(tmp=tmp_path) for a in argv]
    probe = PROBE.format(module=module, argv=argv, heavy=HEAVY)
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["code"] == code, result
    if code == 2:
        assert len(result["err"].strip().splitlines()) == 1 and "error:" in result["err"], result["err"]
    else:
        assert "usage:" in result["out"]
    assert result["heavy"] == [], f"{module} {argv} imported {result['heavy']}"
