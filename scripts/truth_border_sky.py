"""The border-sky measure of ``galsim-vae population`` applied to noiseless simulated galaxies.

    python scripts/truth_border_sky.py data/sim_fit_heldout.fits

A galaxy's own wings reach the border of a stamp sized to 4.5 half-light radii, so even a perfect
model of the simulations has "sky" by this measure: this prints how much the truths have.
"""

import json
import sys

import galsim
import numpy as np

from galsim_vae.pipeline.dataset import read_dataset, read_truths
from galsim_vae.studies.population import sky_pedestals

path = sys.argv[1]
_, table, _, _ = read_dataset(path)
truths = read_truths(path)
keep = np.flatnonzero(np.asarray(table["passes"], dtype=bool))
scales = np.asarray(table["pixel_scale"], dtype=float)
imgs = [galsim.Image(truths[i].astype(float), scale=float(scales[i])) for i in keep]
print(json.dumps({"dataset": path, **sky_pedestals(imgs)}, indent=1))
