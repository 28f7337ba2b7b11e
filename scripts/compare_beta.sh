#!/usr/bin/env bash
# Is the KL weight what keeps the encoder's reconstructions from the floor? The shipped model
# fine-tuned for EPOCHS epochs at a rate of 1e-5 on v6's training set with its truths kept
# (scripts/compare_floor.sh makes it), against the truths (--target truth), with the Gaussian
# likelihood's KL weight BETA; BETA = 1 is the control (the same command as compare_floor.sh's
# W = 0 run). Each run's best epoch reconstructs the calibrated deep held-out simulations and
# the real galaxies from the encoder's means. Writes docs/runs/beta_experiment.json.
#
#   scripts/compare_beta.sh [WORKDIR]
#
# Settings (environment): BETAS [1 0.1 0.01], EPOCHS [6], INIT [the shipped model].
# On the 2-core development machine (AVX2, 2026-11-28): two runs side by side, one thread each,
# ~5 min an epoch each.
set -euo pipefail
WORK=${1:-data}
BETAS=${BETAS:-1 0.1 0.01}
EPOCHS=${EPOCHS:-6}
INIT=${INIT:-galsim_vae/data/default_vae.safetensors}
. "$(dirname "$0")/v6_data.sh"  # SIM, HELDOUT, REAL
for b in $BETAS; do
    R="$WORK/run_beta$b"
    python3 -m galsim_vae train "$SIM" --out "$R" --preset compact --loss gauss --loss-param "$b" \
        --epochs "$EPOCHS" --batch-size 64 --lr 1e-5 --seed 0 --init "$INIT" --with-low-snr \
        --target truth --quiet
    for s in heldout real; do
        f=$HELDOUT; [ $s = real ] && f=$REAL
        [ -f "$R/eval_${s}_quick/evaluate.json" ] || python3 -m galsim_vae evaluate \
            "$R/best.safetensors" "$f" --split passes --out "$R/eval_${s}_quick" --quiet --overwrite
    done
done
python3 - "$WORK" $BETAS <<'PY'
import json
import sys
from pathlib import Path

work, betas = Path(sys.argv[1]), sys.argv[2:]
keys = ("n", "median_chi2_per_pixel", "median_chi2_per_pixel_bright_half",
        "vae_over_floor_bright_half", "median_chi2_to_truth_bright_half")
out = {"what": "the shipped model fine-tuned against the truths with KL weight beta; "
       "reconstructions from the encoder's means", "command": "scripts/compare_beta.sh"}
for b in betas:
    r = work / f"run_beta{b}"
    d = {s: {k: v for k, v in json.loads((r / f"eval_{s}_quick/evaluate.json").read_text()).items()
             if k in keys} for s in ("heldout", "real")}
    hist = json.loads((r / "history.json").read_text())
    d["valid"] = [{k: h[k] for k in ("epoch", "valid_chi2", "valid_kl")} for h in hist]
    out[f"beta{b}"] = d
Path("docs/runs/beta_experiment.json").write_text(json.dumps(out, indent=1) + "\n")
print(json.dumps({k: v["heldout"] for k, v in out.items() if isinstance(v, dict)}, indent=1))
PY
