#!/usr/bin/env bash
# Trains the shipped models exactly as their model cards say. Two lanes run side by side, one
# thread each (on 2 cores that trains faster than one 2-thread run at a time).
#   scripts/train-shipped.sh            # both lanes, in the background, logs in runs/*.log
#   scripts/train-shipped.sh lane-a     # one lane in the foreground
# Re-running resumes every run from its last checkpoint (runs/<name>/).
# Validation is on held-out training images (websr train's default --holdout 10: the last 10 of
# BSD200, not trained on), never on Set5/Set14. The shipped cards record their own commands, from
# before that change (Set5 validation, all 291 images).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
DATA=${DATA:-../shared/data}
# A copy of the binary, so rebuilding the project mid-run cannot change the trainer under it.
BIN=${BIN:-runs/websr-train}
export RAYON_NUM_THREADS=1

train() { # name arch scale steps patch validate-every [extra args]
  local name=$1 arch=$2 scale=$3 steps=$4 patch=$5 every=$6
  shift 6
  "$BIN" train --arch "$arch" --scale "$scale" --steps "$steps" --batch 16 --patch "$patch" \
    --lr "${LR:-5e-4}" --lr-min 1e-6 --seed 1 --data-root "$DATA" \
    --validate-every "$every" --checkpoint-every 100 --out "runs/$name" --resume "$@"
}

lane-a() {
  train wavelr-x4 wavelr 4 5000 64 1000
  train dwsr-x4 dwsr 4 1000 48 500
  train dwsr-dwa-x4 dwsr-dwa 4 1000 48 500
  train dwsr-x2 dwsr 2 1000 48 500
}
lane-b() {
  train wavelr-x2 wavelr 2 5000 64 1000
  train dwsr-dwa-x2 dwsr-dwa 2 1000 48 500
}

# Second round, once the lanes above are done: a longer schedule for the default model (a
# restart from the first run's weights with a lower peak rate) and the DWA-Direct variant.
lane-c() {
  LR=2e-4 train wavelr-x4-ft wavelr 4 5000 64 1000 --init runs/wavelr-x4/last.safetensors
}
lane-d() {
  train dwa-direct-x4 dwa-direct 4 1000 48 500
}

# Third round: the DWA ablation pair at x4 continued for 3,000 more steps from their 1,000-step
# weights (fresh Adam, peak 2e-4, cosine), one lane each so both get the same budget.
lane-e() {
  LR=2e-4 train dwsr-x4-long dwsr 4 3000 48 1000 --init runs/dwsr-x4/last.safetensors
}
lane-f() {
  LR=2e-4 train dwsr-dwa-x4-long dwsr-dwa 4 3000 48 1000 --init runs/dwsr-dwa-x4/last.safetensors
}

# Fourth round (issue #4): the diffusion models at x4 with the same U-Net, data, batch, patch
# and steps; SR3 diffuses 4x the pixels, so its lane is the long one. Validation samples Set5
# with 10 DDIM steps once, at the end.
diffuse() { # name model steps [extra args]
  local name=$1 model=$2 steps=$3
  shift 3
  "$BIN" train --model "$model" --scale 4 --steps "$steps" --batch 8 --patch 48 \
    --lr 3e-4 --lr-min 1e-6 --seed 1 --data-root "$DATA" \
    --validate-every "$steps" --val-steps 10 --checkpoint-every 100 --out "runs/$name" --resume "$@"
}
lane-g() {
  diffuse sr3-x4 sr3 2500
}
# DiWa+YODA trains its initial predictor with its own L1 too (--predictor-l1): with YODA the
# residual stays zero outside the mask until the last steps, so the output there is the
# predictor's, and a first run with the masked noise loss alone (runs/diwa-yoda-x4-masked-only)
# ended with a predictor far below bicubic (Set5 16.0 dB at 10 DDIM steps).
lane-h() {
  diffuse diwa-x4 diwa 2500
  diffuse diwa-yoda-x4 diwa 2500 --yoda --predictor-l1
}

# Issue #17.5, the missing control: DiWa with the predictor L1 but without YODA, at
# diwa-yoda-x4's budget and data (all 291 images, as before the held-out slice existed).
lane-k() {
  diffuse diwa-l1-x4 diwa 2500 --predictor-l1 --holdout 0
}

# Issue #17.1: DiWa on the shipped default. The frozen wavelr-deep-x4 is the initial predictor
# (its weights travel in the DiWa file); the U-Net learns the wavelet residual, scaled to the
# schedule's level (k = 0.5 / RMS of the residual, measured at the start). 96x96 patches, so the
# predictor sees its training context. The run is kept in training/runs/ (resumable there).
lane-l() {
  "$BIN" train --model diwa --predictor models/wavelr-deep-x4.safetensors --scale 4 --steps 3000 \
    --batch 8 --patch 96 --lr 2e-4 --lr-min 1e-6 --seed 1 --data-root "$DATA" \
    --checkpoint-every 250 --validate-every 1000 --val-steps 10 --resume \
    --out training/runs/diwa-wavelr-x4
}

# Fifth round (issue #2): the default fast models were at SRCNN's level (Set5 x4 30.43 vs 30.48,
# x2 36.66 vs 36.66) and had stopped improving at 6 body layers. They grow deeper from their own
# weights (Net2DeeperNet: identity layers interleaved, so training starts at their quality) and
# train on larger patches (x4: 24 LR pixels, more than the receptive field; it was 16).
lane-i() {
  LR=3e-4 train wavelr-x4-deep wavelr 4 9000 96 1000 --layers 16 --init runs/wavelr-x4-ft/best.safetensors
}
lane-j() {
  LR=3e-4 train wavelr-x2-deep wavelr 2 4500 64 1000 --layers 12 --init runs/wavelr-x2/best.safetensors
}

if [ $# -gt 0 ]; then "$@"; exit; fi
cargo build -p websr-cli
mkdir -p runs
cp "$CARGO_TARGET_DIR/debug/websr" runs/websr-train
setsid nohup bash -c "'$0' lane-a; '$0' lane-d" >runs/lane-a.log 2>&1 &
setsid nohup bash -c "'$0' lane-b; '$0' lane-c" >runs/lane-b.log 2>&1 &
echo "training in the background: tail -f runs/lane-a.log runs/lane-b.log"
