#!/usr/bin/env bash
# Ships every finished run of scripts/train-shipped.sh: copies the weights to models/, measures
# Set5/Set14, writes models/manifest.json and the model cards. Needs ../shared/data.
# Diffusion models are measured with 10 DDIM steps, eta 0, seed 0 (`websr ship --steps`).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
# WEBSR_BIN=path/to/websr skips cargo (e.g. while another build holds the target dir).
websr() { if [ -n "${WEBSR_BIN:-}" ]; then "$WEBSR_BIN" "$@"; else cargo run -q -p websr-cli -- "$@"; fi; }
T="scripts/train-shipped.sh"
common="--batch 16 --lr-min 1e-6 --seed 1 --checkpoint-every 100 --resume"
unseeded="trained by the binary from before initial weights were seeded, so the initial weights are not reproducible (the data order is)"
restarted() { echo "$unseeded; restarted once at step $1 from a checkpoint of that binary, which kept the weights but not the Adam moments (checkpoints keep them now)"; }

ship() { # run-name model-name description command [notes]
  # ONLY=regex ships only the matching model names (e.g. ONLY=diwa); DEFAULT=1 makes the model
  # the default of its scale.
  if [ -n "${ONLY:-}" ] && ! [[ "$2" =~ $ONLY ]]; then return 0; fi
  if [ -f "runs/$1/state.json" ]; then
    websr ship --run "runs/$1" --name "$2" --description "$3" --command "$4" --notes "${5:-}" --data "$DATA" ${DEFAULT:+--default}
  else
    echo "skipping $2: runs/$1 has no checkpoint"
  fi
}

# The defaults (issue #2: at least SRCNN on Set5): WaveLR grown deeper from the fast models.
DEFAULT=1 ship wavelr-x4-deep wavelr-deep-x4 \
  "WaveLR-deep x4, the default: WaveLR with 16 body layers of width 48, grown from wavelr-x4's trained 6 (Net2DeeperNet: interleaved identity layers, so training started at its quality) and trained on 96x96 patches; 4 of the 16 stayed exact identities (see the notes), so it computes what a 12-layer network would. 2.4x wavelr-x4's multiply-adds, 4.3x fewer than DWSR." \
  "$T lane-a, lane-c, then lane-i: wavelr-x4's two runs (see its card), then websr train --arch wavelr --scale 4 --layers 16 --steps 9000 --patch 96 --lr 3e-4 $common --init runs/wavelr-x4-ft/best.safetensors --out runs/wavelr-x4-deep" \
  "19,000 steps in all: wavelr-x4's 10,000 at 6 layers, then 9,000 at 16 with a 3e-4 cosine schedule and fresh Adam moments. The last run was started for 6,000 steps and extended to 9,000 at step 200 (resumed from that checkpoint; the cosine rate there moved from 2.992e-4 to 2.996e-4). It ran on the binary of commit 9e871b5, whose deepening gave the two identity layers inserted after one old layer the same parameter ids; the optimizer updates each id once, so the second of each pair (body.4, .7, .12, .15) never trained and is still an exact identity, a no-op between ReLUs. Fixed since (each inserted layer has its own parameters, tested): re-running lane-i trains all 16 layers and will not reproduce these weights."
DEFAULT=1 ship wavelr-x2-deep wavelr-deep-x2 \
  "WaveLR-deep x2, the default: WaveLR with 12 body layers of width 48, grown from wavelr-x2's trained 6 (Net2DeeperNet: interleaved identity layers, so training started at its quality)." \
  "$T lane-b, then lane-j: wavelr-x2's run (see its card), then websr train --arch wavelr --scale 2 --layers 12 --steps 4500 --patch 64 --lr 3e-4 $common --init runs/wavelr-x2/best.safetensors --out runs/wavelr-x2-deep" \
  "9,500 steps in all: wavelr-x2's 5,000 at 6 layers, then 4,500 at 12 with a 3e-4 cosine schedule and fresh Adam moments. The last run was started for 6,000 steps and cut to 4,500 at step 700 to fit the session (resumed from that checkpoint; the cosine rate there moved from 2.90e-4 to 2.83e-4)."
ship wavelr-x4-ft wavelr-x4 \
  "WaveLR x4: our fastest model for the browser and the federated model (8 convolutions of width 48 at LR resolution predict a two-level Haar packet; 10x fewer multiply-adds than DWSR)." \
  "$T lane-a then lane-c: websr train --arch wavelr --scale 4 --steps 5000 --patch 64 --lr 5e-4 $common --out runs/wavelr-x4, then websr train --arch wavelr --scale 4 --steps 5000 --patch 64 --lr 2e-4 $common --init runs/wavelr-x4/last.safetensors --out runs/wavelr-x4-ft" \
  "10,000 steps in all: 5,000 with a 5e-4 cosine schedule, then 5,000 more from those weights with a 2e-4 cosine schedule; first run $(restarted 100)"
