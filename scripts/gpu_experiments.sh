#!/usr/bin/env bash
# Four training runs side by side on one device, on the shipped model's training data (v6's
# 32,000 calibrated deep simulations, seed 2032: train_model.sh's SIM=data/sim_deepfs32k.fits):
#
#   scripts/gpu_experiments.sh [DEVICE] [WORKDIR]
#
#   ft        compact, linear head, fine-tuned from the shipped model at lr 1e-5 (v6 continued)
#   softmax   compact, softmax head (positive pixels), fine-tuned from the shipped model, lr 1e-4
#   scratch   compact, linear head, from random weights: docs/cosmos.md's old recipe (lr 1e-3)
#   wide      the wide preset (2.2x compact's arithmetic), linear head, from random weights
#
# The runs share the device; "scratch" starts first and runs alone for its first two epochs, whose
# times are the time per epoch on that device (docs/cosmos.md). Settings (environment):
#   END      a wall-clock deadline (seconds since 1970): the runs stop after the epoch that passes
#            END minus a minute (galsim-vae train --max-minutes)          [none: EPOCHS each]
#   EPOCHS   the most epochs of each run                                     [300]
#   NPROC    simulation processes                                            [all cores]
# Every run resumes when the script is run again; on a CPU the same commands run as they are
# (~39 s a compact epoch alone on 2 cores; four at once share the cores), with `--epochs N` in
# place of a deadline, to the same recipe but not the same floating-point path. Each run's folder
# is WORKDIR/gpu_NAME; WORKDIR/gpu_timing.json holds the solo epochs and WORKDIR/machine.txt the
# device. scripts/summarize_gpu_experiments.py WORKDIR collects them with their evaluations.
set -euo pipefail
DEVICE=${1:-cuda}
WORK=${2:-data}
NPROC=${NPROC:-$(python3 -c "import os; print(len(os.sched_getaffinity(0)))")}
EPOCHS=${EPOCHS:-300}
SIM="$WORK/sim_deepfs32k.fits"
INIT=galsim_vae/data/default_vae.safetensors
mkdir -p "$WORK"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null ||
    python3 -c "import platform, os; print('cpu'); print(platform.processor() or platform.machine(), os.cpu_count(), 'cores')"; } >"$WORK/machine.txt"
[ -f "$SIM" ] || python3 -m galsim_vae simulate --n 32000 --scale-mode fit --morphology deep \
    --seed 2032 --out "$SIM" --faint-size-slope 0.076 --min-flux-fraction 0.9 \
    --nproc "$NPROC" --quiet --no-truth
minutes() { # what is left before END, less a minute for the last epoch and the copies
    if [ -z "${END:-}" ]; then echo 0; else
        python3 -c "import time; print(max(0.5, ($END - time.time() - 60) / 60))"
    fi
}
train() { # NAME, then train's options
    local name=$1
    shift
    python3 -m galsim_vae train "$SIM" --out "$WORK/gpu_$name" --loss gauss --loss-param 1 \
        --batch-size 64 --seed 0 --device "$DEVICE" --with-low-snr --stop-patience 10 \
        --epochs "$EPOCHS" --threads 2 --quiet --max-minutes "$(minutes)" "$@" \
        >"$WORK/gpu_$name.log" 2>&1
}
train scratch --preset compact --lr 1e-3 --lr-patience 4 &
pids=($!)
# The time per epoch alone on the device: the first two epochs (waited for at most 90 s on a
# GPU, 15 min on a CPU).
python3 - "$WORK" "$DEVICE" "${pids[0]}" <<'EOF'
import json, os, sys, time
import torch
work, device, pid = sys.argv[1:]
hist = os.path.join(work, "gpu_scratch", "history.json")
t0 = time.time()
limit = 90 if device.startswith("cuda") else 900
while time.time() - t0 < limit and os.path.isdir(f"/proc/{pid}"):
    if os.path.isfile(hist):
        try:
            h = json.load(open(hist))
        except ValueError:
            h = []
        if len(h) >= 2:
            break
    time.sleep(1)
h = json.load(open(hist)) if os.path.isfile(hist) else []
info = {
    "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else device,
    "torch": torch.__version__,
    "solo_epochs": [{k: e[k] for k in ("epoch", "seconds", "valid_loss")} for e in h[:2]],
}
json.dump(info, open(os.path.join(work, "gpu_timing.json"), "w"), indent=1)
print(json.dumps(info))
EOF
train ft --preset compact --init "$INIT" --lr 1e-5 --lr-patience 3 &
pids+=($!)
train softmax --preset compact --output softmax --init "$INIT" --lr 1e-4 --lr-patience 2 &
pids+=($!)
train wide --preset wide --lr 1e-3 --lr-patience 4 &
pids+=($!)
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
for n in scratch ft softmax wide; do
    python3 -c "import json, sys; h = json.load(open(sys.argv[1])); b = min(h, key=lambda e: \
e['valid_loss']); print(sys.argv[2], len(h), 'epochs, best', b['epoch'], round(b['valid_loss'], 4))" \
        "$WORK/gpu_$n/history.json" "$n" || tail -5 "$WORK/gpu_$n.log"
done
exit $status
