#!/usr/bin/env bash
# The test command: set up (if needed), lint, then the fast test suite (no GPU needed; GPU tests skip).
# Pass extra pytest arguments through, e.g. `bash scripts/test.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
export HEADCAM_QUIET=1
if [ $# -eq 0 ]; then set -- -m "not slow"; fi
exec .venv/bin/python -m pytest -q "$@"
