#!/usr/bin/env bash
# Simulate, train and measure a flux-representation model: the recipe of the shipped model.
#
#   scripts/train_model.sh [DEVICE] [WORKDIR]
#
# DEVICE is a torch device (default: cuda if available, else cpu); WORKDIR holds the datasets and
# runs (default: data/). Every step is skipped when its output exists, and training resumes from
# its last checkpoint, so rerunning continues an interrupted run. Settings (environment):
#   MORPHOLOGY   simulator morphology, structured, deep or smooth     [structured]
#   NSIM         training stamps simulated (per-galaxy scales)        [40000]
#   FAINT_SIZE_SLOPE  simulate --faint-size-slope: dex per magnitude past F814W 23.5 by which
#                dimmed galaxies are made smaller (scripts/calibrate_faint_sizes.py)   [0]
#   SIM_SEED     their seed; HELDOUT_SEED the 1,200 held-out ones'    [2028; 778]
#   SIM          the training set's file [WORKDIR/sim_struct40k.fits (deep: sim_deep40k.fits);
#                with TARGET=truth _t.fits]
#   HELDOUT      the held-out set's file [WORKDIR/sim_struct_heldout.fits (deep: sim_deep_...)]
#   TARGET       what reconstructions are compared with in training: stamp (the noisy stamps)
#                or truth (the noiseless stamps, kept by the simulation then; measured no
#                better: scripts/compare_targets.sh)                                 [stamp]
#   FLOOR        with TARGET=truth: train --floor, the weight of the chi2 against the truth
#                where the truth is below 1% of its peak (scripts/compare_floor.sh)   [0: none]
#   REFINE       steps of latent refinement in the evaluations (evaluate --refine)   [100]
#   ATTR_SIM     the simulated set the attribute model is fitted on              [SIM]
#   MAGNITUDES   the magnitudes sampled galaxies get by default: cosmos (the COSMOS F814W<23.5
#                distribution, stored with the density) or training (the training set's) [cosmos]
#   WITH_LOW_SNR 1: train and fit the density on the stamps that fail the cuts by their SNR
#                alone too (train/fit-density --with-low-snr; scripts/compare_low_snr.sh)   [0]
#   DENSITY_LOW_SNR_BRIGHTER  with WITH_LOW_SNR=1: fit the density on the stamps below the SNR
#                cut only where brighter than this F814W magnitude (fit-density
#                --low-snr-brighter-than; the shipped density: 23.5)           [all of them]
#   OUTPUT       the decoder's head: linear or softmax (train --output)              [linear]
#   RUN          run folder                                           [WORKDIR/run_MORPHOLOGY]
#   EPOCHS, LR, LR_PATIENCE   training epochs, start rate, plateau patience   [16, 1e-4, 2]
#   INIT         weights to start from (fine-tuning); empty: random  [the shipped model's file]
#   MAX_MINUTES  cap on one invocation's training time (0: none)      [0]
#   CROSSVAL     0: stop before the cross-validated real fine-tuning (step 8)     [1]
#   MEASUREMENTS another run's attributes_report/measurements.npz to reuse (the Sersic fits of
#                the training stamps do not depend on the model)
# scripts/train_v2_model.sh sets them for the v2 model (smooth, from scratch). On the 2-core
# development machine: simulation ~45 min (40,000 structured stamps), training ~110 s an epoch,
# evaluation with the Sersic fits ~8 min, population ~5 min, fit-attributes ~15 min,
# cross-validation ~15 min.
set -euo pipefail
DEVICE=${1:-$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")}
WORK=${2:-data}
NPROC=${NPROC:-$(python3 -c "import os; print(len(os.sched_getaffinity(0)))")}
MORPHOLOGY=${MORPHOLOGY:-structured}
NSIM=${NSIM:-40000}
case "$MORPHOLOGY" in smooth) PREFIX=fit ;; deep) PREFIX=deep ;; *) PREFIX=struct ;; esac
TARGET=${TARGET:-stamp}
MAGNITUDES=${MAGNITUDES:-cosmos}
case "$TARGET" in truth | stamp) ;; *) echo "TARGET must be truth or stamp, not $TARGET" >&2; exit 1 ;; esac
FLOOR=${FLOOR:-0}
[ "$FLOOR" = 0 ] || [ "$TARGET" = truth ] || { echo "FLOOR needs TARGET=truth" >&2; exit 1; }
LOW_SNR=$([ "${WITH_LOW_SNR:-0}" = 1 ] && echo --with-low-snr || true)
SIM=${SIM:-"$WORK/sim_${PREFIX}${NSIM%000}k$([ "$TARGET" = truth ] && echo _t).fits"}
ATTR_SIM=${ATTR_SIM:-$SIM}
HELDOUT=${HELDOUT:-"$WORK/sim_${PREFIX}_heldout.fits"}
RUN=${RUN:-"$WORK/run_$MORPHOLOGY"}
INIT=${INIT-galsim_vae/data/default_vae.safetensors}
mkdir -p "$WORK"
# 1. Training set: per-galaxy scales (fit mode); the flux-fraction cut at 90% (de Vaucouleurs
#    wings reach past any stamp).
#    The noiseless truths are kept when training compares with them.
[ -f "$SIM" ] || python3 -m galsim_vae simulate --n "$NSIM" --scale-mode fit \
    --morphology "$MORPHOLOGY" --seed "${SIM_SEED:-2028}" --out "$SIM" \
    --faint-size-slope "${FAINT_SIZE_SLOPE:-0}" \
    --min-flux-fraction 0.9 --nproc "$NPROC" --quiet $([ "$TARGET" = truth ] || echo --no-truth)
