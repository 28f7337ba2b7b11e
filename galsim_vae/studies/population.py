"""Population-level numbers of a model's sampled galaxies, against real COSMOS data.

The "Model v2" issue sets targets on the population a model samples, not on single galaxies:

1. :func:`sky_pedestals`: the sky left in each decoded stamp (the median of its 4-pixel border
   frame times the number of pixels), as a fraction of the galaxy's flux. Target: of 10,000
   sampled galaxies fewer than 1% beyond +-2%, none with negative flux.
2. :func:`size_distribution`: half-light radii against the COSMOS F814W<23.5 galaxies seen by
   HST (their parametric fits convolved with :func:`galsim_vae.hst_f814w_psf`). Target: median
   within 10%, 90th percentile within 15%.
3. :func:`magnitude_distribution`: F814W magnitudes against the COSMOS F814W<23.5 magnitude
   catalog. Target: Kolmogorov-Smirnov distance below 0.1 over the shared magnitude range.
4. :func:`great3_resolution`: the share of galaxies that GREAT3 would call resolved (HSM
   resolution factor >= 1/3 under a ground-based PSF at 0.2"/px) against the same share for the
   COSMOS galaxies. Target: within 10 percentage points.

:func:`population_report` samples a model once, runs all four, and writes ``population.json`` and
``population.png``.

Units: fluxes are COSMOS F814W counts/s (the units of the training stamps and of GalSim's
``COSMOSCatalog``), and a magnitude is the F814W AB magnitude ``-2.5 log10(flux) + 25.94``
(:data:`ZEROPOINT`, the ACS/WFC F814W zeropoint GalSim uses for the COSMOS images). Sizes are in
arcsec.

The COSMOS reference galaxies (:func:`cosmos_parametric`) are GalSim's parametric COSMOS
galaxies, built by ``galsim.COSMOSCatalog``'s own code from the Sersic and bulge+disk fits of two
catalogs of ``../shared/data``:

- ``cosmos_fits/real_galaxy_23.5_500_fits.fits``: 500 galaxies drawn from the F814W<23.5 sample
  (its magnitudes follow the full catalog's: median 22.5). It has the old column layout (no
  ``hlr``, ``flux``, ``use_bulgefit``, ``viable_sersic``); those columns are derived as GalSim
  1.x derived them (the fit choice, the circularised radii, and the fluxes from the intensity at
  the half-light radius of a GalSim ``Sersic``), which reproduces the example catalog's own
  columns exactly. Cuts: the ``"marginal"`` cuts of ``COSMOSCatalog`` that need no selection file
  (both fits converged; no Sersic n >= 5 with a half-light radius above 1").
- ``cosmos_23.5_example``: GalSim's 100-galaxy example catalog through ``galsim.COSMOSCatalog``
  (``use_real=False``; 96 pass its default cuts). These are brighter than the sample as a whole
  (median F814W 21.8): the size results also give the medians of each catalog alone.

Catalog weights are not used.
"""

from __future__ import annotations

import functools
from pathlib import Path

import galsim
import numpy as np

from .._utils import as_deviate, check_count, write_json
from .._version import __version__
from ..errors import GalSimRangeError, GalSimValueError
from ..galaxy import GUARD_REDRAWS, MAX_BORDER_SKY, MAX_NEGATIVE_LIGHT, VAEGalaxy
from ..model import VAEModel, get_model
from ..psf import F814W_ZEROPOINT, HST_PIXEL_SCALE, hst_f814w_psf
from ..stamp import border_sky, half_light_radius, negative_light

__all__ = [
    "ZEROPOINT",
    "TARGETS",
    "magnitudes",
    "stamp_hlr",
    "cosmos_parametric",
    "cosmos_reference",
    "magnitude_catalog",
    "great3_psf",
    "sky_pedestals",
    "size_distribution",
    "magnitude_distribution",
    "magnitude_prior",
    "redshift_prior",
    "great3_resolution",
    "population_report",
]

#: F814W AB zeropoint of the COSMOS images (counts/s): ``mag = -2.5 log10(flux) + ZEROPOINT``.
ZEROPOINT = F814W_ZEROPOINT
#: Side (pixels at ``HST_PIXEL_SCALE``, 0.03") of the stamp the reference galaxies are
#: measured on: 7.68".
REFERENCE_STAMP = 256
#: The issue's targets, as the report checks them.
TARGETS = {
    "sky_pedestal": "fewer than 1% of galaxies with |sky| > 2% of flux, none with negative flux",
    "size": "median hlr within 10% of COSMOS, 90th percentile within 15% (sampled galaxies "
    "within the COSMOS magnitude limit)",
    "magnitude": "KS distance < 0.1 over the shared magnitude range",
    "great3_resolution": "resolved fraction (R >= 1/3) within 10 points of COSMOS",
}

_FIT_FILE = "cosmos_fits/real_galaxy_23.5_500_fits.fits"
_EXAMPLE_DIR = "cosmos_23.5_example"
_EXAMPLE_FILE = "real_galaxy_catalog_23.5_example.fits"
_MAG_FILE = "cosmos_fits/shera_catalog_23.5.fits.gz"
_SKY_LEVELS = (0.02, 0.10, 0.25)
_PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
# Drawing accuracy of the reference galaxies: a few have Sersic n ~ 5 and radii of 2-3", whose
# default FFTs would need gigabytes; folding 1% of their flux (as the simulator does) keeps them
# small, and the measurement stamp truncates them anyway.
_GSP = galsim.GSParams(folding_threshold=1e-2, maximum_fft_size=8192)


# ---- small helpers ----------------------------------------------------------------------------
def _num(x):
    """A float for JSON: None where not finite."""
    x = float(x)
    return x if np.isfinite(x) else None


def _check_gals(gals) -> list:
    if isinstance(gals, (galsim.GSObject, galsim.Image)):
        raise TypeError(f"gals must be a sequence of galaxies, got one {type(gals).__name__}")
    try:
        gals = list(gals)
    except TypeError:
        raise TypeError(f"gals must be a sequence of galaxies, got {gals!r}") from None
    if not gals:
        raise GalSimValueError("No galaxies given", len(gals))
    return gals


def _stamp(g) -> galsim.Image:
    """A galaxy's decoded stamp (``g.stamp``), or ``g`` itself when it is a ``galsim.Image``."""
    st = g if isinstance(g, galsim.Image) else getattr(g, "stamp", None)
    if not isinstance(st, galsim.Image):
        raise TypeError(f"expected a galaxy with a .stamp galsim.Image, or an Image; got {g!r}")
    return st


