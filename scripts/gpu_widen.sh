#!/usr/bin/env bash
# The decoder-capacity experiment: the shipped model (v6) fine-tuned on its own training set as it
# is (the control) and with its decoder widened (train --preset wide-decoder / wider-decoder
# --init default: Net2WiderNet, the same function at the start), side by side on one device:
#
#   scripts/gpu_widen.sh DEVICE WORKDIR SECONDS [PACK]
#
#   control     compact (v6 as it is),              lr 1e-5
#   wd          wide-decoder (2.3x decode FLOPs),    lr 1e-5
#   wider       wider-decoder (5x decode FLOPs),     lr 1e-5
#   wider_hi    wider-decoder,                       lr 3e-5
#
# The recipe is v6's last step (train_model.sh: gauss loss, beta 1, batch 64, --with-low-snr,
# noisy-stamp target) with plateau patience 3, at lower rates: from v6's weights, v6's 1e-4 took
# the validation loss from 1.731 to 1.99 in the first epoch; 3e-5 to 1.77, and under v6's only
# once the plateau schedule had lowered the rate to 3e-6 (the 2-core machine,
# docs/runs/widen_experiment.json); 1e-5 is the rate at which v6 went on improving on a GPU
# (1.713 after 23 epochs, docs/runs/gpu_experiments.json). The training set is
# v6's (32,000 calibrated deep simulations, seed 2032), made from PACK (scripts/carry_dataset.py
# pack data/sim_deepfs32k_t.fits PACK: the truths, with the noise drawn again) when
# WORKDIR/v6_carried.fits is missing; the runs
# stop after the epoch that passes SECONDS from the start of this script (train --max-minutes) and
# resume when it is run again. scripts/device_widen.sh runs it on a lent GPU machine. On a CPU the
# same commands run as they are, slowly: the first two runs at 3e-5, one thread each on the
# 2-core development machine, on data/sim_deepfs32k_t.fits itself (scripts/v6_data.sh), took
# ~3.5 and ~5.5 min an epoch (docs/runs/widen_experiment.json).
set -euo pipefail
T0=$(date +%s)
DEVICE=${1:?device}
WORK=${2:?workdir}
SECONDS_BUDGET=${3:?seconds}
PACK=${4:-.carry/v6pack}
NPROC=${NPROC:-$(python3 -c "import os; print(len(os.sched_getaffinity(0)))")}
SIM="$WORK/v6_carried.fits"
mkdir -p "$WORK"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null ||
    python3 -c "import platform, os; print('cpu', platform.machine(), os.cpu_count())"; } \
    >"$WORK/machine.txt"
[ -f "$SIM" ] ||
    python3 scripts/carry_dataset.py unpack "$PACK" "$SIM" --nproc "$NPROC"
echo "data ready at $(($(date +%s) - T0)) s"
minutes=$(python3 -c "print(max(0.2, ($T0 + $SECONDS_BUDGET - $(date +%s)) / 60))")
train() { # NAME PRESET LR
    python3 -m galsim_vae train "$SIM" --out "$WORK/widen_$1" --preset "$2" --init default \
        --loss gauss --loss-param 1 --batch-size 64 --lr "$3" --lr-patience 3 --seed 0 \
        --device "$DEVICE" --with-low-snr --stop-patience 10 --epochs 300 --threads 2 --quiet \
        --max-minutes "$minutes" >"$WORK/widen_$1.log" 2>&1
}
train control compact 1e-5 &
pids=($!)
train wd wide-decoder 1e-5 &
pids+=($!)
train wider wider-decoder 1e-5 &
pids+=($!)
train wider_hi wider-decoder 3e-5 &
pids+=($!)
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
for n in control wd wider wider_hi; do
    python3 -c "import json, sys; h = json.load(open(sys.argv[1])); b = min(h, key=lambda e: \
e['valid_loss']); print(sys.argv[2], len(h), 'epochs, best', b['epoch'], round(b['valid_loss'], \
5), 'median epoch s', sorted(e['seconds'] for e in h)[len(h) // 2])" \
        "$WORK/widen_$n/history.json" "$n" || tail -5 "$WORK/widen_$n.log"
done
echo "done at $(($(date +%s) - T0)) s"
exit $status