# 2. Held-out simulations (another seed, truths kept) for the floor and the Sersic comparison.
[ -f "$HELDOUT" ] || python3 -m galsim_vae simulate --n 1200 --scale-mode fit \
    --morphology "$MORPHOLOGY" --seed "${HELDOUT_SEED:-778}" --out "$HELDOUT" \
    --faint-size-slope "${FAINT_SIZE_SLOPE:-0}" \
    --min-flux-fraction 0.9 --nproc "$NPROC" --quiet --valid 0 --test 0
# 3. The compact network, Gaussian likelihood with beta = 1 (the ELBO); resumes. A fine-tuning
#    run copies its starting weights into the run folder first, so that replacing the shipped
#    model later does not change what a resume starts from.
if [ -n "$INIT" ]; then
    mkdir -p "$RUN"
    [ -f "$RUN/init.safetensors" ] || cp "$INIT" "$RUN/init.safetensors"
    cmp -s "$INIT" "$RUN/init.safetensors" || [ -n "${INIT_CHANGED_OK:-}" ] || {
        echo "$RUN was started from other weights than INIT=$INIT (its init.safetensors);" \
            "resuming it continues from those (INIT_CHANGED_OK=1), or use another RUN" >&2
        exit 1
    }
fi
python3 -m galsim_vae train "$SIM" --out "$RUN" --preset compact \
    --loss gauss --loss-param 1 --epochs "${EPOCHS:-16}" --batch-size 64 --lr "${LR:-1e-4}" \
    --lr-patience "${LR_PATIENCE:-2}" --seed 0 --device "$DEVICE" \
    --max-minutes "${MAX_MINUTES:-0}" --target "$TARGET" --output "${OUTPUT:-linear}" --quiet \
    $([ "$FLOOR" = 0 ] || echo --floor "$FLOOR") \
    ${INIT:+--init "$RUN/init.safetensors"} $LOW_SNR
# 4. Its joint density of latents, pixel scales and fluxes (beside the weights).
python3 -m galsim_vae fit-density "$SIM" --model "$RUN/best.safetensors" \
    --split train --components 16 --magnitudes "$MAGNITUDES" --overwrite $LOW_SNR \
    ${DENSITY_LOW_SNR_BRIGHTER:+--low-snr-brighter-than "$DENSITY_LOW_SNR_BRIGHTER"}
# 5. Against the floor and Sersic: held-out simulations, then the real galaxies that pass; from
#    the encoder's means and from latents refined in REFINE steps (0: none; ~2.5 min per 1,000
#    stamps on 2 cores).
python3 -m galsim_vae evaluate "$RUN/best.safetensors" "$HELDOUT" \
    --split passes --sersic --nproc "$NPROC" --refine "${REFINE:-100}" --out "$RUN/eval_heldout" \
    --quiet --overwrite
[ -f "$WORK/real_btk100.fits" ] || python3 -m galsim_vae dataset --out "$WORK/real_btk100.fits" \
    --nproc "$NPROC" --quiet "${GALSIM_VAE_DATA:-../shared/data}/cosmos_btk100"
python3 -m galsim_vae evaluate "$RUN/best.safetensors" "$WORK/real_btk100.fits" \
    --split passes --sersic --nproc "$NPROC" --refine "${REFINE:-100}" --out "$RUN/eval_real" \
    --quiet --overwrite
# 6. The sampled population against COSMOS (pedestals, sizes, magnitudes, resolution).
python3 -m galsim_vae population --model "$RUN/best.safetensors" --n 10000 --seed 1 \
    --out "$RUN/population" --overwrite
# 7. Its attribute model (Hubble type, size, axis ratio <-> latents, pixel scales and fluxes):
#    PSF-convolved Sersic fits of 3,000 training stamps, kept in the report folder.
python3 -m galsim_vae fit-attributes "$ATTR_SIM" \
    --model "$RUN/best.safetensors" --max-rows 3000 --report "$RUN/attributes_report" \
    --real "$WORK/real_btk100.fits" --nproc "$NPROC" --quiet --overwrite \
    ${MEASUREMENTS:+--measurements "$MEASUREMENTS"}
# 8. Fine-tuning on the real galaxies, 5-fold cross-validated (and the model fine-tuned on all
#    of them, shipped only if the folds say it helps).
#    One folder per best model: a run trained further gets its own cross-validation. Fine-tuning
#    compares reconstructions with the noisy stamps, real and simulated alike (real stamps have
#    no truth), whatever TARGET was.
[ "${CROSSVAL:-1}" = 0 ] && exit 0
CV="$RUN/crossval_$(sha256sum "$RUN/best.safetensors" | cut -c1-12)"
python3 -m galsim_vae crossval "$WORK/real_btk100.fits" "$SIM" --model "$RUN/best.safetensors" \
    --out "$CV" --final --device "$DEVICE" --quiet
