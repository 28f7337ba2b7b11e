#!/usr/bin/env bash
# Reproduces the shipped default model (see galsim_vae/data/MODEL_CARD.md).
#
#   scripts/train_default_model.sh [DEVICE] [WORKDIR]
#
# DEVICE is a torch device (default: cuda if available, else cpu); WORKDIR holds the datasets and
# runs (default: data/). On a GPU the whole script takes minutes; on 2 CPU cores the training
# step takes hours (use --max-train / fewer epochs for a quick look).
set -euo pipefail
DEVICE=${1:-$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")}
WORK=${2:-data}
NPROC=${NPROC:-$(python3 -c "import os; print(len(os.sched_getaffinity(0)))")}
mkdir -p "$WORK"
NSIM=${NSIM:-50000}
# 1. The training set: NSIM simulated COSMOS-like stamps (about 30% pass the quality cuts).
[ -f "$WORK/sim$NSIM.fits" ] || python3 -m galsim_vae simulate --n "$NSIM" --seed 2026 \
    --out "$WORK/sim$NSIM.fits" --nproc "$NPROC" --quiet
# 2. The held-out real galaxies (never trained on).
[ -f "$WORK/real_btk100.fits" ] || python3 -m galsim_vae dataset --out "$WORK/real_btk100.fits" \
    --nproc "$NPROC" --quiet "${GALSIM_VAE_DATA:-../shared/data}/cosmos_btk100"
# 3. The compact Beta-VAE (beta = 1e-2); reruns resume from the last checkpoint.
python3 -m galsim_vae train "$WORK/sim$NSIM.fits" --out "$WORK/run_compact_beta" --preset compact \
    --loss beta --epochs "${EPOCHS:-50}" --batch-size 128 --lr 1e-3 --seed 0 --device "$DEVICE" \
    --max-minutes "${MAX_MINUTES:-0}" --quiet
# 4. The numbers of the model card, on the real galaxies that pass the cuts.
python3 -m galsim_vae evaluate "$WORK/run_compact_beta/best.safetensors" "$WORK/real_btk100.fits" \
    --split passes --out "$WORK/eval_compact_beta"
