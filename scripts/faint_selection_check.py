"""Do the shipped model's samples fail the real galaxies' cuts more often than its training
simulations of the same magnitudes? (validate's selection, taken apart by magnitude)

Per F814W bin, N random rows of the training set (pass or fail) are drawn again exactly, as
validate draws its samples (64 px at 0.03"/px, COSMOS correlated noise at the row's catalog
noise), and N density samples of the model are drawn at the same rows' magnitudes and noise;
both go through the real dataset's cuts (``validation._passing``), with and without the
flux-in-stamp cut. The real galaxies' own pass rates per bin come from the real dataset's table.

    python scripts/faint_selection_check.py data/real_btk100.fits data/sim_deepfs32k.fits \\
        --n 400 --out docs/runs/faint_selection_check.json

The training set must be a simulated set whose header records its simulator settings (seed,
scale mode, morphology, faint-size slope); one thread, about 5 minutes at N = 400.
"""

import argparse
import dataclasses
import json
import warnings

import galsim
import numpy as np
import torch
from astropy.io import fits

from galsim_vae._utils import write_json
from galsim_vae.galaxy import VAEGalaxy, guard_refuses
from galsim_vae.model import get_model
from galsim_vae.pipeline._parallel import item_seed
from galsim_vae.pipeline.dataset import cuts_from_header, read_dataset
from galsim_vae.pipeline.simulator import COSMOSLikeSimulator, find_shared_data
from galsim_vae.studies.population import magnitudes
from galsim_vae.studies.validation import _add_noise, _cosmos_noise, _passing

BINS = [(0, 23), (23, 24), (24, 25), (25, 26)]
STAMP = 64


def fails(measured, cuts):
    w = np.asarray(measured["width_pix"])
    return {
        "snr": float(np.mean(np.asarray(measured["snr"]) < cuts.min_snr)),
        "width": float(np.mean((w < cuts.min_width) | (w > cuts.max_width))),
        "flux_in_stamp": float(
            np.mean(np.asarray(measured["flux_fraction"]) < cuts.min_flux_fraction)
        ),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("real")
    ap.add_argument("simulated")
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    _, rt, _, rh = read_dataset(a.real)
    cuts = cuts_from_header(rh, a.real)
    no_flux_cut = dataclasses.replace(cuts, min_flux_fraction=0.0)
    sh = fits.getheader(a.simulated, 0)
    cat = fits.getdata(a.simulated, "CATALOG")
    sim = COSMOSLikeSimulator(
        find_shared_data(),
        scale_mode=str(sh["SCALEMOD"]),
        morphology=str(sh["MORPHOL"]),
        faint_size_slope=float(sh.get("FSLOPE", 0.0)),
    )
    seed = int(sh["SEED"])
    m = get_model(a.model)
    rmag = magnitudes(np.asarray(rt["flux_total"], dtype=float))
    rpass = np.asarray(rt["passes"], dtype=bool)
    smag = magnitudes(np.asarray(cat["flux_total"], dtype=float))
    pick = np.random.default_rng(a.seed)
    noise_sim, noise_vae = _cosmos_noise(11, required=True), _cosmos_noise(12, required=True)
    kw = dict(nx=STAMP, ny=STAMP, scale=0.03, method="no_pixel", use_true_center=False)
    out = {"n_per_bin": a.n, "cuts": dataclasses.asdict(cuts), "bins": {}}
    for lo, hi in BINS:
        rows = pick.choice(np.flatnonzero((smag >= lo) & (smag < hi)), a.n, replace=False)
        flux = np.asarray(cat["flux_total"][rows], dtype=float)
        sig = np.sqrt(np.asarray(cat["catalog_noise_variance"][rows], dtype=float))
        clean, own = [], []
        for i in rows:  # the row's galaxy again, drawn as validate draws samples
            rng = galsim.BaseDeviate(item_seed(seed, int(i)))
            p = sim.draw_params(galsim.UniformDeviate(rng))
            c, o = sim._draw_clean(p, sim._psf_objs[p["psf_index"]], rng, STAMP, 0.03)
            clean.append(c.array)
            own.append(o.array)
        noisy = _add_noise(np.array(clean), sig, 0.03, noise_sim)
        s_all, s_meas = _passing(noisy, np.array(own), flux, cuts)
        s_nf, _ = _passing(noisy, np.array(own), flux, no_flux_cut)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pop = m.sample_population(
                a.n, galsim.BaseDeviate(100 + lo), sampling="density", magnitude=magnitudes(flux)
            )
            gals = VAEGalaxy.from_latents(
                pop["latent"], m, flux=flux, pixel_scale=pop["pixel_scale"]
            )
        ok = np.array([g._drawable for g in gals])
        guard = np.array([k and not any(guard_refuses(g)) for g, k in zip(gals, ok)])
        v_clean = np.array([g.drawImage(**kw).array for g, k in zip(gals, ok) if k])
        v_noisy = _add_noise(v_clean.reshape(-1, STAMP, STAMP), sig[ok], 0.03, noise_vae)
        v_all, v_meas = _passing(v_noisy, v_clean, flux[ok], cuts)
        v_nf, _ = _passing(v_noisy, v_clean, flux[ok], no_flux_cut)
        g_ok = guard[ok]
        real = (rmag >= lo) & (rmag < hi)
        out["bins"][f"{lo}-{hi}"] = {
            "real": {
                "n": int(real.sum()),
                "pass": float(rpass[real].mean()) if real.any() else None,
                "postage_stamps_within_stamp": float(
                    np.mean(np.asarray(rt["original_size"])[real] <= STAMP)
                )
                if real.any() and "original_size" in rt.colnames
                else None,
            },
            "simulations": {
                "pass": float(s_all.mean()),
                "pass_without_flux_cut": float(s_nf.mean()),
                "fail": fails(s_meas, cuts),
            },
            "samples": {
                "pass": float((v_all & g_ok).sum() / a.n),
                "pass_without_flux_cut": float((v_nf & g_ok).sum() / a.n),
                "fail": fails(v_meas, cuts),
                "undrawable": int((~ok).sum()),
                "redrawn_by_guard": int((~g_ok).sum()),
            },
        }
        b = out["bins"][f"{lo}-{hi}"]
        print(
            f"F814W {lo}-{hi}: pass real {b['real']['pass']}, simulations "
            f"{b['simulations']['pass']:.2f} ({b['simulations']['pass_without_flux_cut']:.2f} "
            f"without the flux cut), samples {b['samples']['pass']:.2f} "
            f"({b['samples']['pass_without_flux_cut']:.2f})",
            flush=True,
        )
    if a.out:
        write_json(a.out, out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