def _try_stamp(g):
    """:func:`_stamp`, or None for a galaxy that cannot be decoded to a positive flux (a flux
    model's :attr:`VAEGalaxy.stamp` refuses those)."""
    try:
        return _stamp(g)
    except GalSimValueError:
        return None


def _fluxes(gals) -> np.ndarray:
    """Total flux of each galaxy: the GSObject's flux, or its stamp's sum for an Image; ``-inf``
    for a galaxy that cannot be decoded to a positive flux."""
    out = []
    for g in gals:
        try:
            out.append(float(g.flux) if isinstance(g, galsim.GSObject) else _stamp(g).array.sum())
        except GalSimValueError:
            out.append(-np.inf)
    return np.array(out)


def magnitudes(flux) -> np.ndarray:
    """F814W AB magnitudes ``-2.5 log10(flux) + 25.94`` of fluxes in COSMOS counts/s.

    Parameters:
        flux: one flux or an array of them (COSMOS F814W counts/s).

    Returns:
        ndarray of magnitudes; NaN where the flux is not positive.
    """
    f = np.atleast_1d(np.asarray(flux, dtype=float))
    out = np.full(f.shape, np.nan)
    ok = f > 0
    out[ok] = -2.5 * np.log10(f[ok]) + ZEROPOINT
    return out


def stamp_hlr(image, *, center=None) -> float:
    """Half-light radius (arcsec) of a stamp, as :attr:`VAEGalaxy.half_light_radius` measures it
    (:func:`galsim_vae.stamp.half_light_radius`); NaN when the stamp's sum is not positive.

    Parameters:
        image: a ``galsim.Image`` with a pixel scale.
        center: the centre, a ``galsim.PositionD``. [default: None, the nominal centre]
    """
    if not isinstance(image, galsim.Image):
        raise TypeError(f"image must be a galsim.Image, got {image!r}")
    return half_light_radius(image, center=center)


def _percentiles(v) -> dict:
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return {f"p{p}": None for p in _PERCENTILES}
    return {f"p{p}": _num(x) for p, x in zip(_PERCENTILES, np.percentile(v, _PERCENTILES))}


def _data(data_dir) -> Path:
    from ..pipeline.simulator import find_shared_data

    return find_shared_data(data_dir)


# ---- the COSMOS reference ----------------------------------------------------------------------
def _upgrade_old_fits(t) -> list:
    """Records of an old-layout COSMOS fit catalog with the columns ``_buildParametric`` needs.

    ``use_bulgefit`` and ``viable_sersic`` by GalSim 1.x's rule; ``hlr`` the circularised
    half-light radii (arcsec) of the Sersic, bulge and disk fits; ``flux`` their fluxes from the
    intensity at the half-light radius (``fit[0]``, counts/s per 0.03" pixel) and the
    surface brightness there of a unit-flux GalSim ``Sersic`` of that radius.
    """
    out = []
    for row in t:
        sp = np.asarray(row["sersicfit"], dtype=float)
        bp = np.asarray(row["bulgefit"], dtype=float)
        bstat, sstat = int(row["fit_status"][0]), int(row["fit_status"][4])
        btt = float(row["fit_dvc_btt"])
        use_b = not (
            bstat < 1
            or bstat > 4
            or not 0.1 <= btt <= 0.9
            or bp[9] <= 0
            or bp[1] <= 0
            or bp[11] < 0.051
            or bp[3] < 0.051
            or row["fit_mad_s"] < row["fit_mad_b"]
        )
        viable = not (sstat < 1 or sstat > 4 or sp[1] <= 0 or sp[0] <= 0)

        def comp(ie, a_pix, n, q):
            if not (a_pix > 0 and q > 0):
                return 0.0, 0.0
            hlr = HST_PIXEL_SCALE * a_pix * np.sqrt(q)
            n = min(max(n, 0.3), 6.2)
            unit = galsim.Sersic(n, half_light_radius=1.0).xValue(galsim.PositionD(1.0, 0.0))
            return hlr, ie / unit * (hlr / HST_PIXEL_SCALE) ** 2

        s_hlr, s_flux = comp(sp[0], sp[1], sp[2], sp[3])
        b_hlr, b_flux = comp(bp[8], bp[9], 4.0, bp[11]) if use_b else (0.0, 0.0)
        d_hlr, d_flux = comp(bp[0], bp[1], 1.0, bp[3]) if use_b else (0.0, 0.0)
        rec = {k: row[k] for k in row.dtype.names}
        rec.update(
            use_bulgefit=int(use_b),
            viable_sersic=int(viable),
            hlr=np.array([s_hlr, b_hlr, d_hlr]),
            flux=np.array([s_flux, b_flux, d_flux, b_flux + d_flux]),
        )
        out.append(rec)
    return out


@functools.lru_cache(maxsize=4)
def _parametric(data_dir: str) -> tuple:
    from astropy.io import fits

    d = Path(data_dir)
    profiles, mags, idents, sources = [], [], [], []
    f = d / _FIT_FILE
    if f.is_file():
        t = np.array(fits.getdata(f, 1))
        for rec in _upgrade_old_fits(t):
            st = rec["fit_status"]
            ok = 0 < st[0] < 5 and 0 < st[4] < 5  # COSMOSCatalog's "marginal" fit cuts
            ok &= rec["sersicfit"][2] < 5 or rec["hlr"][0] < 1.0
            ok &= bool(rec["use_bulgefit"] or rec["viable_sersic"])
            if not ok:
                continue
            profiles.append(galsim.COSMOSCatalog._buildParametric(rec, 0.05, _GSP, False))
            mags.append(float(rec["mag_auto"]))
            idents.append(int(rec["IDENT"]))
            sources.append("500")
    if (d / _EXAMPLE_DIR / _EXAMPLE_FILE).is_file():
        cat = galsim.COSMOSCatalog(
            dir=str(d / _EXAMPLE_DIR), file_name=_EXAMPLE_FILE, use_real=False
        )
        for i in range(cat.nobjects):
            profiles.append(cat.makeGalaxy(i, gal_type="parametric", gsparams=_GSP))
            mags.append(float(cat.getValue("mag_auto", i)))
            idents.append(int(cat.getValue("IDENT", i)))
            sources.append("example")
    if not profiles:
        raise GalSimValueError(
            "No COSMOS parametric fits found", [str(d / _FIT_FILE), str(d / _EXAMPLE_DIR)]
        )
    return tuple(profiles), np.array(mags), np.array(idents), np.array(sources)


