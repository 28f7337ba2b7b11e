#!/usr/bin/env bash
# Does training against the noiseless truth help? The shipped model fine-tuned for 12 more epochs
# on 40,000 new structured simulations (truths kept), once compared with the truths
# (--target truth) and once with the noisy stamps (--target stamp, the control), then both
# evaluated on the held-out structured simulations and the 53 real galaxies, and their
# reconstructions' border "sky" measured against the truths. Writes
# docs/runs/target_experiment.json.
#
#   scripts/compare_targets.sh [WORKDIR]
#
# On the 2-core development machine: the simulation 30 min (skipped when the file exists),
# each training ~11 min, the measurements ~2 min.
set -euo pipefail
WORK=${1:-data}
SIM="$WORK/sim_struct40k_t.fits"
HELDOUT="$WORK/sim_struct_heldout.fits"
REAL="$WORK/real_btk100.fits"
INIT=${INIT:-galsim_vae/data/default_vae.safetensors}
[ -f "$SIM" ] || python3 -m galsim_vae simulate --n 40000 --scale-mode fit --seed 2029 \
    --out "$SIM" --min-flux-fraction 0.9 --quiet
[ -f "$HELDOUT" ] || python3 -m galsim_vae simulate --n 1200 --scale-mode fit --seed 778 \
    --out "$HELDOUT" --min-flux-fraction 0.9 --quiet --valid 0 --test 0
[ -f "$REAL" ] || python3 -m galsim_vae dataset --out "$REAL" --quiet \
    "${GALSIM_VAE_DATA:-../shared/data}/cosmos_btk100"
for t in truth stamp; do
    R="$WORK/run_v4_$t"
    python3 -m galsim_vae train "$SIM" --out "$R" --preset compact --loss gauss --loss-param 1 \
        --epochs 12 --batch-size 64 --lr 1e-4 --lr-patience 2 --seed 0 --init "$INIT" \
        --target "$t" --quiet
    python3 -m galsim_vae evaluate "$R/best.safetensors" "$HELDOUT" --split passes \
        --out "$R/eval_heldout_quick" --quiet --overwrite
    python3 -m galsim_vae evaluate "$R/best.safetensors" "$REAL" --split passes \
        --out "$R/eval_real_quick" --quiet --overwrite
done
python3 scripts/truth_border_sky.py "$HELDOUT" "$INIT" "$WORK/run_v4_truth/best.safetensors" \
    "$WORK/run_v4_stamp/best.safetensors" > "$WORK/target_border_sky.json"
python3 - "$WORK" "$INIT" <<'EOF'
import json
import sys
from pathlib import Path

work, init = Path(sys.argv[1]), sys.argv[2]
sky = json.loads((work / "target_border_sky.json").read_text())
keys = ("median_chi2_per_pixel", "median_chi2_per_pixel_bright_half", "vae_over_floor_bright_half")
out = {"init": init, "border_sky_truth": sky["truth"]}
for t in ("truth", "stamp"):
    r = work / f"run_v4_{t}"
    hist = json.loads((r / "history.json").read_text())
    best = min(hist, key=lambda h: h["valid_loss"])
    out[t] = {
        "epochs": len(hist),
        "best_epoch": best["epoch"],
        "heldout": {
            k: v
            for k, v in json.loads((r / "eval_heldout_quick/evaluate.json").read_text()).items()
            if k in keys
        },
        "real": {
            k: v
            for k, v in json.loads((r / "eval_real_quick/evaluate.json").read_text()).items()
            if k in keys
        },
        "border_sky": sky[str(r / "best.safetensors")],
    }
out["init_border_sky"] = sky[init]
Path("docs/runs/target_experiment.json").write_text(json.dumps(out, indent=1) + "\n")
print(json.dumps({t: {k: out[t][k] for k in ("heldout", "real")} for t in ("truth", "stamp")}, indent=1))
EOF
