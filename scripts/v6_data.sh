# Sourced by the v6 experiments (compare_floor.sh, compare_beta.sh): makes, where missing, v6's
# training set simulated again with its truths kept (same command and seed as v6's), the
# calibrated deep held-out set and the real btk100 stamps, under $WORK, and names them SIM,
# HELDOUT and REAL. On the 2-core development machine (AVX2) the training set takes ~43 min.
SIM="$WORK/sim_deepfs32k_t.fits"
HELDOUT="$WORK/sim_deepfs_heldout.fits"
REAL="$WORK/real_btk100.fits"
DATA=${GALSIM_VAE_DATA:-../shared/data}
[ -f "$SIM" ] || python3 -m galsim_vae simulate --n 32000 --scale-mode fit --morphology deep \
    --seed 2032 --faint-size-slope 0.076 --out "$SIM" --min-flux-fraction 0.9 --quiet
[ -f "$HELDOUT" ] || python3 -m galsim_vae simulate --n 1200 --scale-mode fit --morphology deep \
    --seed 778 --faint-size-slope 0.076 --out "$HELDOUT" --min-flux-fraction 0.9 --quiet \
    --valid 0 --test 0
[ -f "$REAL" ] || python3 -m galsim_vae dataset --out "$REAL" --quiet "$DATA/cosmos_btk100"
