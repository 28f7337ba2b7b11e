#!/usr/bin/env bash
# The simulator against the real galaxies, before any model: the "smooth" simulator (bulge + disk +
# knots, the v2 model's training set), the "structured" one (arms, bars, lopsided disks, giant
# clumps, companions, faint late types) and the "deep" one (structured, with faint disks flatter,
# less bulgy and clumpier, as faint COSMOS galaxies are), each compared with the 53 real btk100
# galaxies that pass the cuts and with their best-fit Sersic profiles
# (docs/validation/simulator_*/simulator.md).
#
#   scripts/compare_simulators.sh [WORKDIR]
#
# The simulated sets are drawn as the real dataset is (fixed 0.03"/px, the default cuts), so that
# the stamps passing the cuts are selected alike on both sides; 8,000 of each, ~6 min each on the
# 2-core development machine, the two comparisons ~2 min each.
set -euo pipefail
WORK=${1:-data}
NPROC=${NPROC:-$(python3 -c "import os; print(len(os.sched_getaffinity(0)))")}
mkdir -p "$WORK"
[ -f "$WORK/real_btk100.fits" ] || python3 -m galsim_vae dataset --out "$WORK/real_btk100.fits" \
    --nproc "$NPROC" --quiet "${GALSIM_VAE_DATA:-../shared/data}/cosmos_btk100"
for m in smooth structured deep; do
    [ -f "$WORK/cmp_${m}_fixed8k.fits" ] || python3 -m galsim_vae simulate --n 8000 \
        --scale-mode fixed --morphology "$m" --seed 555 --out "$WORK/cmp_${m}_fixed8k.fits" \
        --valid 0 --test 0 --no-truth --nproc "$NPROC" --quiet
    python3 -m galsim_vae validate "$WORK/real_btk100.fits" \
        --simulated "$WORK/cmp_${m}_fixed8k.fits" --out "docs/validation/simulator_$m" --overwrite
done
# The deep simulator was tuned on the comparison above (seed 555): another seed's 8,000 stamps.
[ -f "$WORK/cmp_deep_fixed8k_s556.fits" ] || python3 -m galsim_vae simulate --n 8000 \
    --scale-mode fixed --morphology deep --seed 556 --out "$WORK/cmp_deep_fixed8k_s556.fits" \
    --valid 0 --test 0 --no-truth --nproc "$NPROC" --quiet
python3 -m galsim_vae validate "$WORK/real_btk100.fits" \
    --simulated "$WORK/cmp_deep_fixed8k_s556.fits" \
    --out docs/validation/simulator_deep_seed556 --overwrite
# The deep simulator with its faint galaxies' sizes calibrated on the real galaxies
# (--faint-size-slope 0.076, scripts/calibrate_faint_sizes.py against the seed-555 set): seed 556.
[ -f "$WORK/cmp_deepfs_fixed8k_s556.fits" ] || python3 -m galsim_vae simulate --n 8000 \
    --scale-mode fixed --morphology deep --faint-size-slope 0.076 --seed 556 \
    --out "$WORK/cmp_deepfs_fixed8k_s556.fits" --valid 0 --test 0 --no-truth --nproc "$NPROC" --quiet
python3 -m galsim_vae validate "$WORK/real_btk100.fits" \
    --simulated "$WORK/cmp_deepfs_fixed8k_s556.fits" \
    --out docs/validation/simulator_deep_faint --overwrite
