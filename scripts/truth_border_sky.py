"""The border-sky measure of ``galsim-vae population`` applied to noiseless simulated galaxies,
and to a model's reconstructions of the same (noisy) stamps.

    python scripts/truth_border_sky.py data/sim_struct_heldout.fits [MODEL ...]

A galaxy's own wings reach the border of a stamp sized to 4.5 half-light radii, so even a perfect
model of the simulations has "sky" by this measure: this prints how much the truths have, then,
for each model given (a weights file, or ``default``), how much its reconstructions of the noisy
stamps have, with the median per-galaxy excess over the truth (reconstruction minus truth, as a
fraction of the flux).
"""

import json
import sys

import galsim
import numpy as np

from galsim_vae import get_model
from galsim_vae.pipeline.dataset import read_dataset, read_truths
from galsim_vae.stamp import border_sky
from galsim_vae.studies.population import sky_pedestals

path = sys.argv[1]
images, table, _, _ = read_dataset(path)
truths = read_truths(path)
keep = np.flatnonzero(np.asarray(table["passes"], dtype=bool))
scales = np.asarray(table["pixel_scale"], dtype=float)


def summary(stamps):
    imgs = [
        galsim.Image(np.asarray(s, float), scale=float(scales[i])) for i, s in zip(keep, stamps)
    ]
    rep = sky_pedestals(imgs)
    return {k: v for k, v in rep.items() if k != "sky_percentiles"}


def sky_over_flux(stamps):
    return np.array([border_sky(x) / x.sum() for x in stamps])


truth = truths[keep]
out = {"dataset": path, "n": len(keep), "truth": summary(truth)}
for name in sys.argv[2:]:
    m = get_model(None if name == "default" else name)
    rec = m.reconstruct(images[keep])
    rep = summary(rec)
    # The excess of the border "sky" over the truth's, galaxy by galaxy (fractions of the flux).
    excess = sky_over_flux(rec) - sky_over_flux(truth)
    rep["excess_over_truth_percentiles"] = {
        str(q): float(v) for q, v in zip((16, 50, 84), np.percentile(excess, [16, 50, 84]))
    }
    out[str(name)] = rep
print(json.dumps(out, indent=1))
