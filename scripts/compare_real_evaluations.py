"""Several models' reconstructions of the same real galaxies, beside the Sersic fits of one run.

Each argument is an ``evaluate.json`` of ``galsim-vae evaluate MODEL data/real_btk100.fits
--split passes`` (``--sersic`` on the first: the fits do not depend on the model). Prints, per
model, the median chi2 per pixel on the brighter half (by SNR, as ``evaluate`` splits it) and on
all, and the fraction of the brighter half it reconstructs at least as well as the Sersic fit.

    python scripts/compare_real_evaluations.py docs/runs/default_evaluate_real.json \\
        docs/runs/v5_evaluate_real.json docs/runs/v4_evaluate_real.json \\
        docs/runs/v3_evaluate_real.json docs/runs/v2_evaluate_real.json
"""

import json
import sys

import numpy as np

from galsim_vae.pipeline.dataset import read_dataset, select_split

runs = [json.load(open(p)) for p in sys.argv[1:]]
ref = runs[0]
if "sersic_chi2_per_pixel" not in ref:
    sys.exit("the first evaluation must have the Sersic fits (evaluate --sersic)")
_, table, _, _ = read_dataset(ref["dataset"])
snr = np.asarray(table[select_split(table, ref["split"])]["snr"], dtype=float)
bright = snr >= np.median(snr)
sersic = np.asarray(ref["sersic_chi2_per_pixel"])
print(
    f"{len(snr)} galaxies of {ref['dataset']}; Sersic: brighter half "
    f"{np.median(sersic[bright]):.3f}, all {np.median(sersic):.3f}"
)
for path, run in zip(sys.argv[1:], runs):
    if run["ident"] != ref["ident"]:
        sys.exit(f"{path} evaluated other galaxies than {sys.argv[1]}")
    c = np.asarray(run["chi2_per_pixel"])
    print(
        f"{path}: brighter half {np.median(c[bright]):.3f}, all {np.median(c):.3f}, "
        f"beats the Sersic fit on {np.mean(c[bright] <= sersic[bright]):.0%} of the brighter half"
    )
