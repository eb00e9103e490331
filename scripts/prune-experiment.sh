#!/usr/bin/env bash
# The dataset-pruning experiment of the README ("Dataset pruning"): WaveLR trained with the same
# seed, steps and schedule on the full 291 set, the hardest 50% of its 96x96 sub-images, the
# refined 50% (the hardest 5% dropped first) and a random 50%; evaluated on Set5/Set14.
#   scripts/prune-experiment.sh            # everything, in the foreground, one core
#   scripts/prune-experiment.sh table      # print the table of the finished runs
# Re-running resumes unfinished runs and skips finished ones (runs/prune/).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/prune}
# A copy of the binary, so rebuilding the project mid-run cannot change the trainer under it.
BIN=${BIN:-$OUT/websr}
X4_STEPS=${X4_STEPS:-1500}
X2_STEPS=${X2_STEPS:-500}
X2_PATCH=${X2_PATCH:-48}
# scale:seed, in order (most information first).
JOBS=${JOBS:-"4:1 2:1 4:2 2:2 4:3"}
export RAYON_NUM_THREADS=1

manifests() { # scale seed: the subsets scored by the shipped wavelr model of that scale
  local s=$1 seed=$2
  [ -f "$OUT/x$s-des.json" ] || "$BIN" prune --scorer "wavelr-x$s" --data-root "$DATA" \
    --keep 0.5 -o "$OUT/x$s-des.json"
  [ -f "$OUT/x$s-ref.json" ] || "$BIN" prune --scorer "wavelr-x$s" --data-root "$DATA" \
    --keep 0.5 --drop-hardest 0.05 -o "$OUT/x$s-ref.json"
  [ -f "$OUT/x$s-random-s$seed.json" ] || "$BIN" prune --scorer "wavelr-x$s" \
    --data-root "$DATA" --keep 0.5 --order random --seed "$seed" -o "$OUT/x$s-random-s$seed.json"
}

run() { # scale seed subset(full|des|ref|random) steps patch
  local s=$1 seed=$2 sub=$3 steps=$4 patch=$5
  local name="x$s-$sub-s$seed" extra=()
  case $sub in
    full) ;;
    random) extra=(--subset "$OUT/x$s-random-s$seed.json") ;;
    *) extra=(--subset "$OUT/x$s-$sub.json") ;;
  esac
  if [ ! -f "$OUT/$name/set14.json" ]; then
    "$BIN" train --arch wavelr --scale "$s" --steps "$steps" --batch 16 --patch "$patch" \
      --lr 5e-4 --lr-min 1e-6 --seed "$seed" --data-root "$DATA" --holdout 0 \
      --checkpoint-every 500 --out "$OUT/$name" --resume "${extra[@]}"
    for set in set5 set14; do
      "$BIN" eval --model "$OUT/$name/last.safetensors" --data "$DATA/$set" --json \
        >"$OUT/$name/$set.json.tmp"
      mv "$OUT/$name/$set.json.tmp" "$OUT/$name/$set.json"
    done
  fi
}

# A control: every sub-image (keep 1.0) through the subset sampler, to separate the effect of
# sampling sub-images from that of pruning:  scripts/prune-experiment.sh control 2 1
control() { # scale seed
  local s=$1 seed=$2
  [ -f "$OUT/x$s-all.json" ] || "$BIN" prune --scorer "wavelr-x$s" --data-root "$DATA" \
    --keep 1.0 -o "$OUT/x$s-all.json"
  if [ "$s" = 4 ]; then run 4 "$seed" all "$X4_STEPS" 64; else
    run "$s" "$seed" all "$X2_STEPS" "$X2_PATCH"; fi
}

all() {
  mkdir -p "$OUT"
  if [ ! -x "$BIN" ]; then
    cargo build -p websr-cli
    cp "$CARGO_TARGET_DIR/debug/websr" "$BIN"
  fi
  local job s seed
  for job in $JOBS; do
    s=${job%:*} seed=${job#*:}
    manifests "$s" "$seed"
    for sub in full des ref random; do
      if [ "$s" = 4 ]; then run 4 "$seed" "$sub" "$X4_STEPS" 64; else
        run "$s" "$seed" "$sub" "$X2_STEPS" "$X2_PATCH"; fi
    done
  done
  table
}

table() { # markdown table of Y-PSNR / Y-SSIM from the eval JSON files
  python3 - "$OUT" <<'EOF'
import json, os, sys, statistics as st
out = sys.argv[1]
names = {"full": "full 291 set", "des": "hardest 50%", "ref": "refined 50% (drop top 5%)",
         "random": "random 50%",
         "all": "all sub-images (control)"}
for s in (4, 2):
    seeds = sorted({int(d.rsplit("-s", 1)[1]) for d in os.listdir(out)
                    if d.startswith(f"x{s}-") and os.path.isfile(f"{out}/{d}/set14.json")})
    if not seeds:
        continue
    steps = json.load(open(f"{out}/x{s}-full-s{seeds[0]}/config.json"))["steps"]
    print(f"\nx{s}, WaveLR, {steps} steps, seeds {', '.join(map(str, seeds))}: Y-PSNR (dB) per "
          "seed, mean Y-PSNR / Y-SSIM over seeds, and the difference to the full set trained "
          "with the same seed (per seed, then mean)\n")
    print(f"| train set | Set5 x{s} per seed | Set5 x{s} mean | vs full | Set14 x{s} per seed "
          f"| Set14 x{s} mean | vs full |")
    print("|---|---|---|---|---|---|---|")
    full = {}
    spreads = {"set5": [], "set14": []}
    for sub in ("full", "des", "ref", "random", "all"):
        cells = [names[sub]]
        for bench in ("set5", "set14"):
            vals = {}
            for seed in seeds:
                p = f"{out}/x{s}-{sub}-s{seed}/{bench}.json"
                if os.path.isfile(p):
                    m = json.load(open(p))["mean"]
                    vals[seed] = (m["psnr_y"], m["ssim_y"])
            if not vals:
                cells = []
                break
            if len(vals) > 1:
                spreads[bench].append(max(v[0] for v in vals.values())
                                      - min(v[0] for v in vals.values()))
            if sub == "full":
                full[bench] = vals
            cells.append(" / ".join(f"{v[0]:.2f}" for v in vals.values()))
            cells.append(f"{st.mean(v[0] for v in vals.values()):.3f} / "
                         f"{st.mean(v[1] for v in vals.values()):.4f}")
            diffs = [v[0] - full[bench][k][0] for k, v in vals.items()
                     if k in full.get(bench, {})]
            cells.append(" / ".join(f"{d:+.2f}" for d in diffs) + f" (mean {st.mean(diffs):+.3f})"
                         if diffs and sub != "full" else "-")
        if cells:
            print("| " + " | ".join(cells) + " |")
    for bench, v in spreads.items():
        if v:
            print(f"\nseed spread (max - min Y-PSNR over seeds, same train set) on {bench}: "
                  f"mean {st.mean(v):.3f} dB, largest {max(v):.3f} dB")
EOF
}

if [ $# -gt 0 ]; then "$@"; else all; fi
