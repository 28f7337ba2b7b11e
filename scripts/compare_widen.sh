#!/usr/bin/env bash
# Does a wider decoder bring the shipped model nearer the floor? v6 fine-tuned on its own training
# set (scripts/v6_data.sh makes it) twice, side by side with one thread each: as it is (the
# control) and with its decoder widened to the wide-decoder preset (train --preset wide-decoder
# --init: Net2WiderNet, the same function at the start). v6's recipe (gauss loss, beta 1, batch
# 64, the low-SNR rows, the noisy stamps as target) at lr 3e-5 with plateau patience 3 (the
# schedule lowers it to 3e-6), for MINUTES of training each. Each run's best epoch reconstructs
# the calibrated deep held-out simulations and the real galaxies, from the encoder's means and
# refined in 100 steps. Writes docs/runs/widen_experiment.json (scripts/summarize_widen.py).
#
#   scripts/compare_widen.sh [WORKDIR]
#
# Settings (environment): MINUTES [62, what the 2026-11-28 runs had], LR [3e-5].
# On the 2-core development machine (AVX2): ~3.5 min an epoch (control) and ~5.5 (wide-decoder)
# side by side; scripts/gpu_widen.sh is the same comparison, longer and with the wider-decoder
# preset too, on a GPU.
set -euo pipefail
WORK=${1:-data}
MINUTES=${MINUTES:-62}
. "$(dirname "$0")/v6_data.sh"  # SIM, HELDOUT, REAL
pids=()
for r in "control compact" "wd wide-decoder"; do
    set -- $r
    python3 -m galsim_vae train "$SIM" --out "$WORK/widen_$1" --preset "$2" --init default \
        --loss gauss --loss-param 1 --batch-size 64 --lr "${LR:-3e-5}" --lr-patience 3 --seed 0 \
        --with-low-snr --stop-patience 10 --epochs 300 --threads 1 --quiet \
        --max-minutes "$MINUTES" >"$WORK/widen_$1.log" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for r in control wd; do
    for s in heldout real; do
        f=$HELDOUT; [ $s = real ] && f=$REAL
        python3 -m galsim_vae evaluate "$WORK/widen_$r/best.safetensors" "$f" --split passes \
            --refine 100 --out "$WORK/widen_$r/eval_$s" --quiet --overwrite
    done
done
python3 scripts/summarize_widen.py docs/runs/widen_experiment.json "$WORK/widen_control" \
    "$WORK/widen_wd"
