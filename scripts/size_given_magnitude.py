"""Sizes at each magnitude: the training set against the model's conditional sampling.

    python scripts/size_given_magnitude.py data/sim_struct40k.fits [MODEL]

For bins of F814W magnitude, prints: how many training-set stamps the quality cuts keep and the
median half-light radius (the ``hlr`` column) of those kept and of those cut; the median pixel
scale (a galaxy's size) of the training split; and the median pixel scale of galaxies the model
(default: the shipped one) samples at magnitudes spread uniformly over the bin
(``sample_population(magnitude=...)``). If the last two agree, sizes at a given magnitude are
the training set's.
"""

import json
import sys

import galsim
import numpy as np

from galsim_vae import get_model
from galsim_vae.pipeline.dataset import read_dataset
from galsim_vae.studies.population import magnitudes

BINS = [(18.0, 21.0), (21.0, 22.0), (22.0, 23.0), (23.0, 23.5), (23.5, 25.0)]

_, t, _, _ = read_dataset(sys.argv[1])
m = get_model(sys.argv[2] if len(sys.argv) > 2 else None)
passes = np.asarray(t["passes"], dtype=bool)
true_mag = magnitudes(np.clip(np.asarray(t["flux_true"], float), 1e-9, None))
hlr = np.asarray(t["hlr"], dtype=float)
train = np.asarray(t["split"]) == "train"
mag = magnitudes(np.asarray(t["flux"], float)[train])
scale = np.asarray(t["pixel_scale"], float)[train]
rng = np.random.default_rng(0)
rows = []
for lo, hi in BINS:
    b = (true_mag >= lo) & (true_mag < hi)
    s = (mag >= lo) & (mag < hi)
    pop = m.sample_population(4000, galsim.BaseDeviate(3), magnitude=rng.uniform(lo, hi, 4000))
    rows.append(
        {
            "magnitudes": [lo, hi],
            "n_simulated": int(b.sum()),
            "fraction_kept_by_cuts": float(passes[b].mean()),
            "median_hlr_kept": float(np.median(hlr[b & passes])),
            "median_hlr_cut": float(np.median(hlr[b & ~passes])) if (b & ~passes).any() else None,
            "median_pixel_scale_training": float(np.median(scale[s])),
            "median_pixel_scale_sampled": float(np.median(pop["pixel_scale"])),
        }
    )
print(json.dumps(rows, indent=1))