def cosmos_parametric(data_dir=None) -> dict:
    """GalSim's parametric COSMOS F814W<23.5 galaxies, as HST saw them.

    Each intrinsic profile (``COSMOSCatalog``'s bulge+disk or Sersic model, with the catalog's
    flux in counts/s) is convolved with :func:`galsim_vae.hst_f814w_psf`, so that it compares
    with a :class:`VAEGalaxy` (whose stamps carry the HST PSF). The module docstring says which
    catalogs and cuts. Built once per data folder and process.

    Parameters:
        data_dir: the real data folder. [default: None, :func:`find_shared_data
            <galsim_vae.pipeline.find_shared_data>`]

    Returns:
        dict: ``profiles`` (list of GSObject), ``mag`` (the catalog's ``mag_auto``), ``ident``,
        ``source`` (``"500"`` or ``"example"``), one entry per galaxy.
    """
    profiles, mags, idents, sources = _parametric(str(_data(data_dir)))
    psf = hst_f814w_psf(_GSP)
    return {
        "profiles": [galsim.Convolve(p, psf, gsparams=_GSP) for p in profiles],
        "mag": mags.copy(),
        "ident": idents.copy(),
        "source": sources.copy(),
    }


def _crop(image, size):
    """The central ``size`` x ``size`` pixels of an image drawn with ``use_true_center=False``
    (same nominal centre, so the profile's origin stays on the crop's pixel ``(S/2, S/2)``)."""
    b = image.bounds
    lo_x = b.xmin + (b.xmax - b.xmin + 1) // 2 - size // 2
    lo_y = b.ymin + (b.ymax - b.ymin + 1) // 2 - size // 2
    return image[galsim.BoundsI(lo_x, lo_x + size - 1, lo_y, lo_y + size - 1)]


@functools.lru_cache(maxsize=8)
def _reference(data_dir: str, stamp_pixels: int) -> dict:
    ref = cosmos_parametric(data_dir)
    hlr, hlr_stamp = [], []
    for p in ref["profiles"]:
        im = p.drawImage(
            nx=REFERENCE_STAMP,
            ny=REFERENCE_STAMP,
            scale=HST_PIXEL_SCALE,
            method="no_pixel",
            use_true_center=False,
        )
        c = im.bounds.center
        centre = galsim.PositionD(c.x, c.y)
        hlr.append(stamp_hlr(im, center=centre))
        hlr_stamp.append(stamp_hlr(_crop(im, stamp_pixels), center=centre))
    out = {
        "hlr": np.array(hlr),
        "hlr_stamp": np.array(hlr_stamp),
        "mag": ref["mag"],
        "source": ref["source"],
        "stamp_pixels": stamp_pixels,
    }
    for v in out.values():
        if isinstance(v, np.ndarray):
            v.flags.writeable = False
    return out


def cosmos_reference(data_dir=None, *, stamp_pixels=64) -> dict:
    """Half-light radii of the COSMOS reference galaxies (:func:`cosmos_parametric`).

    Each galaxy is drawn at 0.03"/px (no extra pixel: the HST PSF includes the ACS pixel) on a
    256-pixel (7.68") stamp, its origin on the stamp's nominal centre, and measured with
    :func:`stamp_hlr`, as a :class:`VAEGalaxy` measures its own stamp. ``hlr_stamp`` is the same
    measurement on the central ``stamp_pixels`` of that stamp: what a model with such stamps
    could hold at best. Computed once per data folder, stamp size and process (about 15 s).

    Parameters:
        data_dir: the real data folder. [default: None, found as usual]
        stamp_pixels: side of the inner stamp, pixels at 0.03". [default: 64]

    Returns:
        dict: ``hlr`` and ``hlr_stamp`` (arcsec), ``mag``, ``source`` (read-only arrays) and
        ``stamp_pixels``.
    """
    s = check_count(stamp_pixels, "stamp_pixels", minimum=2)
    if s > REFERENCE_STAMP:
        raise GalSimValueError(f"stamp_pixels must be at most {REFERENCE_STAMP}", s)
    return _reference(str(_data(data_dir)), s)


@functools.lru_cache(maxsize=4)
def _mag_catalog(data_dir: str) -> np.ndarray:
    from astropy.io import fits

    f = Path(data_dir) / _MAG_FILE
    if not f.is_file():
        raise GalSimValueError("COSMOS magnitude catalog not found", str(f))
    m = np.asarray(fits.getdata(f, 1)["F814W"], dtype=float)
    m = m[np.isfinite(m)]
    m.flags.writeable = False
    return m


def magnitude_catalog(data_dir=None) -> np.ndarray:
    """F814W magnitudes (column ``F814W``) of the 56,062 galaxies of the COSMOS F814W<23.5
    sample (``cosmos_fits/shera_catalog_23.5.fits.gz``), all rows, read-only.

    Parameters:
        data_dir: the real data folder. [default: None, found as usual]
    """
    return _mag_catalog(str(_data(data_dir)))


def magnitude_prior(data_dir=None, *, width=0.1, brightest=None) -> dict:
    """The COSMOS F814W<23.5 magnitude distribution as a histogram of ``width``-magnitude bins,
    for a latent density's default magnitudes (:attr:`LatentDensity.magnitude_prior`): a
    summary of :func:`magnitude_catalog`, not its rows.

    Parameters:
        data_dir: the real data folder. [default: None, found as usual]
        width: bin width in magnitudes. [default: 0.1]
        brightest: leave out galaxies brighter than this (the brightest the density saw, so
            that no default draw is an extrapolation); ``n_left_out`` counts them.
            [default: None, all]

    Returns:
        dict: ``edges``, ``counts`` (lists), ``source``, ``n``, ``n_left_out``.
    """
    m = all_m = magnitude_catalog(data_dir)
    if brightest is not None:
        m = m[m >= brightest]
    lo, hi = np.floor(m.min() / width) * width, np.ceil(m.max() / width) * width
    edges = np.round(np.arange(lo, hi + width / 2, width), 6)
    if brightest is not None:  # the first bin starts there, not below
        edges[0] = max(edges[0], brightest)
    counts, _ = np.histogram(m, edges)
    return {
        "edges": edges.tolist(),
        "counts": counts.astype(int).tolist(),
        "source": f"{_MAG_FILE} (COSMOS F814W<23.5, column F814W)",
        "n": int(len(m)),
        "n_left_out": int(len(all_m) - len(m)),
    }


