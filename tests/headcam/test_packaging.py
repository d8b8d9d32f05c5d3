"""A wheel built from this tree carries every data file a module reads (DESIGN.md: "a plain ``pip install .``
must carry every data file a module reads, through ``importlib.resources``").

The view recipes are the case in point: found through a path relative to the source tree, they silently
vanished from the registry after a non-editable install. The test builds the wheel offline from a copy of
the tree (so no ``build/`` or egg-info lands in the working tree), installs it into a folder, and asks a
Python that cannot see the editable install (``-S``: the editable finder's ``.pth`` is never read) for the
recipe registry.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: What the build reads: pyproject.toml and the folders it maps to packages.
BUILD_INPUTS = ("pyproject.toml", "headcam", "ingest", "shards", "pipelines", "train", "eval")

PROBE = """
import json, sys
sys.path[:0] = {paths!r}
from headcam.pipelines import spec
names = spec.recipe_names()
print(json.dumps({{"file": spec.__file__, "names": names, "recipes": [spec.recipe_spec(n).recipe for n in names]}}))
"""


def test_an_installed_wheel_lists_every_recipe(tmp_path):
    src, wheels, target = tmp_path / "src", tmp_path / "wheels", tmp_path / "site"
    src.mkdir()
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(wheels),
                    str(src)], check=True, capture_output=True)
    (wheel,) = wheels.glob("headcam-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)

    probe = PROBE.format(paths=[str(target), sysconfig.get_paths()["purelib"]])
    out = subprocess.run([sys.executable, "-S", "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path)
    got = json.loads(out.stdout)

    from headcam.pipelines.spec import RECIPES

    shipped = sorted(p.stem for p in (ROOT / "pipelines" / "recipes").glob("*.yaml"))
    assert shipped, "the source tree has no YAML recipes to look for"
    assert Path(got["file"]).is_relative_to(target)  # the wheel's module, not the source tree's
    assert set(got["names"]) == set(RECIPES) | set(shipped)
    assert got["recipes"] == got["names"]  # each one loads, under its own name
