#!/usr/bin/env bash
# The paper's loss comparison (its sections 4-6): the same compact network trained with the
# original loss (eq. 5), the Beta-VAE (eq. 7, beta = 1e-2) and the KL-constrained "Flow-VAE"
# (eq. 8, lambda = 32), on the same simulated stamps, then the latent SNR (eq. 6) of each on the
# held-out real galaxies.
#
#   scripts/compare_losses.sh SIM_DATASET REAL_DATASET [WORKDIR]
#
# Short runs (MAX_TRAIN stamps, EPOCHS epochs; defaults 4000 and 10) that fit a CPU session.
set -euo pipefail
SIM=$1
REAL=$2
WORK=${3:-data/losses}
mkdir -p "$WORK"
for spec in original: beta:0.01 flow:32; do
    loss=${spec%%:*}
    param=${spec#*:}
    extra=()
    [ -n "$param" ] && extra=(--loss-param "$param")
    python3 -m galsim_vae train "$SIM" --out "$WORK/$loss" --preset compact --loss "$loss" \
        "${extra[@]}" --epochs "${EPOCHS:-10}" --max-train "${MAX_TRAIN:-4000}" --seed 0 --quiet
    python3 -m galsim_vae evaluate "$WORK/$loss/best.safetensors" "$REAL" --split passes \
        --out "$WORK/eval_$loss" > /dev/null
done
python3 - "$WORK" <<'PY'
import json, sys
from pathlib import Path
from galsim_vae.studies.plots import plot_latent_snr
work = Path(sys.argv[1])
names = ["original", "beta", "flow"]
res = {n: json.loads((work / f"eval_{n}" / "evaluate.json").read_text()) for n in names}
plot_latent_snr([res[n]["latent_snr_sorted"] for n in names],
                ["original (eq. 5)", "beta = 1e-2 (eq. 7)", "flow, lambda = 32 (eq. 8)"],
                work / "latent_snr_losses.png", title="Latent SNR on real held-out galaxies")
summary = {n: {"n_latents_snr_gt_1": res[n]["n_informative_latents_snr_gt_1"],
               "max_latent_snr": max(res[n]["latent_snr_sorted"]),
               "median_chi2_per_pixel": res[n]["median_chi2_per_pixel"]} for n in names}
(work / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
PY