def redshift_prior(data_dir=None, *, brightest=None) -> dict:
    """Photometric redshifts and F814W magnitudes of the COSMOS F814W<23.5 galaxies of the fit
    catalog (``cosmos_fits/real_galaxy_23.5_500_fits.fits``, columns ``zphot`` and ``mag_auto``),
    for drawing galaxies at a redshift (:meth:`LatentDensity.magnitudes_at_redshift`): a latent
    density knows no redshift, so a redshift gives the magnitude of a COSMOS galaxy there, and
    the galaxy's shape and size are drawn given that magnitude.

    Parameters:
        data_dir: the real data folder. [default: None, found as usual]
        brightest: leave out galaxies brighter than this (as :func:`magnitude_prior`).
            [default: None, all]

    Returns:
        dict: ``zphot``, ``mag`` (lists, rows with a positive finite redshift and a finite
        magnitude), ``source``, ``n``, ``n_left_out``.
    """
    from astropy.io import fits

    f = _data(data_dir) / _FIT_FILE
    if not f.is_file():
        raise GalSimValueError("COSMOS fit catalog (with zphot) not found", str(f))
    t = fits.getdata(f, 1)
    z = np.asarray(t["zphot"], dtype=float)
    m = np.asarray(t["mag_auto"], dtype=float)
    ok = np.isfinite(z) & (z > 0) & np.isfinite(m)
    if brightest is not None:
        ok &= m >= brightest
    return {
        "zphot": np.round(z[ok], 5).tolist(),
        "mag": np.round(m[ok], 4).tolist(),
        "source": f"{_FIT_FILE} (COSMOS F814W<23.5, columns zphot and mag_auto)",
        "n": int(ok.sum()),
        "n_left_out": int(len(z) - ok.sum()),
    }


# ---- 1. sky pedestals --------------------------------------------------------------------------
def _sky_values(gals, width=4, negative=None):
    # ``negative``, a list, gets each stamp's negative light (the sum of its negative pixels,
    # made positive) over its flux: NaN without positive flux.
    sky, flux = [], []
    for g in gals:
        st = _try_stamp(g)
        if st is None:
            flux.append(-np.inf)
            sky.append(np.nan)
            if negative is not None:
                negative.append(np.nan)
            continue
        a = st.array
        flux.append(float(a.sum()))
        sky.append(border_sky(a, width))
        if negative is not None:
            negative.append(negative_light(a))
    sky, flux = np.array(sky), np.array(flux)
    ratio = np.full(len(sky), np.nan)
    ok = flux > 0
    ratio[ok] = sky[ok] / flux[ok]
    return sky, flux, ratio


#: Levels of negative light (over the flux) the population report counts samples beyond.
_NEGATIVE_LEVELS = (0.05, 0.1, 0.25)


def _negative_summary(neg) -> dict:
    """Negative light of decoded stamps (a noiseless galaxy has none: the decoder's ringing and
    mottled floors do): the fraction beyond each level (a stamp without positive flux counts as
    beyond every level) and percentiles."""
    neg = np.asarray(neg, dtype=float)
    return {
        **{
            f"frac_beyond_{round(100 * lv)}pct": float(np.mean(~(neg <= lv)))
            for lv in _NEGATIVE_LEVELS
        },
        "percentiles": _percentiles(neg[np.isfinite(neg)]),
    }


def _guard_summary(m, n, seed, ref, cat, mag_limit, unguarded_ratio, unguarded_neg) -> dict:
    """What ``VAEGalaxy.sample``'s sampling guard does: the share of the model's own samples it
    refuses, and ``n`` galaxies as ``sample`` returns them (the guard on, the same seed; drawn
    in chunks of 1,000 so that only their stamps are held), measured as the model's are;
    ``returned`` is None, with the ``error``, where the guard lets too few through."""
    ratio = np.asarray(unguarded_ratio, dtype=float)
    neg = np.asarray(unguarded_neg, dtype=float)
    refused_sky = ~(np.abs(ratio) <= MAX_BORDER_SKY)
    refused_neg = ~(neg <= MAX_NEGATIVE_LIGHT)
    out = {
        "max_border_sky": MAX_BORDER_SKY,
        "max_negative_light": MAX_NEGATIVE_LIGHT,
        "redraws_in_place": GUARD_REDRAWS,
        "frac_refused": float(np.mean(refused_sky | refused_neg)),
        "frac_refused_border_sky": float(np.mean(refused_sky)),
        "frac_refused_negative_light": float(np.mean(refused_neg)),
    }
    rng = as_deviate(int(seed))
    sky, flux, ratio_g, neg_g, hlr = [], [], [], [], []
    for k in range(0, n, 1000):
        try:
            gals = VAEGalaxy.sample(min(1000, n - k), rng, m)
        except GalSimRangeError as e:  # a model whose samples (nearly) all carry a floor
            return {**out, "returned": None, "error": str(e)}
        nl = []
        s_, f_, r_ = _sky_values(gals, negative=nl)
        sky += list(s_)
        flux += list(f_)
        ratio_g += list(r_)
        neg_g += nl
        hlr += list(_sampled_hlr(gals, f_))
    sky, flux, ratio_g, hlr = (np.asarray(v, dtype=float) for v in (sky, flux, ratio_g, hlr))
    return {
        **out,
        "returned": {
            "sky": _sky_summary(sky, flux, ratio_g),
            "negative_light": _negative_summary(neg_g),
            "size": _size_summary(hlr, ref, magnitudes(flux), mag_limit),
            "magnitude": _magnitude_summary(magnitudes(flux), cat),
        },
    }


def _sky_summary(sky, flux, ratio) -> dict:
    n = len(sky)
    # A galaxy without positive flux has no meaningful ratio: it counts as beyond every level.
    beyond = {
        f"frac_beyond_{round(100 * lv)}pct": float(np.mean(~(np.abs(ratio) <= lv)))
        for lv in _SKY_LEVELS
    }
    return {
        "n": n,
        **beyond,
        "frac_negative_flux": float(np.mean(flux < 0)),
        "n_nonpositive_flux": int(np.sum(~(flux > 0))),
        "sky_over_flux_percentiles": _percentiles(ratio),
        "sky_percentiles": _percentiles(sky),
    }


def sky_pedestals(gals, *, width=4) -> dict:
    """The sky left in each galaxy's decoded stamp, as a fraction of its flux.

    Per galaxy: ``sky = median(border) * N_pixels``, the median of the stamp's ``width``-pixel
    border frame (:func:`galsim_vae.stamp.border_pixels`) spread over the whole stamp, divided
    by the galaxy's flux (the stamp's sum). A galaxy whose flux is not positive has no ratio and
    counts as beyond every level; one that cannot be decoded to a positive flux at all (a flux
    model refuses those) counts as a negative flux.

    Parameters:
        gals: galaxies with a ``.stamp`` (``galsim.Image``), such as :class:`VAEGalaxy`, or
            ``galsim.Image`` stamps.
        width: border width in pixels. [default: 4]

    Returns:
        dict: ``n``; ``frac_beyond_2pct``, ``_10pct``, ``_25pct`` (fraction with
        ``|sky / flux|`` above 2%, 10%, 25%); ``frac_negative_flux``; ``n_nonpositive_flux``;
        percentiles (1, 5, 25, 50, 75, 95, 99) of ``sky / flux`` (positive-flux galaxies) and of
        ``sky`` (flux units).
    """
    gals = _check_gals(gals)
    w = check_count(width, "width")
    return _sky_summary(*_sky_values(gals, w))


