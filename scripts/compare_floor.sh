#!/usr/bin/env bash
# Does a floor term (train --floor W: the chi2 against the noiseless truth over the pixels where
# the truth is below 1% of its peak, pulled from both sides) clean the decoder's faint floor?
# The shipped model fine-tuned for EPOCHS more epochs at a rate of 1e-5 on v6's training set
# simulated again with its truths kept (same command and seed), all compared with the truths
# (--target truth): W = 0 is the control, the others add the term. Each run gets its density
# (the shipped recipe), then: reconstructions of the calibrated deep held-out simulations (chi2,
# negative light, border sky against the truths), the real galaxies' chi2, and NPOP sampled
# galaxies (border sky, negative light, sizes). Writes docs/runs/floor_experiment.json.
#
#   scripts/compare_floor.sh [WORKDIR]
#
# Settings (environment): WEIGHTS [0 10], EPOCHS [6], NPOP [3000], INIT [the shipped model].
# On the 2-core development machine (AVX2, 2026-11-27): the simulation 43 min (skipped when
# the file exists), each run ~12 min of training and ~5 min of measurements. W = 100 was stopped
# after 4 of its 6 epochs, its validation chi2 18-20% above the control's
# (docs/runs/floor100_history.json).
set -euo pipefail
WORK=${1:-data}
WEIGHTS=${WEIGHTS:-0 10}
EPOCHS=${EPOCHS:-6}
NPOP=${NPOP:-3000}
INIT=${INIT:-galsim_vae/data/default_vae.safetensors}
. "$(dirname "$0")/v6_data.sh"  # SIM, HELDOUT, REAL
measure() {  # MODEL OUTDIR: chi2 on the held-out and real stamps, and the sampled population
    python3 -m galsim_vae evaluate "$1" "$HELDOUT" --split passes --out "$2/eval_heldout_quick" \
        --quiet --overwrite
    python3 -m galsim_vae evaluate "$1" "$REAL" --split passes --out "$2/eval_real_quick" \
        --quiet --overwrite
    python3 -m galsim_vae population --model "$1" --n "$NPOP" --seed 1 --out "$2/population_quick" \
        --overwrite
}
mkdir -p "$WORK/floor_init"
[ -f "$WORK/floor_init/population_quick/population.json" ] || measure "$INIT" "$WORK/floor_init"
MODELS=("$INIT")
for w in $WEIGHTS; do
    R="$WORK/run_floor$w"
    python3 -m galsim_vae train "$SIM" --out "$R" --preset compact --loss gauss --loss-param 1 \
        --epochs "$EPOCHS" --batch-size 64 --lr 1e-5 --seed 0 --init "$INIT" --with-low-snr \
        --target truth $([ "$w" = 0 ] || echo --floor "$w") --quiet
    [ -f "$R/best_density.npz" ] || python3 -m galsim_vae fit-density "$SIM" \
        --model "$R/best.safetensors" --split train --components 16 --magnitudes cosmos \
        --with-low-snr --low-snr-brighter-than 23.5
    [ -f "$R/population_quick/population.json" ] || measure "$R/best.safetensors" "$R"
    MODELS+=("$R/best.safetensors")
done
MARGS=()
for m in "${MODELS[@]}"; do MARGS+=(--model "$m"); done
python3 scripts/negative_light.py --dataset "$HELDOUT" "${MARGS[@]}" \
    --out "$WORK/floor_negative_light.json"
python3 scripts/truth_border_sky.py "$HELDOUT" "${MODELS[@]}" > "$WORK/floor_border_sky.json"
python3 - "$WORK" "$INIT" $WEIGHTS <<'PY'
import json
import sys
from pathlib import Path

work, init, weights = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
neg = json.loads((work / "floor_negative_light.json").read_text())
sky = json.loads((work / "floor_border_sky.json").read_text())
keys = ("median_chi2_per_pixel", "median_chi2_per_pixel_bright_half", "vae_over_floor_bright_half")


def report(model, folder):
    ev = {
        s: {k: v for k, v in json.loads((folder / f"eval_{s}_quick/evaluate.json").read_text()).items() if k in keys}
        for s in ("heldout", "real")
    }
    pop = json.loads((folder / "population_quick/population.json").read_text())
    keep = ("sky", "negative_light", "size", "magnitude", "great3", "guard", "targets")
    return {**ev, "negative_light_heldout": neg.get(model), "border_sky_heldout": sky.get(model),
            "population": {k: v for k, v in pop.items() if k in keep}}


out = {"init": init, "truth_negative_light": neg.get("truth"), "truth_border_sky": sky.get("truth")}
out["init_model"] = report(init, work / "floor_init")
for w in weights:
    r = work / f"run_floor{w}"
    hist = json.loads((r / "history.json").read_text())
    best = min(hist, key=lambda h: h["valid_loss"])
    out[f"floor{w}"] = {"epochs": len(hist), "best_epoch": best["epoch"],
                        **report(str(r / "best.safetensors"), r)}
Path("docs/runs/floor_experiment.json").write_text(json.dumps(out, indent=1) + "\n")
print(json.dumps(out, indent=1)[:6000])
PY
