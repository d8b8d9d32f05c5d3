#!/usr/bin/env bash
# The main job, end to end on the shared head-cam media, sized for 2 CPU cores:
#   ingest ../shared/data/media -> train temporal classification and SimCLR a few steps ->
#   linear decoding of the held-out clips (label = temporal segment) beside random-init and HOG
#   baselines -> one report with plots.
# Usage: bash scripts/demo.sh [OUT_DIR]   (default demo_out/; re-running resumes / reuses what is done)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${1:-demo_out}
MEDIA=${HEADCAM_MEDIA:-../shared/data/media}
STEPS=${HEADCAM_DEMO_STEPS:-30}
bin=.venv/bin
step() { printf '\n== %s\n' "$*"; }

step "1/4 ingest $MEDIA -> $OUT/data (5 fps, 64 px, 4 s segments, every 4th clip held out)"
$bin/headcam-ingest videos "$MEDIA" --out "$OUT/data" --fps 5 --size 64 --seg-len 4 --clip-len 4 \
  --val-every 4 --stream-by one --workers 2 --shard-size 32
$bin/headcam-ingest inspect "$OUT/data" | head -5
$bin/headcam-views "$OUT/data" --recipe simclr_magnification --n 8 --size 64 --out "$OUT/views.png"

step "2/4 train temporal classification ($STEPS steps, resnet18 @ 64 px)"
$bin/headcam-train configs/demo.yaml method=tc data="$OUT/data" out="$OUT/runs/tc" steps="$STEPS"

step "3/4 train SimCLR ($STEPS steps, resnet18 @ 64 px)"
$bin/headcam-train configs/demo.yaml method=simclr data="$OUT/data" out="$OUT/runs/simclr" steps="$STEPS"

step "4/4 linear decoding of held-out clips: trained models vs random-init and HOG baselines"
$bin/headcam-eval linear --data "$OUT/data" --protocol splits --size 64 --out "$OUT/report" --probe logreg \
  --model "$OUT/runs/tc/checkpoint.pt" --name tc-resnet18 \
  --model "$OUT/runs/simclr/checkpoint.pt" --name simclr-resnet18 \
  --model random:resnet18 --name random-resnet18 \
  --model hog --name hog

printf '\nviews the models saw: %s\nreport: %s\n' "$(cd "$OUT" && pwd)/views.png" "$(cd "$OUT/report" && pwd)/report.md"
cat "$OUT/report/report.md"
