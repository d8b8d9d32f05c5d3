#!/usr/bin/env bash
# Create .venv (once) and install headcam with pinned dependencies. Idempotent: a second run
# only checks that the install is current. Plain pip on purpose: it honours this machine's
# torch cap and takes the local wheels (uv does not).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.headcam-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v -i warning || true
  .venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v -i "warning: location" || true
  .venv/bin/python -c "import headcam.shards, torch, nvidia.dali, av, decord, webdataset" 
  touch "$stamp"
fi