# ---- 2. sizes ----------------------------------------------------------------------------------
def _sampled_hlr(gals, flux):
    out = []
    for g, f in zip(gals, flux):
        if not f > 0:
            out.append(np.nan)
        elif isinstance(g, galsim.Image):
            out.append(stamp_hlr(g))
        else:
            h = getattr(g, "half_light_radius", None)
            out.append(float(h) if h is not None else stamp_hlr(_stamp(g)))
    return np.array(out)


def _stamp_pixels(gals) -> int:
    """Side (pixels at 0.03") of the galaxies' stamps: the median of their sides in arcsec."""
    stamps = [st for st in map(_try_stamp, gals) if st is not None]
    if not stamps:
        raise GalSimValueError("No galaxy could be decoded", len(gals))
    sides = [st.array.shape[0] * st.scale for st in stamps]
    return max(2, min(REFERENCE_STAMP, int(round(np.median(sides) / HST_PIXEL_SCALE))))


def _size_summary(hlr, ref, mag=None, mag_limit=None) -> dict:
    s = hlr[np.isfinite(hlr)]
    r = ref["hlr"][np.isfinite(ref["hlr"])]
    rs = ref["hlr_stamp"][np.isfinite(ref["hlr_stamp"])]
    if not len(s):
        raise GalSimValueError("No galaxy with positive flux to measure", len(hlr))
    sm, s90 = np.median(s), np.percentile(s, 90)
    cm, c90 = np.median(r), np.percentile(r, 90)
    by_source = {
        str(src): _num(np.nanmedian(ref["hlr"][ref["source"] == src]))
        for src in np.unique(ref["source"])
    }
    out = {
        "n_sampled": int(len(s)),
        "n_excluded": int(len(hlr) - len(s)),
        "n_cosmos": int(len(r)),
        "sampled_median": _num(sm),
        "sampled_p90": _num(s90),
        "cosmos_median": _num(cm),
        "cosmos_p90": _num(c90),
        "median_ratio": _num(sm / cm),
        "p90_ratio": _num(s90 / c90),
        "cosmos_median_by_source": by_source,
        "stamp_pixels": int(ref["stamp_pixels"]),
        "cosmos_in_stamp_median": _num(np.median(rs)),
        "cosmos_in_stamp_p90": _num(np.percentile(rs, 90)),
    }
    if mag is not None and mag_limit is not None:
        # The COSMOS reference stops at its catalog's limit; the sampled galaxies within the same
        # limit are the like-for-like comparison (fainter galaxies are smaller).
        keep = np.isfinite(hlr) & np.isfinite(mag) & (mag <= mag_limit)
        sb = hlr[keep]
        out["mag_limit"] = _num(mag_limit)
        out["n_sampled_within_mag_limit"] = int(keep.sum())
        if len(sb):
            out["sampled_median_within_mag_limit"] = _num(np.median(sb))
            out["sampled_p90_within_mag_limit"] = _num(np.percentile(sb, 90))
            out["median_ratio_within_mag_limit"] = _num(np.median(sb) / cm)
            out["p90_ratio_within_mag_limit"] = _num(np.percentile(sb, 90) / c90)
    return out


def size_distribution(gals, data_dir=None) -> dict:
    """Sampled half-light radii against those of the COSMOS F814W<23.5 galaxies seen by HST.

    Sampled: each galaxy's ``half_light_radius`` (arcsec; the stamp's :func:`stamp_hlr` for an
    ``Image``), galaxies without positive flux left out (``n_excluded``). COSMOS:
    :func:`cosmos_reference` (parametric galaxies convolved with the HST PSF, drawn at 0.03"/px,
    measured the same way). ``cosmos_in_stamp_*`` measures them inside the sampled galaxies'
    stamp (``stamp_pixels`` at 0.03"/px): a model whose stamps are that small cannot reach the
    full COSMOS sizes.

    Parameters:
        gals: :class:`VAEGalaxy` objects (or anything with ``.stamp`` and
            ``.half_light_radius``), or ``galsim.Image`` stamps.
        data_dir: the real data folder. [default: None, found as usual]

    Returns:
        dict: medians and 90th percentiles (arcsec) of both, ``median_ratio`` and ``p90_ratio``
        (sampled / COSMOS), counts, the COSMOS median of each catalog, the in-stamp reference.
    """
    gals = _check_gals(gals)
    hlr = _sampled_hlr(gals, _fluxes(gals))
    ref = cosmos_reference(data_dir, stamp_pixels=_stamp_pixels(gals))
    return _size_summary(hlr, ref)


# ---- 3. magnitudes -----------------------------------------------------------------------------
def _magnitude_summary(mag, cat) -> dict:
    from scipy.stats import ks_2samp

    n_all = len(mag)
    mag = mag[np.isfinite(mag)]
    lo = max(mag.min(), cat.min()) if len(mag) else np.nan
    hi = min(mag.max(), cat.max()) if len(mag) else np.nan
    a = mag[(mag >= lo) & (mag <= hi)]
    b = cat[(cat >= lo) & (cat <= hi)]
    ks = ks_2samp(a, b).statistic if hi > lo and len(a) and len(b) else np.nan
    ks_all = ks_2samp(mag, cat).statistic if len(mag) else np.nan
    return {
        "n_sampled": int(len(mag)),
        "n_nonpositive_flux": int(n_all - len(mag)),
        "n_catalog": int(len(cat)),
        "shared_range": [_num(lo), _num(hi)],
        "n_sampled_in_range": int(len(a)),
        "n_catalog_in_range": int(len(b)),
        "ks_distance": _num(ks),
        "ks_distance_all": _num(ks_all),
        "sampled_median": _num(np.median(mag)) if len(mag) else None,
        "catalog_median": _num(np.median(cat)),
        "frac_sampled_fainter_than_catalog": float(np.mean(mag > cat.max())) if len(mag) else None,
        "frac_sampled_brighter_than_catalog": float(np.mean(mag < cat.min())) if len(mag) else None,
    }


