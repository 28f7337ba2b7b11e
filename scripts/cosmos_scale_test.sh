#!/usr/bin/env bash
# The COSMOS-download path at full scale, on the format-exact stand-in (docs/cosmos.md):
# build the stand-in, run `galsim-vae dataset` on it, kill it once mid-way (the whole process
# tree, kill -9) and resume, check the rows against the catalog, train a short run, evaluate.
# Each step's wall time and peak memory (process tree) go to WORK/scale_test.log.
#
#   scripts/cosmos_scale_test.sh [WORK] [KILL_FRACTION]
#
# Environment: N (galaxies, default 87000), EPOCHS (default 1), GALSIM_VAE_DATA.
set -euo pipefail
WORK=${1:-data/standin}
KILL_AT=${2:-0.4}
N=${N:-87000}
EPOCHS=${EPOCHS:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
CAT="$WORK/COSMOS_25.2_training_sample"
OUT="$WORK/cosmos25.fits"
LOG="$WORK/scale_test.log"
mkdir -p "$WORK"
step() { echo "== $(date -u +%FT%TZ) $*" | tee -a "$LOG"; }
run() { "$HERE/peak_rss.sh" "$@" 2> >(tee -a "$LOG" | grep -v "it/s\|gal/s\|stamp/s" >&2); }

if [ ! -f "$CAT/real_galaxy_catalog_25.2.fits" ]; then
    step "build stand-in ($N galaxies)"
    run python3 "$HERE/build_cosmos_standin.py" "$CAT" --n "$N"
fi
du -sh "$CAT" | tee -a "$LOG"
DATASET=(python3 -m galsim_vae dataset "$CAT" --out "$OUT" --scale-mode fit
         --min-flux-fraction 0.9 --quiet)
if [ ! -f "$OUT" ]; then
    step "dataset, to be killed after ${KILL_AT} of the chunks"
    chunks=$(( (N + 1999) / 2000 ))
    setsid "$HERE/peak_rss.sh" "${DATASET[@]}" 2>>"$LOG" &
    leader=$!
    target=$(python3 -c "import math; print(math.ceil($chunks * $KILL_AT))")
    while kill -0 "$leader" 2>/dev/null; do
        done_chunks=$(ls "$OUT.parts" 2>/dev/null | grep -c '\.npz$' || true)
        if [ "$done_chunks" -ge "$target" ]; then
            step "kill -9 of the whole process tree at $done_chunks of $chunks chunks"
            kill -9 -- "-$leader" 2>/dev/null || true
            break
        fi
        sleep 5
    done
    wait "$leader" 2>/dev/null || true
    step "dataset, resumed"
    run "${DATASET[@]}"
fi
step "rows against the catalog"
python3 "$HERE/check_dataset_rows.py" "$OUT" "$CAT" --n 300 | tee -a "$LOG"
step "train ($EPOCHS epoch(s), the shipped recipe otherwise)"
run python3 -m galsim_vae train "$OUT" --out "$WORK/run" --preset compact --loss gauss \
    --loss-param 1 --init default --epochs "$EPOCHS" --batch-size 64 --lr 1e-4 --lr-patience 2 \
    --seed 0 --quiet
step "evaluate"
run python3 -m galsim_vae evaluate "$WORK/run/best.safetensors" "$OUT" --split test \
    --out "$WORK/eval" --quiet --overwrite
step "done"
