"""Fixed-size galaxy stamps from GalSim COSMOS catalogs (``RealGalaxyCatalog`` format).

The same code reads the 100-galaxy ``cosmos_btk100`` sample shipped beside the project and the
full COSMOS 23.5 / 25.2 samples that ``galsim_download_cosmos`` installs. A catalog is located by
an explicit path (the catalog file, or a folder holding one) or by the ``GALSIM_VAE_COSMOS``
environment variable.

Two ways to fit a galaxy into an ``N x N`` stamp:

``scale_mode="fixed"`` (the default)
    Every stamp has the same pixel scale (0.03"/px, the HST scale of the COSMOS images), and the
    galaxy centre sits on pixel ``(N/2, N/2)`` (0-based; GalSim's ``use_true_center=False``
    convention). The fraction of the galaxy's flux inside the stamp is measured and kept as a
    column, and galaxies that spill out are removed by the ``min_flux_fraction`` cut. All stamps
    then share one arcsec-per-pixel, one PSF size and one noise level per pixel, which is what a
    model that must be drawn at a known physical size needs.

``scale_mode="fit"`` (the paper's Eq. 1)
    Each stamp gets its own scale, ``0.03 * original_size / (N - 2)``, so the whole original
    postage stamp fits inside. Kept to reproduce the paper; not the default because the pixel
    scale, PSF size in pixels and noise per pixel then change from stamp to stamp, and a decoded
    image has no physical size unless its scale travels with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import galsim
import numpy as np
from astropy.io import fits

from ..errors import GalSimRangeError, GalSimValueError
from ..psf import HST_PIXEL_SCALE, psf_from_image
from ..stamp import DEFAULT_SEED, copy_shift, postage_stamp_profile  # noqa: F401
from ._parallel import item_seed, parallel_map
from .metrics import stamp_metrics

__all__ = [
    "COSMOS_ENV",
    "HST_PIXEL_SCALE",
    "SCALE_MODES",
    "find_catalog",
    "open_catalog",
    "check_stamp_geometry",
    "fit_scale",
    "real_stamp",
    "real_stamps",
    "psf_stamp",
]

#: Environment variable naming a COSMOS catalog file or the folder that holds one.
COSMOS_ENV = "GALSIM_VAE_COSMOS"
SCALE_MODES = ("fixed", "fit")

_REQUIRED_COLUMNS = (
    "IDENT",
    "GAL_FILENAME",
    "PSF_FILENAME",
    "GAL_HDU",
    "PSF_HDU",
    "PIXEL_SCALE",
    "NOISE_VARIANCE",
)


#: The samples ``galsim_download_cosmos`` fetches, in the order they are looked for.
GALSIM_SAMPLES = ("25.2", "23.5")


def galsim_download(sample="25.2") -> Path:
    """Where ``galsim_download_cosmos -s SAMPLE`` puts the sample's catalog (GalSim's share
    directory, as ``galsim.COSMOSCatalog(sample=SAMPLE)`` looks for it)."""
    return (
        Path(galsim.meta_data.share_dir)
        / f"COSMOS_{sample}_training_sample"
        / f"real_galaxy_catalog_{sample}.fits"
    )


def find_catalog(path=None):
    """Path of a ``RealGalaxyCatalog`` file.

    Parameters:
        path: the catalog file, or a folder holding exactly one ``real_galaxy_catalog_*.fits``
            (not ``*_fits.fits`` or ``*_selection.fits``). When None, the ``GALSIM_VAE_COSMOS``
            environment variable is used, and without it GalSim's own download
            (``galsim_download_cosmos``: the 25.2 sample, else the 23.5 one, in GalSim's share
            directory, where ``COSMOSCatalog()`` finds them). [default: None]

    Returns:
        pathlib.Path: the catalog file.
    """
    if path is None:
        path = os.environ.get(COSMOS_ENV)
    if not path:
        tried = [galsim_download(sample) for sample in GALSIM_SAMPLES]
        found = [p for p in tried if p.is_file()]
        if not found:
            raise GalSimValueError(
                f"No COSMOS catalog given: pass its path, set ${COSMOS_ENV}, or download "
                "GalSim's training sample with `galsim_download_cosmos -s 25.2` (looked for "
                + " and ".join(str(p) for p in tried)
                + ")",
                None,
            )
        path = found[0]
    p = Path(path).expanduser()
    if p.is_dir():
        found = sorted(
            f
            for f in p.glob("real_galaxy_catalog_*.fits")
            if not f.name.endswith(("_fits.fits", "_selection.fits"))
        )
        if len(found) != 1:
            raise GalSimValueError(
                f"Expected one real_galaxy_catalog_*.fits in {p}, found {len(found)}", str(p)
            )
        p = found[0]
    if not p.is_file():
        raise GalSimValueError("COSMOS catalog file not found", str(p))
    return p


def open_catalog(path=None):
    """Open a COSMOS ``RealGalaxyCatalog``, checking its columns and image files first."""
    p = find_catalog(path)
    try:
        with fits.open(p) as hdul:
            cols = hdul[1].columns.names
            cat = hdul[1].data
            gal_files = sorted(set(cat["GAL_FILENAME"])) if "GAL_FILENAME" in cols else []
            psf_files = sorted(set(cat["PSF_FILENAME"])) if "PSF_FILENAME" in cols else []
    except (OSError, IndexError) as e:
        raise GalSimValueError(f"Not a readable RealGalaxyCatalog file ({e})", str(p)) from e
    missing = [c for c in _REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise GalSimValueError(f"Catalog {p} lacks required columns", missing)
    absent = [f for f in gal_files + psf_files if not (p.parent / f.strip()).is_file()]
    if absent:
        raise GalSimValueError(f"Image files of catalog {p} are missing", absent)
    return galsim.RealGalaxyCatalog(str(p))


def check_stamp_geometry(stamp_size, pixel_scale, scale_mode="fixed"):
    """Validate stamp size (pixels), pixel scale (arcsec) and scale mode."""
    if isinstance(stamp_size, bool) or not isinstance(stamp_size, (int, np.integer)):
        raise TypeError(f"stamp_size must be an int, got {stamp_size!r}")
    if not 16 <= stamp_size <= 512 or stamp_size % 8:
        raise GalSimRangeError(
            "stamp_size must be a multiple of 8 in [16, 512]", stamp_size, 16, 512
        )
    if not (np.isfinite(pixel_scale) and 0.001 <= pixel_scale <= 1.0):
        raise GalSimRangeError("pixel_scale must be in [0.001, 1] arcsec", pixel_scale, 0.001, 1.0)
    if scale_mode not in SCALE_MODES:
        raise GalSimValueError("Unknown scale_mode", scale_mode, SCALE_MODES)


def fit_scale(original_size, stamp_size, original_scale=HST_PIXEL_SCALE):
    """The paper's Eq. 1: ``original_scale * original_size / (stamp_size - 2)`` (arcsec/px)."""
    return original_scale * original_size / (stamp_size - 2)


