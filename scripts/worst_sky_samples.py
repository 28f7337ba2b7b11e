"""The sampled galaxies with the largest decoded border "sky", side by side for several models.

    python scripts/worst_sky_samples.py OUT.png [--label NAME=MODEL ...] [--n 10000] [--seed 1]

Each model (a weights file, or ``default``) samples ``n`` galaxies as ``galsim-vae population``
does (same seed, COSMOS magnitudes); the 24 whose border sky (the median of the 4-pixel border
times the stamp area, over the flux) is largest in absolute value are drawn noiseless on their
own stamps with an asinh stretch at 2% of the peak, which shows a floor far below the noise of a
COSMOS stamp. Prints each model's fractions beyond 10% and 25%.
"""

import argparse

import galsim
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from galsim_vae import get_model  # noqa: E402
from galsim_vae.psf import F814W_ZEROPOINT  # noqa: E402
from galsim_vae.stamp import border_sky  # noqa: E402

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("out")
p.add_argument("--label", action="append", default=[], help="NAME=MODEL (repeatable)")
p.add_argument("--n", type=int, default=10000)
p.add_argument("--seed", type=int, default=1)
a = p.parse_args()
models = [lab.split("=", 1) for lab in a.label] or [["shipped", "default"]]
fig, axes = plt.subplots(2 * len(models), 12, figsize=(18, 3.3 * len(models)), squeeze=False)
for r, (name, f) in enumerate(models):
    m = get_model(None if f == "default" else f)
    pop = m.sample_population(a.n, galsim.BaseDeviate(a.seed))
    d = m.decode(pop["latent"])
    sky = np.array([border_sky(x) / x.sum() for x in d])
    mag = F814W_ZEROPOINT - 2.5 * np.log10(pop["flux"])
    print(
        f"{name}: beyond 10% {np.mean(np.abs(sky) > 0.1):.4f}, beyond 25% "
        f"{np.mean(np.abs(sky) > 0.25):.4f}, median {np.median(sky):.4f}"
    )
    for i, k in enumerate(np.argsort(-np.abs(sky))[:24]):
        ax = axes[2 * r + i // 12, i % 12]
        ax.imshow(np.arcsinh(d[k] / (0.02 * d[k].max())), origin="lower", cmap="magma")
        ax.set_title(f'{mag[k]:.1f} {pop["pixel_scale"][k]:.2f}" {100 * sky[k]:+.0f}%', fontsize=7)
        ax.axis("off")
    axes[2 * r, 0].text(-0.15, 0, name, transform=axes[2 * r, 0].transAxes, rotation=90)
fig.suptitle(
    f"24 samples with the largest border sky of {a.n:,} (seed {a.seed}), noiseless, asinh "
    "stretch at 2% of the peak; titles: F814W, pixel scale, sky/flux"
)
fig.tight_layout()
fig.savefig(a.out, dpi=80)
print(f"wrote {a.out}")