ship wavelr-x2 wavelr-x2 \
  "WaveLR x2: our fastest x2 model for the browser (8 convolutions of width 48 at LR resolution predict the 12 Haar sub-bands)." \
  "$T lane-b: websr train --arch wavelr --scale 2 --steps 5000 --patch 64 --lr 5e-4 $common --out runs/wavelr-x2" "$(restarted 1800)"
# x4: the ablation pair continued for 3,000 steps (lane-e / lane-f) replaces the 1,000-step runs.
ship dwsr-x4-long dwsr-x4 \
  "DWSR x4 as published (12 convolutions of width 64 on the 12 Haar sub-bands of the bicubic image). Short training (4,000 steps): the equal-budget baseline of the DWA ablation, not a finished model." \
  "$T lane-a then lane-e: websr train --arch dwsr --scale 4 --steps 1000 --patch 48 --lr 5e-4 $common --out runs/dwsr-x4, then websr train --arch dwsr --scale 4 --steps 3000 --patch 48 --lr 2e-4 $common --init runs/dwsr-x4/last.safetensors --out runs/dwsr-x4-long" \
  "4,000 steps in all: 1,000 with a 5e-4 cosine schedule, then 3,000 more from those weights with a 2e-4 cosine schedule and fresh Adam moments; first run $(restarted 500)"
ship dwsr-dwa-x4-long dwsr-dwa-x4 \
  "DWSR+DWA x4: DWSR whose first convolution is a Differential Wavelet Amplifier. Same data, steps and schedules as dwsr-x4 (the ablation)." \
  "$T lane-a then lane-f: websr train --arch dwsr-dwa --scale 4 --steps 1000 --patch 48 --lr 5e-4 $common --out runs/dwsr-dwa-x4, then websr train --arch dwsr-dwa --scale 4 --steps 3000 --patch 48 --lr 2e-4 $common --init runs/dwsr-dwa-x4/last.safetensors --out runs/dwsr-dwa-x4-long" \
  "4,000 steps in all, as dwsr-x4; first run $unseeded"
for s in 2; do
  ship dwsr-x$s dwsr-x$s \
    "DWSR x$s as published (12 convolutions of width 64 on the 12 Haar sub-bands of the bicubic image). Short training: the equal-budget baseline of the DWA ablation, not a finished model." \
    "$T: websr train --arch dwsr --scale $s --steps 1000 --patch 48 --lr 5e-4 $common --out runs/dwsr-x$s" "$([ $s = 4 ] && restarted 500 || echo "$unseeded")"
  ship dwsr-dwa-x$s dwsr-dwa-x$s \
    "DWSR+DWA x$s: DWSR whose first convolution is a Differential Wavelet Amplifier. Same data, steps and schedule as dwsr-x$s (the ablation)." \
    "$T: websr train --arch dwsr-dwa --scale $s --steps 1000 --patch 48 --lr 5e-4 $common --out runs/dwsr-dwa-x$s" "$unseeded"
done
ship dwa-direct-x4 dwa-direct-x4 \
  "DWA-Direct[DWSR] x4: a stride-2 DWA reads the RGB image instead of its DWT. Same budget as the first, 1,000-step dwsr-x4 run (runs/dwsr-x4)." \
  "$T lane-d: websr train --arch dwa-direct --scale 4 --steps 1000 --patch 48 --lr 5e-4 $common --out runs/dwa-direct-x4" "$unseeded"
# Diffusion (issue #4): SR3, DiWa and DiWa+YODA with the same U-Net, data, batch and steps.
dcommon="--scale 4 --steps 2500 --batch 8 --patch 48 --lr 3e-4 --lr-min 1e-6 --seed 1 --validate-every 2500 --val-steps 10 --checkpoint-every 100 --resume"
short="Short CPU training (2,500 steps of batch 8): for the SR3 vs DiWa vs DiWa+YODA comparison, not a finished model."
ship sr3-x4 sr3-x4 \
  "SR3 x4: pixel-domain diffusion conditioned on the bicubic upscale, with diwa-x4's U-Net (width 32, levels 1-2-2). $short" \
  "$T lane-g: websr train --model sr3 $dcommon --out runs/sr3-x4"
ship diwa-x4 diwa-x4 \
  "DiWa x4: diffusion in the Haar wavelet domain on the residual of a jointly trained initial predictor (6 convolutions of width 32). $short" \
  "$T lane-h: websr train --model diwa $dcommon --out runs/diwa-x4"
ship diwa-yoda-x4 diwa-yoda-x4 \
  "DiWa+YODA x4: DiWa trained with YODA's masked loss (importance from the multi-scale Haar detail energy of the LR image, our stand-in for DINO attention) and sampled with YODA; its initial predictor also learns from its own L1 error. $short" \
  "$T lane-h: websr train --model diwa --yoda --predictor-l1 $dcommon --out runs/diwa-yoda-x4" \
  "The initial predictor is also trained with its own L1 error (--predictor-l1; diwa-x4 is not): a first run with YODA's masked noise loss alone left a predictor far below bicubic, and with YODA the output outside the mask is the predictor's (Set5 16.0 dB at 10 DDIM steps, runs/diwa-yoda-x4-masked-only)."