def _flux_fraction(image, scale, stamp_size, shift=(0, 0)):
    """Fraction of an image's flux whose pixel centres fall inside the stamp drawn about its
    nominal centre moved by ``shift`` (:func:`~galsim_vae.stamp.centre_shift`), as
    :func:`real_stamp` draws it."""
    arr = image.array
    s0 = image.scale
    ny, nx = arr.shape
    # Pixel-centre coordinates relative to the stamp's centre, in arcsec: the nominal centre
    # (0-based nx // 2) plus the shift.
    x = (np.arange(nx) - (nx // 2 + shift[0])) * s0
    y = (np.arange(ny) - (ny // 2 + shift[1])) * s0
    half = stamp_size // 2
    inx = (x >= -(half + 0.5) * scale) & (x < (half - 0.5) * scale)
    iny = (y >= -(half + 0.5) * scale) & (y < (half - 0.5) * scale)
    total = arr.sum()
    if not total > 0:
        return float("nan")
    return float(arr[np.ix_(iny, inx)].sum() / total)


def _draw(profile, stamp_size, scale, native_scale):
    # An image that is already pixelised is only interpolated when the new pixels are not larger;
    # when they are larger it is integrated over the new pixel.
    method = "no_pixel" if scale <= native_scale * (1 + 1e-9) else "auto"
    return profile.drawImage(
        nx=stamp_size, ny=stamp_size, scale=scale, method=method, use_true_center=False
    )


def psf_stamp(psf_image, *, stamp_size=64, scale=HST_PIXEL_SCALE):
    """An effective-PSF image redrawn at ``scale``, centred like the galaxy stamps, unit flux."""
    psf = psf_from_image(psf_image)
    return _draw(psf, stamp_size, scale, psf_image.scale).array.astype(np.float32)


def _weight(rgc, index):
    """The catalog's galaxy weight (GalSim's ``WEIGHT / max(WEIGHT)``), NaN for catalogs
    without a ``WEIGHT`` column (GalSim refuses to read it then)."""
    try:
        return float(rgc.weight[index])
    except (OSError, KeyError, AttributeError, TypeError):
        return float("nan")


def real_stamp(
    rgc, index, *, stamp_size=64, pixel_scale=HST_PIXEL_SCALE, scale_mode="fixed", rng=None
):
    """One stamp of galaxy ``index`` of a ``RealGalaxyCatalog``, with its PSF and metrics.

    The original postage stamp (galaxy, PSF and noise as observed) is redrawn on the new grid,
    its pixels copied as they are at the native scale, the galaxy's centroid on the nearest
    pixel to the stamp's centre (:func:`galsim_vae.stamp.postage_stamp_profile`); where the stamp
    extends past the original, it is padded with the catalog's own correlated noise
    (``InterpolatedImage(noise_pad=...)``).

    Parameters:
        rgc: a ``galsim.RealGalaxyCatalog``.
        index: row in the catalog.
        stamp_size: side of the stamp in pixels. [default: 64]
        pixel_scale: arcsec per pixel in ``"fixed"`` mode. [default: 0.03]
        scale_mode: ``"fixed"`` or ``"fit"`` (see the module docstring). [default: "fixed"]
        rng: a ``galsim.BaseDeviate`` for the noise padding. [default: None, seeded by index]

    Returns:
        dict: ``image`` and ``psf`` (float32 arrays, flux units and unit flux) and the table row.
    """
    check_stamp_geometry(stamp_size, pixel_scale, scale_mode)
    if rng is None:
        rng = galsim.BaseDeviate(item_seed(0, index))
    img = rgc.getGalImage(index)
    native = img.scale
    scale = (
        fit_scale(max(img.array.shape), stamp_size, native) if scale_mode == "fit" else pixel_scale
    )
    noise = rgc.getNoise(index, rng=rng)
    # Centred on the galaxy's pixel where a fixed stamp copies the pixels; "fit" mode sizes the
    # stamp to hold the whole postage stamp about its nominal centre.
    shift = copy_shift(img, scale, stamp_size) if scale_mode == "fixed" else (0, 0)
    prof = postage_stamp_profile(
        img, noise=noise, pad=1.5 * stamp_size * max(scale, native), rng=rng, shift=shift
    )
    stamp = _draw(prof, stamp_size, scale, native).array.astype(np.float32)
    row = {
        "ident": int(rgc.ident[index]) if str(rgc.ident[index]).lstrip("-").isdigit() else index,
        "source": "cosmos_real",
        "catalog_row": int(index),
        "weight": _weight(rgc, index),
        "pixel_scale": float(scale),
        "flux_total": float(img.array.sum()),
        "flux_fraction": _flux_fraction(img, scale, stamp_size, shift),
        "original_size": int(max(img.array.shape)),
        "catalog_noise_variance": float(rgc.variance[index]),
    }
    row["flux"] = float(stamp.sum())
    row.update(stamp_metrics(stamp))
    row["width_arcsec"] = row["width_pix"] * scale
    psf = psf_stamp(rgc.getPSFImage(index), stamp_size=stamp_size, scale=scale)
    return {"image": stamp, "psf": psf, "row": row}


class _RealWorker:
    def __init__(self, path, stamp_size, pixel_scale, scale_mode, seed):
        self.rgc = galsim.RealGalaxyCatalog(str(path))
        self.kw = dict(stamp_size=stamp_size, pixel_scale=pixel_scale, scale_mode=scale_mode)
        self.seed = seed
        # GalSim keeps every image file it reads open and in memory (not memory-mapped): a
        # worker that lives for a whole run would end up holding the whole sample. Only the
        # files of the current row are kept (rows come in catalog order, file by file).
        self.files = list(zip(self.rgc.gal_file_name, self.rgc.psf_file_name))
        self.open = None

    def __call__(self, i):
        if self.files[i] != self.open:
            self.rgc.close()
            self.open = self.files[i]
        rng = galsim.BaseDeviate(item_seed(self.seed, i))
        try:
            return real_stamp(self.rgc, i, rng=rng, **self.kw)
        except (OSError, ValueError, RuntimeError) as e:  # a corrupt row is flagged, not fatal
            return {"error": f"{type(e).__name__}: {e}", "index": i}


def real_stamp_worker(path, stamp_size, pixel_scale, scale_mode, seed):
    """``(factory, args)`` of the per-process stamp maker of :func:`real_stamps`, for
    :func:`~galsim_vae.pipeline._parallel.worker_pool`."""
    return _RealWorker, (str(path), stamp_size, pixel_scale, scale_mode, seed)


def real_stamps(
    path=None,
    *,
    stamp_size=64,
    pixel_scale=HST_PIXEL_SCALE,
    scale_mode="fixed",
    seed=DEFAULT_SEED,
    indices=None,
    nproc=None,
    progress=True,
    pool=None,
):
    """Stamps of every galaxy (or of ``indices``) of a COSMOS catalog.

    ``pool``: a :func:`worker_pool` of :func:`real_stamp_worker` for these settings, reused
    across calls (``nproc`` is then the pool's).

    Returns:
        tuple: ``(images, psfs, rows, errors)``; ``images`` and ``psfs`` are ``(N, S, S)``
        float32 arrays, ``rows`` a list of dicts, ``errors`` a list of ``(index, reason)`` for
        rows that could not be drawn.
    """
    check_stamp_geometry(stamp_size, pixel_scale, scale_mode)
    rgc = open_catalog(path)
    if indices is None:
        indices = range(rgc.nobjects)
    res = parallel_map(
        *real_stamp_worker(rgc.file_name, stamp_size, pixel_scale, scale_mode, seed),
        indices,
        nproc=nproc,
        chunk=16,
        desc="COSMOS stamps",
        progress=progress,
        pool=pool,
    )
    good = [r for r in res if "error" not in r]
    errors = [(r["index"], r["error"]) for r in res if "error" in r]
    if not good:
        raise GalSimValueError("No stamp could be drawn from the catalog", str(rgc.file_name))
    images = np.stack([r["image"] for r in good])
    psfs = np.stack([r["psf"] for r in good])
    return images, psfs, [r["row"] for r in good], errors