def magnitude_distribution(gals, data_dir=None) -> dict:
    """Sampled F814W magnitudes against the COSMOS F814W<23.5 magnitude catalog.

    Magnitudes are ``-2.5 log10(flux) + 25.94`` (:func:`magnitudes`; flux in COSMOS counts/s).
    The Kolmogorov-Smirnov distance (``scipy.stats.ks_2samp``) is taken over the shared range
    (the overlap of the two samples' ranges: the catalog stops at F814W = 23.5); the fractions
    of sampled galaxies fainter or brighter than every catalog galaxy say what that range leaves
    out. Within a shared range a shift of the whole distribution is nearly invisible (galaxy
    counts rise almost exponentially with magnitude: the catalog shifted by 2 mag is still within
    0.1 of itself), so ``ks_distance_all``, over all magnitudes, is reported beside it.
    Galaxies that all have one flux (a flux model without a joint density gives each the
    training median) share no range with the catalog: ``ks_distance`` is then None.

    Parameters:
        gals: galaxies (GSObjects, their ``.flux``) or ``galsim.Image`` stamps (their sum).
        data_dir: the real data folder. [default: None, found as usual]

    Returns:
        dict: ``ks_distance`` (the issue's number), ``ks_distance_all``, ``shared_range``,
        medians, counts, the fractions outside the catalog's range.
    """
    gals = _check_gals(gals)
    return _magnitude_summary(magnitudes(_fluxes(gals)), magnitude_catalog(data_dir))


# ---- 4. GREAT3 resolution ----------------------------------------------------------------------
def great3_psf():
    """The ground-based PSF of :func:`great3_resolution`: ``galsim.Moffat(beta=3, fwhm=0.65)``.

    GREAT3's ground PSFs were Kolmogorov atmospheres (with optics) of varying seeing; this fixed
    Moffat of typical seeing stands in for them.
    """
    return galsim.Moffat(beta=3.0, fwhm=0.65)


def _resolutions(profiles, psf_img, psf, scale, stamp_size, ud):
    r = np.full(len(profiles), np.nan)
    for i, p in enumerate(profiles):
        if p is None:
            continue
        off = (ud() - 0.5, ud() - 0.5)
        img = galsim.Convolve(p, psf).drawImage(
            nx=stamp_size, ny=stamp_size, scale=scale, offset=off
        )
        res = galsim.hsm.EstimateShear(img, psf_img, strict=False)
        if not res.error_message:
            r[i] = res.resolution_factor
        elif "smaller than PSF" in res.error_message:
            r[i] = 0.0  # a point source to HSM's precision: unresolved
    return r


def great3_resolution(
    gals,
    data_dir=None,
    rng=None,
    *,
    psf=None,
    scale=0.2,
    stamp_size=48,
    flux=1.0e4,
    match_magnitudes=True,
) -> dict:
    """The share of galaxies GREAT3 would call resolved, sampled against COSMOS.

    Each galaxy, at flux ``flux`` (bright, no noise), is convolved with ``psf`` and drawn at
    ``scale`` (pixel response included, a uniform random sub-pixel offset from ``rng`` as in
    GREAT3); ``galsim.hsm.EstimateShear(gal, psf_image, strict=False).resolution_factor`` is its
    resolution, and a galaxy with resolution >= 1/3 is resolved. The same for the COSMOS
    parametric galaxies at HST resolution (:func:`cosmos_parametric`). A galaxy that HSM finds
    smaller than the PSF (a point source to its precision) has resolution 0; galaxies without
    positive flux and other HSM failures are left out and counted.

    Magnitudes: when the sampled galaxies have fluxes of their own (their magnitudes spread over
    more than 0.01 mag), both samples are restricted to the same range: the 1st to 99th
    percentile of the sampled magnitudes, cut to the COSMOS range (COSMOS by the catalog's
    ``mag_auto``). When they do not (every galaxy has the model's median flux) or fewer than 20
    COSMOS galaxies fall in that range, all galaxies of both are used, and ``magnitude_note``
    says so.

    Parameters:
        gals: galaxies (GSObjects, such as :class:`VAEGalaxy`).
        data_dir: the real data folder. [default: None, found as usual]
        rng: ``galsim.BaseDeviate`` or int seed for the sub-pixel offsets. [default: None]
        psf: the ground-based PSF. [default: None, :func:`great3_psf`]
        scale: pixel scale, arcsec. [default: 0.2]
        stamp_size: side of the drawn stamps, pixels. [default: 48]
        flux: the flux each galaxy is drawn with. [default: 1e4]
        match_magnitudes: restrict both samples to the same magnitude range when the sampled
            galaxies have fluxes. [default: True]

    Returns:
        dict: ``sampled_frac_resolved``, ``cosmos_frac_resolved``, ``difference_points``
        (100 x sampled minus COSMOS), median resolutions, counts, the magnitude range used.
    """
    gals = _check_gals(gals)
    if not all(isinstance(g, galsim.GSObject) for g in gals):
        raise TypeError("great3_resolution needs GSObjects (draws them through a PSF)")
    ud = galsim.UniformDeviate(as_deviate(rng))
    psf = great3_psf() if psf is None else psf
    if not isinstance(psf, galsim.GSObject):
        raise TypeError(f"psf must be a GSObject, got {psf!r}")
    if not (np.isfinite(scale) and scale > 0):
        raise GalSimValueError("scale must be positive", scale)
    if not (np.isfinite(flux) and flux > 0):
        raise GalSimValueError("flux must be positive", flux)
    stamp_size = check_count(stamp_size, "stamp_size", minimum=8)
    psf_img = psf.drawImage(nx=stamp_size, ny=stamp_size, scale=scale)

    f = _fluxes(gals)
    mag = magnitudes(f)
    ref = cosmos_parametric(data_dir)
    cmag = ref["mag"]
    use_s = f > 0
    use_c = np.ones(len(cmag), dtype=bool)
    mrange, note = None, "all galaxies of both samples"
    finite = mag[np.isfinite(mag)]
    if not match_magnitudes:
        note = "magnitude matching switched off: " + note
    elif len(finite) < 2 or np.ptp(finite) <= 0.01:
        note = "sampled galaxies share one flux (no fluxes of their own): " + note
    else:
        lo, hi = np.percentile(finite, [1, 99])
        lo, hi = max(lo, cmag.min()), min(hi, cmag.max())
        in_c = (cmag >= lo) & (cmag <= hi)
        if in_c.sum() < 20:
            note = f"only {int(in_c.sum())} COSMOS galaxies in the sampled range: " + note
        else:
            use_s &= (mag >= lo) & (mag <= hi)
            use_c = in_c
            mrange = [_num(lo), _num(hi)]
            note = "both samples restricted to the sampled 1-99th percentile magnitude range"

    prof_s = [g.withFlux(flux) if u else None for g, u in zip(gals, use_s)]
    prof_c = [p.withFlux(flux) if u else None for p, u in zip(ref["profiles"], use_c)]
    rs = _resolutions(prof_s, psf_img, psf, scale, stamp_size, ud)
    rc = _resolutions(prof_c, psf_img, psf, scale, stamp_size, ud)
    return _great3_summary(rs, rc, use_s, use_c, mrange, note, psf)


