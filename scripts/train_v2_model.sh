#!/usr/bin/env bash
# The "Model v2" candidate: flux-normalised stamps at per-galaxy pixel scales, trained with the
# Gaussian likelihood of each stamp's noise, and measured against the noise floor and Sersic.
#
#   scripts/train_v2_model.sh [DEVICE] [WORKDIR]
#
# DEVICE is a torch device (default: cuda if available, else cpu); WORKDIR holds the datasets and
# runs (default: data/). Every step is skipped when its output exists, and training resumes from
# its last checkpoint, so rerunning continues an interrupted run. On the 2-core development
# machine: simulation 42 min (50,000 stamps), training 40 epochs of 33,877 stamps at ~60 s each,
# evaluation with the Sersic fits ~8 min. MAX_MINUTES caps the training
# time of one invocation (0: none); NSIM, EPOCHS, LR and LR_PATIENCE set the training-set size,
# the epochs, the start learning rate and the plateau patience; RUN the run folder.
set -euo pipefail
DEVICE=${1:-$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")}
WORK=${2:-data}
NPROC=${NPROC:-$(python3 -c "import os; print(len(os.sched_getaffinity(0)))")}
NSIM=${NSIM:-50000}
RUN=${RUN:-"$WORK/run_v2_gauss"}
mkdir -p "$WORK"
# 1. Training set: per-galaxy scales (fit mode), truths kept; the flux-fraction cut at 90%
#    (de Vaucouleurs wings reach past any stamp).
[ -f "$WORK/sim_fit${NSIM%000}k.fits" ] || python3 -m galsim_vae simulate --n "$NSIM" \
    --scale-mode fit --morphology smooth --seed 2027 --out "$WORK/sim_fit${NSIM%000}k.fits" \
    --min-flux-fraction 0.9 --nproc "$NPROC" --quiet
# 2. Held-out simulations (another seed) for the floor and the Sersic comparison.
[ -f "$WORK/sim_fit_heldout.fits" ] || python3 -m galsim_vae simulate --n 1200 \
    --scale-mode fit --morphology smooth --seed 777 --out "$WORK/sim_fit_heldout.fits" --min-flux-fraction 0.9 \
    --nproc "$NPROC" --quiet --valid 0 --test 0
# 3. The compact network, Gaussian likelihood with beta = 1 (the ELBO); resumes.
python3 -m galsim_vae train "$WORK/sim_fit${NSIM%000}k.fits" --out "$RUN" --preset compact \
    --loss gauss --loss-param 1 --epochs "${EPOCHS:-40}" --batch-size 64 --lr "${LR:-1e-3}" \
    --lr-patience "${LR_PATIENCE:-4}" --seed 0 \
    --device "$DEVICE" --max-minutes "${MAX_MINUTES:-0}" --quiet
# 4. Its joint density of latents, pixel scales and fluxes (beside the weights).
python3 -m galsim_vae fit-density "$WORK/sim_fit${NSIM%000}k.fits" --model "$RUN/best.safetensors" \
    --split train --components 16 --overwrite
# 5. Against the floor and Sersic: held-out simulations, then the 53 real galaxies that pass.
python3 -m galsim_vae evaluate "$RUN/best.safetensors" "$WORK/sim_fit_heldout.fits" \
    --split passes --sersic --nproc "$NPROC" --out "$RUN/eval_heldout" --quiet --overwrite
[ -f "$WORK/real_btk100.fits" ] || python3 -m galsim_vae dataset --out "$WORK/real_btk100.fits" \
    --nproc "$NPROC" --quiet "${GALSIM_VAE_DATA:-../shared/data}/cosmos_btk100"
python3 -m galsim_vae evaluate "$RUN/best.safetensors" "$WORK/real_btk100.fits" \
    --split passes --sersic --nproc "$NPROC" --out "$RUN/eval_real" --quiet --overwrite
# 6. The sampled population against COSMOS (pedestals, sizes, magnitudes, resolution).
python3 -m galsim_vae population --model "$RUN/best.safetensors" --n 10000 --seed 1 \
    --out "$RUN/population" --overwrite
# 7. Its attribute model (Hubble type, size, axis ratio <-> latents, pixel scales and fluxes),
#    refitted like the density for whatever best.safetensors is now: PSF-convolved Sersic fits
#    of 3,000 training stamps, kept in the report folder (a rerun measures only what is missing;
#    the fits do not depend on the model, so MEASUREMENTS= may name another run's file).
python3 -m galsim_vae fit-attributes "$WORK/sim_fit${NSIM%000}k.fits" \
    --model "$RUN/best.safetensors" --max-rows 3000 --report "$RUN/attributes_report" \
    --real "$WORK/real_btk100.fits" --nproc "$NPROC" --quiet --overwrite \
    ${MEASUREMENTS:+--measurements "$MEASUREMENTS"}
