#!/usr/bin/env bash
# The LD3M experiment of the README ("Dataset distillation: LD3M"): K synthetic 96x96 patches
# distilled through diwa-wavelr-x4 (`websr distill`), against the K real patches they started
# from (a seeded random draw), the K hardest sub-images (`websr prune --count K`) and the full 291
# set; WaveLR x4 trained from scratch on each with the pruning experiment's schedule (batch 16,
# patch 64, Adam, L1, cosine 5e-4 -> 1e-6, the same seed and steps); Set5/Set14 at the end.
#   scripts/ld3m-experiment.sh            # everything, in the foreground, one core
#   scripts/ld3m-experiment.sh table      # print the table of the finished runs
# Re-running skips what is finished (runs/ld3m/); a distillation is never overwritten.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/ld3m}
# A copy of the binary, so rebuilding the project mid-run cannot change the trainer under it.
BIN=${BIN:-$OUT/websr}
STEPS=${STEPS:-1500}
KS=${KS:-"10 50 100"}
SEEDS=${SEEDS:-"1 2"}
# Distillation iterations per K (each updates one chunk of 10 codes).
ITERATIONS=${ITERATIONS:-"10:300 50:400 100:400"}
export RAYON_NUM_THREADS=1

distill() { # K
  local k=$1 it
  it=300
  for p in $ITERATIONS; do if [ "${p%:*}" = "$k" ]; then it=${p#*:}; fi; done
  [ -f "$OUT/k$k/distill.json" ] || "$BIN" distill --generator diwa-wavelr-x4 --images "$k" \
    --iterations "$it" --lr 0.1 --seed 0 --data-root "$DATA" --out "$OUT/k$k"
  # The control: the generator's resample of the same real patches, with no optimisation (one
  # step at a learning rate of 1e-12), separating DM's effect from DiWa's.
  [ -f "$OUT/k$k-resampled/distill.json" ] || "$BIN" distill --generator diwa-wavelr-x4 \
    --images "$k" --iterations 1 --lr 1e-12 --seed 0 --data-root "$DATA" --out "$OUT/k$k-resampled"
  [ -f "$OUT/hardest-k$k.json" ] || "$BIN" prune --scorer wavelr-x4 --data-root "$DATA" \
    --count "$k" -o "$OUT/hardest-k$k.json"
}

run() { # seed set(full|distilled-K|real-K|hardest-K)
  local seed=$1 set=$2 extra=()
  case $set in
    full) ;;
    distilled-*) extra=(--data "$OUT/k${set#distilled-}/synthetic") ;;
    real-*) extra=(--data "$OUT/k${set#real-}/real") ;;
    resampled-*) extra=(--data "$OUT/k${set#resampled-}-resampled/synthetic") ;;
    hardest-*) extra=(--subset "$OUT/hardest-k${set#hardest-}.json") ;;
  esac
  local name="$set-s$seed"
  if [ ! -f "$OUT/$name/set14.json" ]; then
    "$BIN" train --arch wavelr --scale 4 --steps "$STEPS" --batch 16 --patch 64 \
      --lr 5e-4 --lr-min 1e-6 --seed "$seed" --data-root "$DATA" --holdout 0 \
      --checkpoint-every 500 --out "$OUT/$name" --resume "${extra[@]}"
    for bench in set5 set14; do
      "$BIN" eval --model "$OUT/$name/last.safetensors" --data "$DATA/$bench" --json \
        >"$OUT/$name/$bench.json.tmp"
      mv "$OUT/$name/$bench.json.tmp" "$OUT/$name/$bench.json"
    done
  fi
}

all() {
  mkdir -p "$OUT"
  if [ ! -x "$BIN" ]; then
    cargo build --release -p websr-cli
    cp "$CARGO_TARGET_DIR/release/websr" "$BIN"
  fi
  local k seed
  for k in $KS; do distill "$k"; done
  for seed in $SEEDS; do
    run "$seed" full
    for k in $KS; do
      for set in distilled resampled real hardest; do run "$seed" "$set-$k"; done
    done
  done
  table
}

table() { # markdown table of Y-PSNR / Y-SSIM from the eval JSON files
  python3 - "$OUT" "$KS" <<'EOF'
import json, os, sys, statistics as st
out, ks = sys.argv[1], sys.argv[2].split()
def scores(set_, bench):
    vals = {}
    for d in sorted(os.listdir(out)):
        if d.rsplit("-s", 1)[0] == set_ and os.path.isfile(f"{out}/{d}/{bench}.json"):
            m = json.load(open(f"{out}/{d}/{bench}.json"))["mean"]
            vals[int(d.rsplit("-s", 1)[1])] = (m["psnr_y"], m["ssim_y"])
    return vals
rows = [("full", "full 291 set")]
for k in ks:
    rows += [(f"distilled-{k}", f"K = {k} distilled (LD3M)"),
             (f"resampled-{k}", f"K = {k} resampled by DiWa, not optimised (control)"),
             (f"real-{k}", f"K = {k} real (the distillation's start)"),
             (f"hardest-{k}", f"K = {k} hardest (prune)")]
print("| train set | Set5 x4 per seed | Set5 x4 mean | vs real K | Set14 x4 per seed "
      "| Set14 x4 mean | vs real K |")
print("|---|---|---|---|---|---|---|")
for key, label in rows:
    cells = [label]
    for bench in ("set5", "set14"):
        vals = scores(key, bench)
        if not vals:
            cells += ["-", "-", "-"]
            continue
        cells.append(" / ".join(f"{v[0]:.2f}" for v in vals.values()))
        cells.append(f"{st.mean(v[0] for v in vals.values()):.3f} / "
                     f"{st.mean(v[1] for v in vals.values()):.4f}")
        if key.startswith(("distilled-", "resampled-", "hardest-")):
            ref = scores("real-" + key.split("-")[1], bench)
            diffs = [v[0] - ref[s][0] for s, v in vals.items() if s in ref]
            cells.append(" / ".join(f"{d:+.2f}" for d in diffs) + f" (mean {st.mean(diffs):+.3f})"
                         if diffs else "-")
        else:
            cells.append("-")
    print("| " + " | ".join(cells) + " |")
for k in ks:
    p = f"{out}/k{k}/distill.json"
    if os.path.isfile(p):
        r = json.load(open(p))
        print(f"\nK = {k}: {r['config']['iterations']} iterations, {r['seconds'] / 60:.0f} min; "
              f"DM loss on a fixed batch {r['fixed_loss_before']:.3f} -> {r['fixed_loss_after']:.3f}")
EOF
}

if [ $# -gt 0 ]; then "$@"; else all; fi
