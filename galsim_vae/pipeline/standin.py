"""A format-exact stand-in for GalSim's COSMOS training sample, drawn by the simulator.

The real COSMOS F814W<25.2 training sample (``galsim_download_cosmos -s 25.2``: about 87,000
galaxies, 4 GB) cannot be downloaded here. To prove that the path from that download to a trained
model works at its scale, :func:`build_standin` writes a folder with the download's layout, drawn
by :class:`~galsim_vae.pipeline.simulator.COSMOSLikeSimulator`:

- ``real_galaxy_catalog_25.2.fits``: the ``RealGalaxyCatalog`` table (``IDENT``, ``RA``, ``DEC``,
  ``MAG``, ``BAND``, ``WEIGHT``, ``GAL_FILENAME``, ``PSF_FILENAME``, ``GAL_HDU``, ``PSF_HDU``,
  ``PIXEL_SCALE``, ``NOISE_MEAN``, ``NOISE_VARIANCE``, ``NOISE_FILENAME``, ``stamp_flux``), the
  column layout of GalSim's own example catalog;
- ``real_galaxy_catalog_25.2_fits.fits``: the parametric fits ``COSMOSCatalog`` reads
  (``mag_auto``, ``flux_radius``, ``zphot``, ``sersicfit``, ``bulgefit``, ``fit_status``,
  ``fit_mad_s``, ``fit_mad_b``, ``fit_dvc_btt``, ``use_bulgefit``, ``viable_sersic``, ``hlr``,
  ``flux``), filled with each galaxy's true bulge + disk parameters;
- ``real_galaxy_catalog_25.2_selection.fits``: the selection columns (``dmag``,
  ``sn_ellip_gauss``, ``min_mask_dist_pixels``, ``average_mask_adjacent_pixel_count``,
  ``peak_image_pixel_count``);
- ``real_galaxy_images_25.2_n{k}.fits`` and ``real_galaxy_PSF_images_25.2_n{k}.fits``, 1,000
  postage stamps (one HDU each) per file, numbered from 1 as in the download;
- ``acs_I_unrot_sci_20_cf.fits``, the COSMOS noise correlation function (from the real data).

Each postage stamp is a simulated galaxy at 0.03"/px, convolved with a real HST PSF, with COSMOS
correlated noise at a real catalog's noise variance, on a square stamp that reaches
``fit_radius`` PSF-convolved half-light radii (32-384 pixels). The galaxies are the simulator's,
not real ones: the stand-in proves format, scale, memory and time, never realism.

Building is resumable: each pair of image files is written atomically with its rows saved
beside (``.standin_parts/``); a rerun draws only the missing files, and the three catalogs are
written when every file is there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import galsim
import numpy as np
from astropy.io import fits
from astropy.table import Table

from .._utils import atomic_path, check_count, record_run
from ..psf import F814W_ZEROPOINT
from ._parallel import item_seed, parallel_map
from .simulator import COSMOSLikeSimulator, find_shared_data

__all__ = ["build_standin", "STANDIN_N", "F814W_ZEROPOINT"]

#: Galaxies in GalSim's COSMOS 25.2 training sample ("about 87,000", GalSim's RealGalaxy Data
#: wiki page); the stand-in's default size.
STANDIN_N = 87000
NOISE_FILE = "acs_I_unrot_sci_20_cf.fits"
#: Side of the PSF images (pixels at 0.03").
PSF_SIZE = 49
#: COSMOS field, for the RA/DEC columns.
_RA, _DEC = (149.4, 150.8), (1.5, 2.9)


class _FileWorker:
    def __init__(self, out_dir, n, sample, per_file, seed, data_dir, morphology):
        self.out = Path(out_dir)
        self.n, self.sample, self.per_file, self.seed = n, sample, per_file, seed
        self.sim = COSMOSLikeSimulator(
            data_dir, stamp_size=64, scale_mode="fit", morphology=morphology
        )
        self.zphot = _real_zphot(self.sim.data_dir)

    def __call__(self, k):
        """Write image file ``k`` (1-based) and its PSF file; return the path of its rows."""
        rows_file = self.out / ".standin_parts" / f"{k:04d}.npz"
        if rows_file.is_file():
            return str(rows_file)
        first = (k - 1) * self.per_file
        idx = range(first, min(first + self.per_file, self.n))
        gals, psfs, rows = [], [], []
        for hdu, i in enumerate(idx):
            image, psf, row = self._galaxy(i)
            gals.append(image)
            psfs.append(psf)
            rows.append(dict(row, GAL_HDU=hdu, PSF_HDU=hdu))
        names = (
            f"real_galaxy_images_{self.sample}_n{k}.fits",
            f"real_galaxy_PSF_images_{self.sample}_n{k}.fits",
        )
        for name, arrays in zip(names, (gals, psfs), strict=True):
            hdus = [fits.PrimaryHDU(arrays[0])] + [fits.ImageHDU(a) for a in arrays[1:]]
            with atomic_path(self.out / name) as tmp:
                fits.HDUList(hdus).writeto(tmp)
        for r in rows:
            r["GAL_FILENAME"], r["PSF_FILENAME"] = names
        cols = {c: np.asarray([r[c] for r in rows]) for c in rows[0]}
        with atomic_path(rows_file) as tmp, open(tmp, "wb") as f:
            np.savez(f, **cols)
        return str(rows_file)

    def _galaxy(self, i):
        sim, native = self.sim, self.sim.pixel_scale
        rng = galsim.BaseDeviate(item_seed(self.seed, i))
        ud = galsim.UniformDeviate(rng)
        p = sim.draw_params(ud)
        psf = sim._psf_objs[p["psf_index"]]
        size = int(np.clip(2 * np.ceil(sim.reach(p) / native) + 8, 32, 384))
        clean, _ = sim._draw_clean(p, psf, rng, size, native)
        noisy = clean.copy()
        noisy.addNoise(sim._noise.withVariance(p["noise_variance"]).copy(rng=rng))
        psf_img = psf.drawImage(
            nx=PSF_SIZE, ny=PSF_SIZE, scale=native, method="no_pixel", use_true_center=False
        ).array
        psf_img = (psf_img / psf_img.sum()).astype(np.float32)
        flux = p["flux_true"]
        bt = p["bulge_fraction"]
        mag = F814W_ZEROPOINT - 2.5 * np.log10(flux)
        hlr = _combined_hlr(p)
        q = (1 - bt) * p["disk_q"] + bt * p["bulge_q"]
        beta = np.radians(p["disk_beta"] if bt < 0.5 else p["bulge_beta"])
        n_eff = 1 + 3 * bt  # a single-Sersic summary of the bulge + disk
        c = (size - 1) / 2.0
        row = {
            "IDENT": 100000 + i,
            "RA": _RA[0] + (_RA[1] - _RA[0]) * ud(),
            "DEC": _DEC[0] + (_DEC[1] - _DEC[0]) * ud(),
            "MAG": mag,
            "BAND": "F814W",
            "WEIGHT": 1.0,
            "PIXEL_SCALE": native,
            "NOISE_MEAN": 0.0,
            "NOISE_VARIANCE": p["noise_variance"],
            "NOISE_FILENAME": NOISE_FILE,
            "stamp_flux": float(noisy.array.sum()),
            # _fits.fits
            "mag_auto": mag,
            "flux_radius": hlr / native,
            "zphot": float(self.zphot[int(ud() * len(self.zphot))]),
            "sersicfit": _fit_row(n_eff, flux, hlr, q, beta, c),
            "bulgefit": np.concatenate(
                [
                    _fit_row(
                        1.0,
                        flux * (1 - bt),
                        p["disk_hlr"],
                        p["disk_q"],
                        np.radians(p["disk_beta"]),
                        c,
                    ),
                    _fit_row(
                        4.0,
                        flux * bt,
                        p["bulge_hlr"],
                        p["bulge_q"],
                        np.radians(p["bulge_beta"]),
                        c,
                    ),
                ]
            ),
            "fit_status": np.ones(5, dtype=np.int32),
            "fit_mad_s": 0.01,
            "fit_mad_b": 0.01,
            "fit_dvc_btt": bt,
            "use_bulgefit": 1,
            "viable_sersic": 1,
            "hlr": np.array([hlr, p["bulge_hlr"], p["disk_hlr"]]),
            "flux": np.array([flux, flux * bt, flux * (1 - bt), flux]),
            # _selection.fits
            "dmag": 0.0,
            "sn_ellip_gauss": float(np.sqrt(np.sum(clean.array**2) / p["noise_variance"])),
            "min_mask_dist_pixels": float(size),
            "average_mask_adjacent_pixel_count": 0.0,
            "peak_image_pixel_count": float(clean.array.max()),
        }
        return noisy.array.astype(np.float32), psf_img, row


def _combined_hlr(p):
    from .simulator import bulge_disk_hlr

    return float(bulge_disk_hlr(p["bulge_fraction"], p["bulge_hlr"], p["disk_hlr"]))


def _fit_row(n, flux, hlr, q, beta, centre):
    """A COSMOS ``sersicfit``-layout row: intensity at the half-light radius (per 0.03" pixel),
    half-light radius along the major axis (pixels), n, q, boxiness, x0, y0, phi (radians)."""
    hlr = max(hlr, 1e-3)
    major = hlr / np.sqrt(q)
    ie = galsim.Sersic(n, half_light_radius=hlr, flux=max(flux, 1e-12)).xValue(hlr, 0) * 0.03**2
    return np.array([ie, major / 0.03, n, q, 0.0, centre, centre, beta])


def _real_zphot(data_dir):
    f = Path(data_dir) / "cosmos_btk100" / "real_galaxy_catalog_26_extension_example_fits.fits"
    if f.is_file():
        z = np.asarray(fits.getdata(f, 1)["ZPHOT"], dtype=float)
        z = z[np.isfinite(z) & (z > 0)]
        if len(z):
            return z
    return np.array([0.8])


_CATALOG_COLS = (
    "IDENT",
    "RA",
    "DEC",
    "MAG",
    "BAND",
    "WEIGHT",
    "GAL_FILENAME",
    "PSF_FILENAME",
    "GAL_HDU",
    "PSF_HDU",
    "PIXEL_SCALE",
    "NOISE_MEAN",
    "NOISE_VARIANCE",
    "NOISE_FILENAME",
    "stamp_flux",
)
_FITS_COLS = (
    "IDENT",
    "mag_auto",
    "flux_radius",
    "zphot",
    "sersicfit",
    "bulgefit",
    "fit_status",
    "fit_mad_s",
    "fit_mad_b",
    "fit_dvc_btt",
    "use_bulgefit",
    "viable_sersic",
    "hlr",
    "flux",
)
_SELECTION_COLS = (
    "IDENT",
    "dmag",
    "sn_ellip_gauss",
    "min_mask_dist_pixels",
    "average_mask_adjacent_pixel_count",
    "peak_image_pixel_count",
)


def build_standin(
    out_dir,
    n=STANDIN_N,
    *,
    sample="25.2",
    per_file=1000,
    seed=2029,
    data_dir=None,
    morphology="structured",
    nproc=None,
    progress=True,
):
    """Write a COSMOS training-sample stand-in of ``n`` simulated galaxies into ``out_dir``.

    Parameters:
        out_dir: folder to write (created; GalSim's download layout inside).
        n: number of galaxies. [default: 87,000, the 25.2 sample's size]
        sample: the sample name in the file names. [default: "25.2"]
        per_file: postage stamps per image file. [default: 1000, as in the download]
        seed: seed of the galaxies. [default: 2029]
        data_dir: the real data (PSFs, noise, fit catalogs); found when None. [default: None]
        morphology: the simulator's ``morphology``. [default: "structured"]
        nproc: processes; all cores when None. [default: None]
        progress: show a progress bar (files). [default: True]

    Returns:
        pathlib.Path: the catalog file (``real_galaxy_catalog_<sample>.fits``).
    """
    n = check_count(n)
    per_file = check_count(per_file, "per_file")
    data_dir = find_shared_data(data_dir)
    out = Path(out_dir)
    parts = out / ".standin_parts"
    parts.mkdir(parents=True, exist_ok=True)
    run = {
        "n": n,
        "sample": sample,
        "per_file": per_file,
        "seed": int(seed),
        "morphology": morphology,
    }
    record_run(
        parts,
        run,
        "a stand-in being built with other settings",
        "rerun with those settings to finish it, or use another folder",
    )
    files = range(1, -(-n // per_file) + 1)
    row_files = parallel_map(
        _FileWorker,
        (str(out), n, sample, per_file, seed, str(data_dir), morphology),
        files,
        nproc=nproc,
        chunk=1,
        desc="stand-in image files",
        progress=progress,
    )
    cols: dict = {}
    for f in row_files:
        with np.load(f, allow_pickle=False) as d:
            for c in d.files:
                cols.setdefault(c, []).append(d[c])
    table = Table({c: np.concatenate(v) for c, v in cols.items()})
    stem = f"real_galaxy_catalog_{sample}"
    shutil.copyfile(data_dir / "cosmos_btk100" / NOISE_FILE, out / NOISE_FILE)
    for name, columns in (
        (f"{stem}_fits.fits", _FITS_COLS),
        (f"{stem}_selection.fits", _SELECTION_COLS),
        (f"{stem}.fits", _CATALOG_COLS),  # last: its presence means the stand-in is complete
    ):
        with atomic_path(out / name) as tmp:
            table[list(columns)].write(tmp, format="fits")
    shutil.rmtree(parts)
    return out / f"{stem}.fits"
