#!/usr/bin/env bash
# The "Model v2" recipe: the smooth simulator (bulge + disk + knots), 50,000 stamps, trained from
# random weights; scripts/train_model.sh with these settings (see it for the steps).
#
#   scripts/train_v2_model.sh [DEVICE] [WORKDIR]
#
# The shipped v2 run: RUN=data/run_v2b EPOCHS=38 LR=3e-4 LR_PATIENCE=3 scripts/train_v2_model.sh cpu
# (simulation 42 min, 38 epochs of 33,877 stamps at ~60-130 s each on the 2-core machine).
set -euo pipefail
WORK=${2:-data}
export MORPHOLOGY=smooth NSIM=${NSIM:-50000} SIM_SEED=2027 HELDOUT_SEED=777 INIT= TARGET=stamp MAGNITUDES=training
export RUN=${RUN:-"$WORK/run_v2_gauss"} EPOCHS=${EPOCHS:-40} LR=${LR:-1e-3}
export LR_PATIENCE=${LR_PATIENCE:-4}
exec "$(dirname "$0")/train_model.sh" "$@"
