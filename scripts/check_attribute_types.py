"""Independent check of the attribute model's type ordering (docs/attributes.md, "Type").

Draws ``--n-per`` galaxies per Hubble type at one half-light radius, all types with the same axis
ratios (those of training galaxies of about that size, whatever their type), measures their
Sersic index on the decoded stamps and writes the medians with bootstrap errors as JSON.

    python scripts/check_attribute_types.py --n-per 384 --seed 11 \
        --out docs/runs/attributes_type_check.json
"""

import argparse
import json

import galsim
import numpy as np

from galsim_vae import VAEGalaxy
from galsim_vae.attributes import HUBBLE_TYPES, AttributeModel
from galsim_vae.model import get_model
from galsim_vae.studies.attribute_fit import measure_sersic


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--attributes", help="attribute file [the shipped model's]")
    p.add_argument("--hlr", type=float, default=0.153, help="half-light radius, arcsec")
    p.add_argument("--n-per", type=int, default=384)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--nproc", type=int, default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args()

    m = get_model(None)
    am = AttributeModel.load(a.attributes) if a.attributes else m.attributes
    log_h, q = am.a["attrs"][:, 1], am.a["attrs"][:, 2]
    pool = q[np.abs(log_h - np.log10(a.hlr)) < 0.2 / np.log(10)]
    rng = galsim.BaseDeviate(a.seed)
    ud = galsim.UniformDeviate(rng)
    boot = np.random.default_rng(a.seed)
    out = {"hlr": a.hlr, "n_per": a.n_per, "seed": a.seed, "types": [], "sersic_n": [], "error": []}
    for name, tv in HUBBLE_TYPES.items():
        qq = pool[(np.array([ud() for _ in range(a.n_per)]) * len(pool)).astype(int)]
        n = len(qq)
        pop = am.sample_population(np.full(n, tv), np.full(n, a.hlr), qq, rng)
        z = pop["latent"]
        if am.scale_model:  # a flux model: each galaxy at its own scale, with its flux
            gals = VAEGalaxy.from_latents(z, m, pixel_scale=pop["pixel_scale"], flux=pop["flux"])
            scale = pop["pixel_scale"]
        else:
            lo, hi = m.sky_free_constants(z)  # the sky predictor of the model's attribute file
            gals = VAEGalaxy.from_latents(z, m, norm_min=lo, norm_max=hi)
            scale = m.pixel_scale
        stamps = np.array([g.stamp.array for g in gals])
        sn = measure_sersic(stamps, scale=scale, nproc=a.nproc)["sersic_n"]
        err = np.std([np.median(boot.choice(sn, len(sn))) for _ in range(200)])
        out["types"].append(name)
        out["sersic_n"].append(float(np.median(sn)))
        out["error"].append(float(err))
        print(f"{name:4s} n = {np.median(sn):.3f} +- {err:.3f}", flush=True)
    ns, es = np.array(out["sersic_n"]), np.array(out["error"])
    out["step_sigma"] = ((ns[:-1] - ns[1:]) / np.hypot(es[:-1], es[1:])).tolist()
    out["monotonic"] = bool(np.all(np.diff(ns) < 0))
    print("monotonic:", out["monotonic"], "steps (sigma):", np.round(out["step_sigma"], 1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