def _great3_summary(rs, rc, use_s, use_c, mrange, note, psf) -> dict:
    out = {}
    for name, r, use in (("sampled", rs, use_s), ("cosmos", rc, use_c)):
        ok = np.isfinite(r)
        out[f"n_{name}"] = int(ok.sum())
        out[f"n_{name}_hsm_failed"] = int((use & ~ok).sum())
        out[f"{name}_frac_resolved"] = _num(np.mean(r[ok] >= 1 / 3)) if ok.any() else None
        out[f"{name}_median_resolution"] = _num(np.median(r[ok])) if ok.any() else None
    s, c = out["sampled_frac_resolved"], out["cosmos_frac_resolved"]
    out["difference_points"] = _num(100 * (s - c)) if s is not None and c is not None else None
    out["n_sampled_excluded"] = int((~use_s).sum())
    out["magnitude_range"] = mrange
    out["magnitude_note"] = note
    out["psf"] = (
        f"Moffat(beta={psf.beta:g}, fwhm={psf.fwhm:.4g})"
        if isinstance(psf, galsim.Moffat)
        else repr(psf)
    )
    return out


# ---- the report --------------------------------------------------------------------------------
def _targets(sky, size, mag, g3) -> dict:
    def ok(cond):
        return bool(cond) if cond is not None else False

    # Sizes like for like: the sampled galaxies within the COSMOS reference's magnitude limit.
    mr = size.get("median_ratio_within_mag_limit", size["median_ratio"])
    pr = size.get("p90_ratio_within_mag_limit", size["p90_ratio"])
    ks, dp = mag["ks_distance"], g3["difference_points"]
    return {
        "sky_pedestal": {
            "pass": ok(sky["frac_beyond_2pct"] < 0.01 and sky["frac_negative_flux"] == 0),
            "frac_beyond_2pct": sky["frac_beyond_2pct"],
            "frac_negative_flux": sky["frac_negative_flux"],
            "n": sky["n"],
            "target": TARGETS["sky_pedestal"],
        },
        "size": {
            "pass": ok(mr is not None and pr is not None and abs(mr - 1) <= 0.10)
            and ok(abs(pr - 1) <= 0.15),
            "median_ratio": mr,
            "p90_ratio": pr,
            "median_ratio_all": size["median_ratio"],
            "p90_ratio_all": size["p90_ratio"],
            "mag_limit": size.get("mag_limit"),
            "target": TARGETS["size"],
        },
        "magnitude": {
            "pass": ok(ks is not None and ks < 0.1),
            "ks_distance": ks,
            "ks_distance_all": mag["ks_distance_all"],
            "frac_sampled_outside_catalog_range": _num(
                mag["frac_sampled_fainter_than_catalog"] + mag["frac_sampled_brighter_than_catalog"]
            )
            if mag["frac_sampled_fainter_than_catalog"] is not None
            else None,
            "target": TARGETS["magnitude"],
        },
        "great3_resolution": {
            "pass": ok(dp is not None and abs(dp) <= 10),
            "difference_points": dp,
            "sampled_frac_resolved": g3["sampled_frac_resolved"],
            "cosmos_frac_resolved": g3["cosmos_frac_resolved"],
            "target": TARGETS["great3_resolution"],
        },
    }


def population_report(
    model=None, n=2000, seed=0, data_dir=None, out_dir=None, *, overwrite=False
) -> dict:
    """Sample a model once and measure the issue's population numbers against COSMOS.

    ``n`` galaxies are drawn with ``VAEGalaxy.sample(n, rng, model, max_border_sky=None,
    max_negative_light=None)`` (the model itself, without the sampling guard; ``guard`` reports
    what the guard refuses and measures ``n`` galaxies drawn with it on; the model's latent
    density; with a flux model's joint density each has its own flux and pixel scale, at a
    COSMOS magnitude when the density stores their distribution: ``meta["magnitudes"]`` says
    which, and ``magnitude_training`` then gives the density's own magnitudes' distance) and
    measured by :func:`sky_pedestals`, :func:`size_distribution`,
    :func:`magnitude_distribution` and :func:`great3_resolution` (sub-pixel offsets from the same
    deviate, after the sampling). A few seconds per thousand galaxies, plus about 15 s once per
    process for the COSMOS reference.

    With ``out_dir``, writes ``population.json`` (the returned dict) and ``population.png``
    (histograms of sizes, magnitudes and sky/flux, sampled against COSMOS, and a gallery of 16
    sampled stamps beside 8 COSMOS parametric galaxies at HST resolution).

    Parameters:
        model: a :class:`VAEModel`, a weights file, or None for the shipped model.
            [default: None]
        n: number of galaxies. [default: 2000]
        seed: int seed of the sampling. [default: 0]
        data_dir: the real data folder. [default: None, :func:`find_shared_data
            <galsim_vae.pipeline.find_shared_data>`]
        out_dir: folder for ``population.json`` and ``population.png``. [default: None, write
            nothing]
        overwrite: replace those files when they exist. [default: False]

    Returns:
        dict: ``meta``, ``sky``, ``negative_light``, ``size``, ``magnitude``, ``great3``,
        ``guard``, ``magnitude_training`` (with COSMOS magnitudes) and ``targets`` (per target:
        ``pass`` and its numbers).
    """
    n = check_count(n)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    m = model if isinstance(model, VAEModel) else get_model(model)
    data = _data(data_dir)
    files = None
    if out_dir is not None:
        files = (Path(out_dir) / "population.json", Path(out_dir) / "population.png")
        exist = [str(f) for f in files if f.exists()]
        if exist and not overwrite:
            raise GalSimValueError("output exists; pass overwrite=True to replace it", exist)

    rng = as_deviate(int(seed))
    # The model itself, without the sampling guard: what the guard redraws is reported below.
    gals = VAEGalaxy.sample(n, rng, m, max_border_sky=None, max_negative_light=None)
    neg = []
    sky, flux, ratio = _sky_values(gals, negative=neg)
    hlr = _sampled_hlr(gals, flux)
    ref = cosmos_reference(data, stamp_pixels=_stamp_pixels(gals))
    mag = magnitudes(flux)
    cat = magnitude_catalog(data)
    d = m.density
    joint = d is not None and "log10_flux" in d.aux_names
    source = "cosmos" if joint and d.magnitude_prior is not None else "training"
    report = {
        "meta": {
            "model": m.file_name,
            "representation": m.representation,
            "joint_density": bool(m.density is not None and m.density.aux_names),
            "n": n,
            "seed": int(seed),
            "data_dir": str(data),
            "zeropoint": ZEROPOINT,
            "galsim_vae_version": __version__,
            # where the sampled magnitudes come from: with "cosmos" they are drawn from this
            # catalog's histogram, so their distance to it is small by construction (sizes and
            # shapes are drawn given them); magnitude_training is the density's own
            "magnitudes": source if joint else None,
        },
        "sky": _sky_summary(sky, flux, ratio),
        "negative_light": _negative_summary(neg),
        "size": _size_summary(hlr, ref, mag, float(np.max(cat))),
        "magnitude": _magnitude_summary(mag, cat),
        "great3": great3_resolution(gals, data, rng),
    }
    report["guard"] = _guard_summary(m, n, seed, ref, cat, float(np.max(cat)), ratio, neg)
    if source == "cosmos":  # the joint density's own magnitudes (fluxes only: no decoding)
        own = m.sample_population(n, as_deviate(int(seed)), magnitude="training")
        report["magnitude_training"] = _magnitude_summary(magnitudes(own["flux"]), cat)
    report["targets"] = _targets(
        report["sky"], report["size"], report["magnitude"], report["great3"]
    )
    if files is not None:
        write_json(files[0], report)
        _plot(gals, flux, hlr, ref, mag, cat, ratio, report, files[1], data)
    return report


