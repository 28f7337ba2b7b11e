#!/usr/bin/env bash
# The "Model v2" candidate: flux-normalised stamps at per-galaxy pixel scales, trained with the
# Gaussian likelihood of each stamp's noise, and measured against the noise floor and Sersic.
#
#   scripts/train_v2_model.sh [DEVICE] [WORKDIR]
#
# DEVICE is a torch device (default: cuda if available, else cpu); WORKDIR holds the datasets and
# runs (default: data/). Every step is skipped when its output exists, and training resumes from
# its last checkpoint, so rerunning continues an interrupted run. MAX_MINUTES caps the training
# time of one invocation (0: none); NSIM and EPOCHS set the training-set size and epochs.
set -euo pipefail
DEVICE=${1:-$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")}
WORK=${2:-data}
NPROC=${NPROC:-$(python3 -c "import os; print(len(os.sched_getaffinity(0)))")}
NSIM=${NSIM:-50000}
RUN="$WORK/run_v2_gauss"
mkdir -p "$WORK"
# 1. Training set: per-galaxy scales (fit mode), truths kept; the flux-fraction cut at 90%
#    (de Vaucouleurs wings reach past any stamp).
[ -f "$WORK/sim_fit${NSIM%000}k.fits" ] || python3 -m galsim_vae simulate --n "$NSIM" \
    --scale-mode fit --seed 2027 --out "$WORK/sim_fit${NSIM%000}k.fits" \
    --min-flux-fraction 0.9 --nproc "$NPROC" --quiet
# 2. Held-out simulations (another seed) for the floor and the Sersic comparison.
[ -f "$WORK/sim_fit_heldout.fits" ] || python3 -m galsim_vae simulate --n 1500 \
    --scale-mode fit --seed 777 --out "$WORK/sim_fit_heldout.fits" --min-flux-fraction 0.9 \
    --nproc "$NPROC" --quiet --valid 0 --test 0
# 3. The compact network, Gaussian likelihood with beta = 1 (the ELBO); resumes.
python3 -m galsim_vae train "$WORK/sim_fit${NSIM%000}k.fits" --out "$RUN" --preset compact \
    --loss gauss --loss-param 1 --epochs "${EPOCHS:-40}" --batch-size 64 --lr 1e-3 --seed 0 \
    --device "$DEVICE" --max-minutes "${MAX_MINUTES:-0}" --quiet
# 4. Its joint density of latents, pixel scales and fluxes (beside the weights).
python3 -m galsim_vae fit-density "$WORK/sim_fit${NSIM%000}k.fits" --model "$RUN/best.safetensors" \
    --split train --components 16 --overwrite
# 5. Against the floor and Sersic: held-out simulations, then the real galaxies.
python3 -m galsim_vae evaluate "$RUN/best.safetensors" "$WORK/sim_fit_heldout.fits" \
    --split passes --sersic --out "$WORK/eval_v2_heldout"
