"""Negative light: how much of a decoded galaxy sits below zero (a noiseless galaxy has none).

Two measures, for the README's and model card's numbers:

- ``--dataset SIM.fits --model A [--model B ...]``: the reconstructions of a simulated dataset's
  passing stamps, each model's share with negative pixels summing beyond 5%, 10% and 25% of the
  stamp's flux, beside the noiseless truths';
- ``--scene SCENE.fits [...]``: in a drawn scene (``galsim-vae draw``), the dark dips: regions
  more than 5 sigma below the sky after a 2-pixel Gaussian smoothing (sigma from the median
  absolute deviation of the smoothed image).

(The population report's ``negative_light`` measures the same on sampled galaxies.)

    python scripts/negative_light.py --dataset data/sim_deepfs_heldout.fits \\
        --model default --model data/run_v5_deep/best.safetensors \\
        --scene data/draw_default/scene.fits --scene data/draw_v5/scene.fits \\
        --out docs/runs/negative_light.json
"""

import argparse
import json

import numpy as np
from astropy.io import fits
from scipy import ndimage

from galsim_vae import get_model
from galsim_vae._utils import write_json
from galsim_vae.pipeline.dataset import read_dataset, read_truths
from galsim_vae.stamp import negative_light

LEVELS = (0.05, 0.1, 0.25)


def summary(neg):
    return {
        "n": int(len(neg)),
        **{f"frac_beyond_{round(100 * lv)}pct": float(np.mean(neg > lv)) for lv in LEVELS},
        "median": float(np.median(neg)),
        "p90": float(np.percentile(neg, 90)),
    }


def scene_dips(path, sigma_px=2.0, threshold=5.0):
    a = fits.getdata(path).astype(float)
    sm = ndimage.gaussian_filter(a, sigma_px)
    s = 1.4826 * np.median(np.abs(sm - np.median(sm)))
    _, n = ndimage.label(sm - np.median(sm) < -threshold * s)
    return {"n_dips": int(n), "deepest_sigma": float((sm.min() - np.median(sm)) / s)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=None, help="a simulated dataset with truths")
    ap.add_argument("--model", action="append", default=[], help="weights file or 'default'")
    ap.add_argument("--scene", action="append", default=[], help="a scene FITS file")
    ap.add_argument("--out", default=None, help="JSON file for the numbers")
    a = ap.parse_args()
    res = {}
    if a.dataset:
        images, table, _, _ = read_dataset(a.dataset)
        truths = read_truths(a.dataset)
        if truths is None:
            ap.error(f"{a.dataset} has no TRUTH HDU")
        ok = np.asarray(table["passes"], dtype=bool)
        res["dataset"] = a.dataset
        res["truth"] = summary(negative_light(truths[ok]))
        for name in a.model:
            m = get_model(None if name == "default" else name)
            res[name] = summary(negative_light(m.reconstruct(images[ok])))
    for path in a.scene:
        res[path] = scene_dips(path)
    print(json.dumps(res, indent=1))
    if a.out:
        write_json(a.out, res)


if __name__ == "__main__":
    main()