def _plot(gals, flux, hlr, ref, mag, cat, ratio, report, path, data_dir):
    """The population figure: three histograms over a gallery (sampled | COSMOS)."""
    from matplotlib.colors import AsinhNorm

    from .plots import _show, _subplots, save

    ncol = 8
    fig, axes = _subplots(
        4,
        ncol,
        figsize=(14, 9.5),
        squeeze=False,
        gridspec_kw={"height_ratios": (1.3, 1, 1, 1), "hspace": 0.45},
    )
    gs = axes[0, 0].get_gridspec()
    for ax in axes[0]:
        ax.remove()
    ah = fig.add_subplot(gs[0, 0:3])
    am = fig.add_subplot(gs[0, 3:6])
    asky = fig.add_subplot(gs[0, 6:8])

    h = hlr[np.isfinite(hlr)]
    # calculateHLR returns pixel radii (steps of ~0.03"): bins wider than that.
    bins = np.arange(0, max(np.percentile(ref["hlr"], 99), h.max() if len(h) else 0) + 0.05, 0.05)
    ah.hist(h, bins, density=True, histtype="step", lw=1.5, label=f"sampled ({len(h)})")
    ah.hist(ref["hlr"], bins, density=True, histtype="step", lw=1.5, label="COSMOS (HST PSF)")
    ah.hist(ref["hlr_stamp"], bins, density=True, histtype="step", ls=":", label="COSMOS in stamp")
    s = report["size"]
    ah.set_title(
        f"hlr: median ratio {s['median_ratio']:.2f}, p90 ratio {s['p90_ratio']:.2f}", fontsize=9
    )
    ah.set_xlabel('half-light radius ["]')
    ah.legend(fontsize=7)

    mg = mag[np.isfinite(mag)]
    lo = min(mg.min() if len(mg) else cat.min(), cat.min())
    hi = max(mg.max() if len(mg) else cat.max(), cat.max())
    bins = np.linspace(lo, hi, 40)
    am.hist(mg, bins, density=True, histtype="step", lw=1.5, label="sampled")
    am.hist(cat, bins, density=True, histtype="step", lw=1.5, label="COSMOS catalog")
    ks = report["magnitude"]["ks_distance"]
    am.set_title("F814W magnitude: KS " + ("n/a" if ks is None else f"{ks:.2f}"), fontsize=9)
    am.set_xlabel("F814W (AB)")
    am.legend(fontsize=7)

    r = ratio[np.isfinite(ratio)]
    rc = np.clip(r, -0.5, 0.5)
    asky.hist(rc, np.linspace(-0.5, 0.5, 51), histtype="step", lw=1.5)
    asky.axvspan(-0.02, 0.02, color="g", alpha=0.2)
    sk = report["sky"]
    asky.set_title(
        f"sky/flux: {100 * sk['frac_beyond_2pct']:.1f}% beyond 2%, "
        f"{100 * sk['frac_negative_flux']:.1f}% negative",
        fontsize=9,
    )
    asky.set_xlabel("sky / flux (clipped to +-0.5)")

    # Gallery: 16 sampled stamps (rows 2-3) and 8 COSMOS galaxies (row 4) on one pixel grid.
    shown = [i for i in range(len(gals)) if flux[i] > 0][: 2 * ncol]
    for k, ax in enumerate(axes[1:3].flat):
        if k < len(shown):
            i = shown[k]
            a = _stamp(gals[i]).array
            _show(ax, a, f'{mag[i]:.1f} mag {hlr[i]:.2f}" sky{100 * ratio[i]:+.0f}%')
            ax.images[0].set_norm(AsinhNorm(linear_width=max(a.max(), 1e-12) * 0.05))
        else:
            ax.axis("off")
    ref_gal = cosmos_parametric(data_dir)
    order = np.argsort(ref["hlr"])  # eight galaxies spread over the size distribution
    pick = order[(np.linspace(0.05, 0.95, ncol) * (len(order) - 1)).astype(int)]
    side = _stamp(gals[shown[0]]).array.shape[0] if shown else ref["stamp_pixels"]
    for ax, k in zip(axes[3], pick):
        a = (
            ref_gal["profiles"][k]
            .drawImage(
                nx=side, ny=side, scale=HST_PIXEL_SCALE, method="no_pixel", use_true_center=False
            )
            .array
        )
        _show(ax, a, f'COSMOS {ref_gal["mag"][k]:.1f} mag, {ref["hlr"][k]:.2f}"')
        ax.images[0].set_norm(AsinhNorm(linear_width=max(a.max(), 1e-12) * 0.05))
    meta = report["meta"]
    fig.suptitle(
        f"{Path(meta['model']).name} ({meta['representation']}): {meta['n']} sampled galaxies "
        f'(seed {meta["seed"]}); stamps {side} px, COSMOS at 0.03"/px (asinh stretch)',
        fontsize=10,
    )
    return save(fig, path)
