#!/usr/bin/env bash
# The GPU half in one command: every gpu-marked test, then the GPU benchmarks, into bench/RESULTS-gpu.md.
# Run it first on any machine with an NVIDIA GPU, and commit what it writes.
#   bash scripts/gpu_check.sh
# Without CUDA it stops at once (exit 2). Benchmarks: DALI two-view views (96 and 224 px) and batched
# foveation + magnification vs a per-image loop (bench/augment.py), training steps real vs synthetic
# (resnet50 at 224 px in bf16, DINO and MAE on ViT-S/16; bench/train.py), ingest (bench/ingest.py), and
# a 2-process NCCL training run when 2 GPUs are present.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
py=.venv/bin/python
if ! $py -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device visible (torch.cuda.is_available() is False); run this on a GPU machine" >&2
  exit 2
fi
out=bench/out-gpu
mkdir -p "$out"
export HEADCAM_QUIET=1
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

echo "== gpu-marked tests"
$py -m pytest -q -m gpu -p no:cacheprovider 2>&1 | tee "$out/tests.txt" | tail -25
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

for b in augment train ingest; do
  echo "== bench/$b.py (full, CUDA)"
  if ! $py "bench/$b.py" --json "$out/$b.json"; then
    echo "bench/$b.py failed" >&2
    status=1
  fi
done

gpus=$($py -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -ge 2 ]; then
  echo "== 2-process NCCL training run (torchrun)"
  ds=$(mktemp -d)
  .venv/bin/headcam-ingest videos ../shared/data/media --out "$ds/data" --fps 5 --size 128 --workers 4 \
    --shard-size 16 --stream-by one >/dev/null
  if ! .venv/bin/torchrun --standalone --nproc_per_node=2 -m headcam.train.cli configs/demo.yaml \
      data="$ds/data" out="$ds/run" method=simclr device=cuda size=112 batch_size=32 steps=20 workers=2; then
    echo "NCCL run failed" >&2
    status=1
  fi
fi

$py bench/report.py "$out" bench/RESULTS-gpu.md
echo "gpu_check: wrote bench/RESULTS-gpu.md (exit $status); commit it"
exit $status
