#!/usr/bin/env bash
# The main job, end to end on the shared head-cam media, sized for 2 CPU cores:
#   ingest ../shared/data/media (the second half of every 8 s segment held out) -> train temporal
#   classification and SimCLR with the online kNN monitor on the held-out frames -> linear decoding
#   of the held-out frames (label = temporal segment) beside random-init and HOG baselines -> one
#   report with the accuracy table, confusion matrices and the learning curves.
# Usage: bash scripts/demo.sh [OUT_DIR]   (default demo_out/; re-running resumes / reuses what is done)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${1:-demo_out}
MEDIA=${HEADCAM_MEDIA:-../shared/data/media}
STEPS=${HEADCAM_DEMO_STEPS:-60}
EVERY=$(( STEPS / 6 > 0 ? STEPS / 6 : 1 ))
MONITOR="monitor.data=$OUT/data monitor.every=$EVERY"
bin=.venv/bin
step() { printf '\n== %s\n' "$*"; }

step "1/4 ingest $MEDIA -> $OUT/data (5 fps, 64 px, 8 s segments, the last half of each held out)"
$bin/headcam-ingest videos "$MEDIA" --out "$OUT/data" --fps 5 --size 64 --seg-len 8 --clip-len 4 \
  --val-tail 0.5 --stream-by one --workers 2 --shard-size 32
$bin/headcam-ingest inspect "$OUT/data" | head -5
$bin/headcam-views "$OUT/data" --recipe simclr_magnification --n 8 --size 64 --out "$OUT/views.png"

step "2/4 train temporal classification ($STEPS steps, resnet18 @ 64 px, kNN monitor every $EVERY steps)"
$bin/headcam-train configs/demo.yaml method=tc data="$OUT/data" out="$OUT/runs/tc" steps="$STEPS" $MONITOR

step "3/4 train SimCLR ($STEPS steps, resnet18 @ 64 px, kNN monitor every $EVERY steps)"
$bin/headcam-train configs/demo.yaml method=simclr data="$OUT/data" out="$OUT/runs/simclr" steps="$STEPS" $MONITOR

step "4/4 linear decoding of the held-out time ranges: trained models vs random-init and HOG baselines"
$bin/headcam-eval linear --data "$OUT/data" --protocol splits --size 64 --out "$OUT/report" --probe logreg \
  --model "$OUT/runs/tc/checkpoint.pt" --name tc-resnet18 \
  --model "$OUT/runs/simclr/checkpoint.pt" --name simclr-resnet18 \
  --model random:resnet18 --name random-resnet18 \
  --model hog --name hog \
  --run "$OUT/runs/tc" --run "$OUT/runs/simclr"

printf '\nviews the models saw: %s\nreport: %s\n' "$(cd "$OUT" && pwd)/views.png" "$(cd "$OUT/report" && pwd)/report.md"
cat "$OUT/report/report.md"
