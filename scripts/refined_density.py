"""Does a latent density fitted on refined latents (posterior modes) sample better galaxies?

Fits the shipped recipe's density (the training rows, plus the rows below the SNR cut brighter
than F814W 23.5) on a random subset of N of those rows twice: on the encoder's means (the
control) and on the same rows' latents refined in STEPS steps (VAEModel.refine_latents), each
beside a copy of the model's weights and attribute file in OUT/{encoder,refined}/, ready for
``galsim-vae population --model OUT/refined/model.safetensors`` and ``validate``.

    python scripts/refined_density.py SIM.fits OUT [--model M] [--n 6000] [--steps 100]
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from galsim_vae import get_model
from galsim_vae.attributes import attributes_path
from galsim_vae.density import LatentDensity
from galsim_vae.model import density_path
from galsim_vae.pipeline.dataset import (
    StampDataset,
    read_dataset,
    select_with_low_snr,
)

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("dataset")
p.add_argument("out")
p.add_argument("--model", default=None)
p.add_argument("--n", type=int, default=6000)
p.add_argument("--steps", type=int, default=100)
p.add_argument("--brighter-than", type=float, default=23.5)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()

m = get_model(a.model)
shipped = m.density
images, table, _, header = read_dataset(a.dataset)
sel, _ = select_with_low_snr(table, header, images, "train", brighter_than=a.brighter_than)
rows = np.flatnonzero(sel)
rows = np.sort(np.random.default_rng(a.seed).choice(rows, min(a.n, len(rows)), replace=False))
mask = np.zeros(len(table), bool)
mask[rows] = True
ds = StampDataset((images, table), mask, m.representation)
x = images[rows].astype(float)
sig = np.asarray(table["noise_sigma"], float)[rows]
mu, _ = m.encode_normalized(ds.images)
aux = {
    "log10_pixel_scale": np.log10(np.asarray(table["pixel_scale"], float)[rows]),
    "log10_flux": np.log10(ds.flux),
}
t0 = time.time()
z_ref = m.refine_latents(mu, x, sig, steps=a.steps)
dt = time.time() - t0
out = Path(a.out)
summary = {"n": len(rows), "steps": a.steps, "refine_seconds": dt, "per_second": len(rows) / dt}
for name, z in (("encoder", mu), ("refined", z_ref)):
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(m.file_name, d / "model.safetensors")
    shutil.copy(attributes_path(m.file_name), attributes_path(d / "model.safetensors"))
    meta = {k: shipped.meta[k] for k in ("magnitude_prior", "redshift_prior") if k in shipped.meta}
    meta.update(
        dataset=Path(a.dataset).name,
        split=f"{len(rows)} random rows of the shipped density's ({name} latents"
        + (f", refined in {a.steps} steps)" if name == "refined" else ")"),
        model_sha256=m.metadata["sha256"],
    )
    LatentDensity.fit(z, aux=aux, n_components=16, seed=0, meta=meta).save(
        density_path(d / "model.safetensors")
    )
    summary[f"{name}_latent_norm_median"] = float(np.median(np.linalg.norm(z, axis=1)))
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps(summary, indent=1))
