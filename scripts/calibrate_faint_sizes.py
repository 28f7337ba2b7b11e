"""How much smaller than the simulator's are real galaxies fainter than the shape catalogs?

The simulator's faint galaxies are COSMOS F814W<23.5 galaxies dimmed by up to 2.5 mag, their sizes
following r ~ L^0.25 under the dimming (the 500-galaxy fit catalog's own size-magnitude slope,
-0.09 dex/mag, agrees with that below 23.5). Beyond 23.5 there is no catalog; the 100 real
btk100 galaxies reach F814W 26. This compares the Gaussian widths (the dataset's Width metric, in
arcsec, PSF included) of real and simulated stamps drawn the same way (fixed 0.03"/px) in
magnitude bins past the pivot, removes the HST PSF's width in quadrature, and fits the extra
shrink per magnitude past the pivot, ``size * 10**(-delta * (mag - pivot))``, on one random half
of the real galaxies; the other half checks it.

    python scripts/calibrate_faint_sizes.py data/real_btk100.fits data/cmp_deep_fixed8k.fits

Prints a JSON record (and writes it with ``--out``).
"""

import argparse
import json

import numpy as np
from scipy.optimize import minimize_scalar

from galsim_vae._utils import write_json
from galsim_vae.pipeline.dataset import read_dataset
from galsim_vae.pipeline.metrics import gaussian_width
from galsim_vae.studies.population import magnitudes

PIVOT = 23.5
BINS = [(23.5, 24.5), (24.5, 25.5), (25.5, 26.5)]


def intrinsic(w, w_psf):
    return np.sqrt(np.clip(w**2 - w_psf**2, 1e-6, None))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("real")
    ap.add_argument("simulated", help='a simulated dataset in fixed 0.03"/px mode')
    ap.add_argument("--seed", type=int, default=0, help="of the split of the real galaxies")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    _, rt, rpsf, _ = read_dataset(a.real)
    _, st, _, sh = read_dataset(a.simulated)
    if float(sh.get("FSLOPE", 0.0)) != 0.0:
        ap.error(
            f"{a.simulated} was simulated with --faint-size-slope {sh['FSLOPE']}: give one without"
        )
    if str(sh.get("SCALEMOD", "fixed")) != "fixed":
        ap.error(f'{a.simulated} has per-galaxy pixel scales: give a fixed 0.03"/px set')
    scale = float(np.median(rt["pixel_scale"]))
    w_psf = float(np.median([gaussian_width(p)[0] for p in rpsf])) * scale
    rm, rw = magnitudes(rt["flux_total"]), np.asarray(rt["width_arcsec"], dtype=float)
    sm, sw = magnitudes(st["flux_total"]), np.asarray(st["width_arcsec"], dtype=float)
    sp = np.isclose(np.asarray(st["pixel_scale"], dtype=float), scale)
    half = np.random.default_rng(a.seed).permutation(len(rt))
    halves = {"fit": np.sort(half[: len(rt) // 2]), "check": np.sort(half[len(rt) // 2 :])}

    def table(rows):
        out = []
        for lo, hi in BINS:
            r = rows[(rm[rows] >= lo) & (rm[rows] < hi) & np.isfinite(rw[rows])]
            s = (sm >= lo) & (sm < hi) & np.isfinite(sw) & sp
            if len(r) < 3 or s.sum() < 20:
                continue
            out.append(
                {
                    "bin": [lo, hi],
                    "n_real": int(len(r)),
                    "n_sim": int(s.sum()),
                    "real_width": float(np.median(rw[r])),
                    "sim_width": float(np.median(sw[s])),
                    "intrinsic_ratio": float(
                        np.median(intrinsic(rw[r], w_psf)) / np.median(intrinsic(sw[s], w_psf))
                    ),
                    "mag_past_pivot": float(np.median(rm[r]) - PIVOT),
                }
            )
        return out

    res = {"pivot_mag": PIVOT, "psf_width_arcsec": w_psf, "seed": a.seed}
    for name, rows in halves.items():
        res[name] = table(rows)
    res["all"] = table(np.arange(len(rt)))

    def fit_delta(bins):
        # Weighted least squares of log10(ratio) = -delta * (mag - pivot), by real galaxies per bin.
        w = np.array([b["n_real"] for b in bins], dtype=float)
        x = np.array([b["mag_past_pivot"] for b in bins])
        y = np.log10([b["intrinsic_ratio"] for b in bins])
        return float(-(w * x * y).sum() / (w * x * x).sum())

    fit = res["fit"]
    delta = fit_delta(fit)
    res["delta_dex_per_mag"] = delta
    res["delta_dex_per_mag_all"] = fit_delta(res["all"])

    def misfit(rows_table, d):
        xs = np.array([b["mag_past_pivot"] for b in rows_table])
        ys = np.log10([b["intrinsic_ratio"] for b in rows_table])
        ws = np.array([b["n_real"] for b in rows_table], dtype=float)
        return float(np.sqrt((ws * (ys + d * xs) ** 2).sum() / ws.sum()))

    res["rms_log_ratio"] = {
        "fit_half_before": misfit(fit, 0.0),
        "fit_half_after": misfit(fit, delta),
        "check_half_before": misfit(res["check"], 0.0),
        "check_half_after": misfit(res["check"], delta),
    }
    res["check_half_best_delta"] = float(
        minimize_scalar(lambda d: misfit(res["check"], d), bounds=(-0.5, 0.5), method="bounded").x
    )
    print(json.dumps(res, indent=1))
    if a.out:
        write_json(a.out, res)


if __name__ == "__main__":
    main()
