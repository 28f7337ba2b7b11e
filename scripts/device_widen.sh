#!/usr/bin/env bash
# scripts/gpu_widen.sh on a lent GPU machine (the `device` tool), which has PyTorch but neither
# GalSim nor astropy and cannot reach a package registry. Prepared here, in the repository root:
#
#   mkdir -p .carry && echo /.carry/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 -d .whl GalSim==2.8.5 \
#       LSSTDESC.Coord==1.3.1 astropy==8.0.2 pyerfa==2.0.1.5 astropy-iers-data  # as installed here
#   mkdir .site && (cd .site && for w in ../.whl/*.whl; do unzip -q -o "$w"; done &&
#       rm -rf galsim/share/roman galsim/share/sensors galsim/include &&
#       strip --strip-unneeded galsim/_galsim*.so &&     # 199 MB of debug symbols -> 4 MB
#       tar cf - * | xz -T2 > ../.carry/site.tar.xz)   # ~11 MB
#   python3 scripts/carry_dataset.py pack data/sim_deepfs32k_t.fits .carry/v6pack   # ~26 MB
#
# then, with the tool: run(command="BUDGET=500 bash scripts/device_widen.sh", carry=[".carry"],
# timeout_s=590). What comes back (at most 8 files of 16 MiB): log.txt and the runs' best weights,
# histories and logs as runs.tar.part* (cat them into one tar).
T0=$(date +%s)
mkdir -p data/gpu
[ -d data/gpu/site/galsim ] ||
    { mkdir -p data/gpu/site && tar xJf .carry/site.tar.xz -C data/gpu/site; }
export PYTHONPATH=$PWD/data/gpu/site:$PWD PYTHONUNBUFFERED=1
python3 -c "import galsim, astropy, torch, galsim_vae; print(galsim.__version__, astropy.__version__, \
torch.__version__, torch.cuda.get_device_name(0))" || exit 3
budget=$((${BUDGET:-500} - $(date +%s) + T0))
bash scripts/gpu_widen.sh cuda data/gpu "$budget" .carry/v6pack 2>&1 | tee "$OUT/log.txt"
cd data/gpu || exit 4
# of the two wider-decoder runs, the one with the lower validation loss (8 files at most)
W=$(python3 -c "
import json
best = lambda n: min(e['valid_loss'] for e in json.load(open(f'widen_{n}/history.json')))
print(min(('wider', 'wider_hi'), key=best))" 2>/dev/null || echo wider)
echo "bringing back widen_$W; at $(($(date +%s) - T0)) s" | tee -a "$OUT/log.txt"
tar cf - machine.txt widen_*.log widen_*/history.json widen_control/best.safetensors \
    widen_wd/best.safetensors "widen_$W/best.safetensors" 2>/dev/null |
    split -b 15M - "$OUT/runs.tar.part"
ls -la "$OUT"
