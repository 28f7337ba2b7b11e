"""COSMOS-like training galaxies simulated with GalSim from real COSMOS distributions.

The full COSMOS sample cannot be downloaded everywhere, and 100 real galaxies are far too few to
train a VAE. This module draws as many HST-like stamps as needed, each one built from real
measurements:

- structure: the bulge + disk fit (de Vaucouleurs bulge, exponential disk; sizes, axis ratios,
  relative position angle, bulge-to-total flux) of a real COSMOS F814W<23.5 galaxy, picked at
  random from the fit catalogs (``cosmos_fits/real_galaxy_23.5_500_fits.fits`` and
  ``cosmos_23.5_example``), with a random overall rotation and 10% log-normal scatter in size;
- clumps: a random share (0-30%) of the disk flux moved into ``galsim.RandomKnots`` star-forming
  knots that follow the disk;
- structure (``morphology="structured"``, the default; ``"smooth"`` draws the bulge + disk + knots
  galaxies alone, exactly as before): spiral arms, bars, lopsided disks, giant star-forming
  clumps and close companions, each described in :data:`STRUCTURE` with where its numbers come
  from; ``morphology="deep"`` also gives faint disks the shapes, bulge fractions and clumps of
  faint galaxies (:data:`DEEP`);
- flux: the fit's flux, dimmed for half of the galaxies by 0-2.5 magnitudes so that the stamps
  reach the depth of the fainter real samples (``cosmos_btk100`` goes to F814W = 26); dimmed
  galaxies are shrunk along a size-luminosity relation ``r ~ L^0.25``;
- PSF: a real HST/ACS F814W effective PSF, either one of the 56 empirical PSFs of
  ``hst_psf/emp_psf_f814w.fits`` (4x supersampled ACS 0.05" pixels, i.e. 0.0125"/px; the 21
  with large negative lobes are skipped) or a TinyTim PSF of a real COSMOS galaxy;
- noise: COSMOS correlated noise (``acs_I_unrot_sci_20_cf.fits``) at a variance drawn from the
  real catalogs' ``NOISE_VARIANCE`` column;
- pixel scale: the HST 0.03"/px (``scale_mode="fixed"``), or per galaxy (``scale_mode="fit"``):
  0.03"/px where ``fit_radius`` half-light radii (along the major axis, PSF included) fit inside
  the stamp, coarser where they do not. A galaxy drawn at a coarser scale is drawn, and its noise
  added, at 0.03"/px first and then resampled onto the stamp's pixels exactly as a real COSMOS
  postage stamp is (:func:`galsim_vae.pipeline.stamps.real_stamp`), so real and simulated stamps
  share one noise treatment.

Each stamp comes with its truth: the noiseless image (the same galaxy and PSF, resampled the same
way, without noise) and the parameters it was drawn from. The truth's chi2 against the noisy stamp
is the floor any reconstruction can reach.

Every stamp is seeded from ``(seed, index)``: the same seed gives the same set whatever the number
of processes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import galsim
import numpy as np
from astropy.io import fits

from .._utils import check_count
from ..errors import GalSimRangeError, GalSimValueError
from ..psf import F814W_ZEROPOINT, psf_from_image
from ._parallel import item_seed, parallel_map
from .metrics import stamp_metrics
from .stamps import HST_PIXEL_SCALE, check_stamp_geometry

__all__ = [
    "DATA_ENV",
    "STRUCTURE",
    "MORPHOLOGIES",
    "find_shared_data",
    "bulge_disk_hlr",
    "COSMOSLikeSimulator",
    "SimulatedStamps",
    "simulate",
]

#: Environment variable naming the folder of real data (``cosmos_btk100/``, ``cosmos_fits/``, ...).
DATA_ENV = "GALSIM_VAE_DATA"
#: Pixel scale of the empirical PSF cube: ACS/WFC 0.05" pixels supersampled 4 times.
EMP_PSF_SCALE = 0.0125
#: Half-light radius of the HST F814W PSF (arcsec), added in quadrature to a galaxy's for its
#: stamp scale in ``scale_mode="fit"``.
PSF_HLR = 0.04
#: Side (pixels) of the per-stamp PSF images of ``scale_mode="fit"`` sets (unit flux inside).
FIT_PSF_SIZE = 32


def find_shared_data(path=None):
    """The folder holding the real data files (``cosmos_btk100``, ``cosmos_fits``, ``hst_psf``).

    Looked for, in order: ``path``, ``$GALSIM_VAE_DATA``, and ``../shared/data`` above the current
    folder or above this package's source tree.
    """
    if path is not None:
        if (Path(path) / "cosmos_btk100").is_dir():
            return Path(path).resolve()
        raise GalSimValueError("Real data folder not found (no cosmos_btk100/ in it)", str(path))
    candidates = []
    if os.environ.get(DATA_ENV):
        candidates.append(Path(os.environ[DATA_ENV]))
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        candidates += [base / ".." / "shared" / "data", base / "shared" / "data"]
    for c in candidates:
        if (c / "cosmos_btk100").is_dir():
            return c.resolve()
    raise GalSimValueError(
        f"Real data folder not found: pass it or set ${DATA_ENV}", [str(c) for c in candidates]
    )


#: Simulator morphologies: ``"smooth"`` (bulge + disk + knots), ``"structured"`` (plus the
#: structures of :data:`STRUCTURE`) and ``"deep"`` (structured, with the faint-end shapes of
#: :data:`DEEP`).
MORPHOLOGIES = ("smooth", "structured", "deep")

#: The structures of ``morphology="structured"``: how often each appears and its parameter ranges.
#: "Disk galaxies" are those with a bulge-to-total flux ratio below ``max_bulge_fraction``.
#: Each fraction and range is taken from the publication named beside it, except the companions',
#: measured on the real btk100 stamps themselves: the very stamps the simulator is then compared
#: with, so the multimode, M20 and asymmetry it gains from companions are not independent of
#: them. How close the result comes to the real galaxies is measured by ``galsim-vae validate
#: --simulated``
#: (docs/validation/simulator_structured/simulator.md, by ``scripts/compare_simulators.sh``).
STRUCTURE = {
    "max_bulge_fraction": 0.5,
    # Faint galaxies are late types: a galaxy dimmed by d of the simulator's max_dimming
    # magnitudes is redrawn, with probability faint_late_type * d / max_dimming, as a disk galaxy
    # of the fit catalogs (bulge-to-total below max_bulge_fraction) of the same flux, its sizes
    # on the same r ~ L^0.25 relation; its clumpy fraction rises by clumpy_faint_extra * d /
    # max_dimming. Late types and irregulars dominate the counts at I > 24 (Driver et al. 1995,
    # Abraham et al. 1996), where the fit catalogs (F814W < 23.5) hold few of them, and clumpy
    # galaxies are more common at the higher redshifts of fainter galaxies (Guo et al. 2015).
    "faint_late_type": 1.0,
    "clumpy_faint_extra": 0.3,
    # Spiral arms: the disk's light modulated by an m-armed logarithmic spiral,
    # I = I_exp(r) [1 + A (1 - exp(-(r/h)^2)) cos(m (theta - ln(r/h) / tan(pitch)) + phase)].
    # Pitch angles of 10-30 deg span most spiral galaxies (Davis et al. 2014, Yu & Ho 2019);
    # an arm-interarm contrast (1+A)/(1-A) of 1.5-4 in red light (Elmegreen et al. 2011).
    "spiral_fraction": 0.6,
    "arm_pitch_deg": (10.0, 30.0),
    "arm_amplitude": (0.2, 0.6),
    "arm_m_probability": {2: 0.7, 3: 0.2, 4: 0.1},
    # Bars: an n = 0.5 Sersic of axis ratio 0.25-0.45 and half-light radius 0.4-0.8 disk
    # half-light radii holding 5-15% of the galaxy's flux (bar-to-total ~0.1, Gadotti 2011), in
    # 30% of disks (the bar fraction falls from ~65% at z ~ 0.2 to ~20% at z ~ 0.8, Sheth et al.
    # 2008).
    "bar_fraction": 0.3,
    "bar_light": (0.05, 0.15),
    "bar_hlr": (0.4, 0.8),
    "bar_q": (0.25, 0.45),
    # Lopsidedness: the disk (with its arms, bar-free, knots and clumps) shifted from the bulge by
    # A1 disk scale lengths, the first-order m = 1 mode of amplitude A1; A1 exponential with mean
    # 0.1 (mean lopsidedness of disks, Bournaud et al. 2005), in every disk galaxy.
    "lopsided_mean_a1": 0.1,
    # Giant star-forming clumps: 1-4 Gaussian clumps of sigma 0.02-0.05" (0.3-0.7 kpc at
    # z ~ 0.7) each holding 2-8% of the flux, placed like the disk's light (radius ~ Gamma(2, h)),
    # in 30% of disk galaxies (clumpy fractions of 15-55% of star-forming galaxies, Guo et al.
    # 2015).
    "clumpy_fraction": 0.3,
    "clumps": (1, 4),
    "clump_light": (0.02, 0.08),
    "clump_sigma": (0.02, 0.05),
    # Close companions: another galaxy of the fit catalogs, 1-30% of the primary's flux
    # (log-uniform), at 35-95% of the stamp's half-width less a pixel (0.33-0.88" at 0.03"/px).
    # Measured on the 100 real btk100 postage stamps (photutils segmentation at 3 sigma of the
    # smoothed image, 10 pixels): 19% hold a second source above 1% of the central one's flux,
    # at a median 0.5" (10-90%: 0.33-0.76"), 8% above 3% and 3% above 10%.
    "companion_fraction": 0.15,
    "companion_ratio": (0.01, 0.3),
    "companion_separation": (0.35, 0.95),
}


#: What ``morphology="deep"`` adds to ``"structured"``. The fit catalogs stop at F814W = 23.5 and
#: the simulator dims their galaxies by up to ``max_dimming`` magnitudes, but a dimmed bright
#: galaxy keeps a bright galaxy's shape. The F814W < 23.5 shape catalog
#: (``cosmos_fits/real_galaxy_23.5_shapes.fits``, 56,052 galaxies, matched by IDENT to the
#: magnitudes of ``shera_catalog_23.5.fits.gz``) shows that fainter galaxies are flatter: the
#: median distortion of its disk galaxies grows from 0.50 at F814W 21-21.5 to 0.61 at 23-23.5,
#: and ``ln(1 - e)`` of the medians falls linearly with magnitude, by 0.13 per magnitude
#: (projected axis ratios of faint, low-mass star-forming galaxies are low: van der Wel et al.
#: 2014). So in a deep set every disk galaxy (bulge-to-total below
#: ``STRUCTURE["max_bulge_fraction"]``) fainter than ``faint_mag`` after dimming takes its disk
#: axis ratio and bulge-to-total ratio from one of the catalog's disk galaxies of magnitude
#: ``faint_mag`` to 23.5, and beyond their median magnitude its ``1 - e`` shrinks by that
#: trend, fitted to the catalog's medians in 0.5-magnitude bins from ``trend_from_mag`` to 23.5
#: when the simulator is built. Past 23.5 this is an extrapolation of the measured trend,
#: checked only by the comparison with the real galaxies (``galsim-vae validate
#: --simulated``). The catalog's bulge-to-total ratio is ~0 for
#: its rows measured with one Sersic component (``do_meas`` 0: 57% of the disks at 23-23.5, 45%
#: at 21-21.5), so most faint disks become pure disks; among the two-component rows B/T hardly
#: changes with magnitude (median 0.22 at 21-21.5, 0.19 at 23-23.5).
#:
#: Faint disk galaxies are also clumpier: a deep set's disk galaxy fainter than ``faint_mag`` is
#: clumpy with probability ``faint_clumpy_fraction``, with ``faint_clumps`` clumps holding
#: together the sum of as many draws of ``faint_clump_light`` (split among them by further draws
#: of that range), in place of the structured set's clumps; the other faint disks keep the
#: structured set's clumps (30% of disks plus 30% at the faintest, 2-8% each), so 72-84% of faint
#: disks are clumpy in all. Guo et al. (2015)
#: count a clump when it holds more than 8% of a galaxy's rest-frame UV light, which F814W samples
#: at z > 1, and find 60% of low-mass star-forming galaxies clumpy at 0.5 < z < 3; together the
#: clumps of z ~ 2 galaxies hold ~20% of the light (Guo et al. 2012).
DEEP = {
    "faint_mag": 23.0,
    "trend_from_mag": 21.0,
    "min_disk_q": 0.1,
    "faint_clumpy_fraction": 0.6,
    "faint_clumps": (1, 3),
    "faint_clump_light": (0.08, 0.2),
}


class _FaintShapes(NamedTuple):
    #: distortions of the faint disk galaxies.
    e: np.ndarray
    #: their bulge-to-total flux ratios.
    bulge_fraction: np.ndarray
    #: their median magnitude, where the trend starts.
    pivot_mag: float
    #: d ln(1 - e) / d mag of the medians (negative: fainter is flatter).
    slope: float

    def draw(self, u, mag):
        """The disk axis ratio and bulge-to-total ratio of faint disk galaxy ``int(u * n)``,
        its shape carried to magnitude ``mag`` by the trend."""
        k = min(int(u * len(self.e)), len(self.e) - 1)
        one_minus_e = (1 - self.e[k]) * np.exp(self.slope * max(mag - self.pivot_mag, 0.0))
        q = np.sqrt(one_minus_e / (2 - one_minus_e))
        return float(max(q, DEEP["min_disk_q"])), float(self.bulge_fraction[k])


def _faint_disk_shapes(data_dir, max_bulge_fraction):
    """The faint-end disk shapes of the F814W < 23.5 shape catalog and their magnitude trend."""
    files = (
        data_dir / "cosmos_fits" / "real_galaxy_23.5_shapes.fits",
        data_dir / "cosmos_fits" / "shera_catalog_23.5.fits.gz",
    )
    for f in files:
        if not f.is_file():
            raise GalSimValueError('morphology="deep" needs the COSMOS shape catalogs', str(f))
    with fits.open(files[0]) as h:
        s = h[1].data
        ident, e1, e2, bt, meas = (
            np.asarray(s[c]) for c in ("IDENT", "e1", "e2", "bulge_tot", "do_meas")
        )
    with fits.open(files[1]) as h:
        m = h[1].data
        mident, mag = np.asarray(m["IDENT"]), np.asarray(m["F814W"], dtype=float)
    _, ia, ib = np.intersect1d(ident, mident, return_indices=True)
    e = np.hypot(e1[ia], e2[ia]).astype(float)
    mag = mag[ib]
    disk = (meas[ia] >= 0) & np.isfinite(e) & (e < 1) & (bt[ia] < max_bulge_fraction)
    faint = disk & (mag >= DEEP["faint_mag"]) & (mag < 23.5)
    if faint.sum() < 100:
        raise GalSimValueError("too few faint disk galaxies in the shape catalog", int(faint.sum()))
    centres, logs = [], []
    for lo in np.arange(DEEP["trend_from_mag"], 23.5, 0.5):
        k = disk & (mag >= lo) & (mag < lo + 0.5)
        if k.sum() >= 100:
            centres.append(np.median(mag[k]))
            logs.append(np.log(1 - np.median(e[k])))
    if len(centres) < 2:
        raise GalSimValueError("too few magnitude bins for the shape trend", len(centres))
    slope = float(np.polyfit(centres, logs, 1)[0])
    return _FaintShapes(
        e[faint], np.asarray(bt[ia], dtype=float)[faint], float(np.median(mag[faint])), slope
    )


def _spiral_disk(hlr, flux, m, pitch_deg, amplitude, phase, gsparams):
    """A face-on exponential disk of half-light radius ``hlr`` with ``m`` logarithmic spiral arms,
    drawn on a grid of a sixth of its scale length out to 7 scale lengths, as an
    ``InterpolatedImage`` of total ``flux``."""
    h = hlr / 1.6783469900166608  # exponential scale length
    dx = h / 6
    n = 2 * int(np.ceil(7 * h / dx)) + 1
    x = (np.arange(n) - n // 2) * dx
    xx, yy = np.meshgrid(x, x)
    r = np.hypot(xx, yy)
    theta = np.arctan2(yy, xx)
    with np.errstate(divide="ignore"):
        wind = np.where(r > 0, np.log(np.maximum(r, 1e-12) / h) / np.tan(np.radians(pitch_deg)), 0)
    arms = 1 + amplitude * (1 - np.exp(-((r / h) ** 2))) * np.cos(m * (theta - wind) + phase)
    img = np.exp(-r / h) * arms
    return galsim.InterpolatedImage(
        galsim.Image(img / img.sum(), scale=dx), flux=flux, gsparams=gsparams
    )


def _bulge_disk(row, rot, size):
    """The bulge and disk parameters of fit-catalog ``row``, turned by ``rot`` (radians) and
    scaled in size by ``size``."""
    fd, hd, qd, pd, fb, hb, qb, pb = row
    return {
        "bulge_fraction": float(fb / (fd + fb)),
        "disk_hlr": float(hd * size),
        "disk_q": float(qd),
        "disk_beta": float(np.degrees(pd + rot) % 180),
        "bulge_hlr": float(hb * size),
        "bulge_q": float(qb),
        "bulge_beta": float(np.degrees(pb + rot) % 180),
    }


def _uniform(ud, lo_hi):
    lo, hi = lo_hi
    return lo + (hi - lo) * ud()


# Rendering accuracy for the training stamps: GalSim's defaults, with FFTs capped so that a rare
# extreme profile raises instead of eating the machine's memory.
_GSP = galsim.GSParams(folding_threshold=1e-2, maximum_fft_size=4096)


def bulge_disk_hlr(bulge_fraction, bulge_hlr, disk_hlr):
    """Half-light radius of a circular de Vaucouleurs bulge + exponential disk, arcsec.

    The radius where the enclosed flux of the two circularised components reaches one half,
    solved with ``scipy.optimize.brentq`` on the Sersic enclosed-flux function
    ``P(2n, b_n (r/r_e)^(1/n))``.
    """
    from scipy.optimize import brentq
    from scipy.special import gammainc, gammaincinv

    def enclosed(r, n, re):
        return gammainc(2 * n, gammaincinv(2 * n, 0.5) * (r / re) ** (1 / n))

    def f(r):
        return (
            bulge_fraction * enclosed(r, 4.0, bulge_hlr)
            + (1 - bulge_fraction) * enclosed(r, 1.0, disk_hlr)
            - 0.5
        )

    lo, hi = min(bulge_hlr, disk_hlr), max(bulge_hlr, disk_hlr)
    if hi - lo < 1e-12 or f(lo) >= 0:
        return float(lo)
    if f(hi) <= 0:
        return float(hi)
    return float(brentq(f, lo, hi, xtol=1e-6))


def _fit_rows(data_dir):
    """Bulge+disk parameters of the real COSMOS fits, one row per usable galaxy."""
    files = [
        data_dir / "cosmos_fits" / "real_galaxy_23.5_500_fits.fits",
        data_dir / "cosmos_23.5_example" / "real_galaxy_catalog_23.5_example_fits.fits",
    ]
    rows = []
    for f in files:
        if not f.is_file():
            continue
        with fits.open(f) as h:
            t = h[1].data
            b = np.asarray(t["bulgefit"], dtype=float)
            status = np.asarray(t["fit_status"])
        disk = _sersic_flux_hlr(b[:, 0:8])
        bulge = _sersic_flux_hlr(b[:, 8:16])
        ok = (status[:, 4 if status.shape[1] > 4 else 0] > 0) if status.ndim == 2 else status > 0
        ok &= np.isfinite(disk[0]) & np.isfinite(bulge[0]) & (disk[0] > 0) & (bulge[0] >= 0)
        ok &= (b[:, 3] > 0.05) & (b[:, 11] > 0.05) & (disk[1] > 0.01) & (bulge[1] > 0.005)
        # Galaxies much larger than a 64 x 0.03" stamp are removed by the flux-fraction cut anyway;
        # dropping them here keeps the FFTs small.
        ok &= (disk[1] < 1.5) & (bulge[1] < 1.0)
        for i in np.flatnonzero(ok):
            rows.append(
                (
                    disk[0][i],
                    disk[1][i],
                    min(max(b[i, 3], 0.1), 1.0),
                    b[i, 7],
                    bulge[0][i],
                    bulge[1][i],
                    min(max(b[i, 11], 0.2), 1.0),
                    b[i, 15],
                )
            )
    if not rows:
        raise GalSimValueError("No usable COSMOS bulge+disk fits found", [str(f) for f in files])
    return np.array(rows)


def _sersic_flux_hlr(p):
    """Flux and circularised half-light radius (arcsec) from COSMOS ``sersicfit``-style rows."""
    from scipy.special import gamma, gammaincinv

    ie, re, n, q = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
    with np.errstate(all="ignore"):
        bn = gammaincinv(2 * n, 0.5)
        flux = 2 * np.pi * n * np.exp(bn) * gamma(2 * n) / bn ** (2 * n) * ie * re**2 * q
        hlr = re * HST_PIXEL_SCALE * np.sqrt(q)
    return flux, hlr


def _psf_library(data_dir, stamp_scale, size=48):
    """Real HST PSF images, redrawn at ``stamp_scale`` with unit flux."""
    imgs = []
    emp = data_dir / "hst_psf" / "emp_psf_f814w.fits"
    if emp.is_file():
        cube = fits.getdata(emp).astype(float)
        for p in cube:
            # About a third of the cube's PSFs hold large negative lobes (down to -60% of the
            # peak): they are not usable as PSFs and are skipped.
            if p.min() >= -0.01 * p.max():
                imgs.append(galsim.Image(p, scale=EMP_PSF_SCALE))
    for cat in (
        "cosmos_btk100/real_galaxy_PSF_images_extension.fits",
        "cosmos_23.5_example/real_galaxy_PSF_images.fits",
    ):
        f = data_dir / cat
        if f.is_file():
            with fits.open(f) as h:
                for hdu in h:
                    if hdu.data is not None:
                        imgs.append(galsim.Image(hdu.data.astype(float), scale=HST_PIXEL_SCALE))
    if not imgs:
        raise GalSimValueError("No HST PSF images found", str(data_dir))
    out = []
    for im in imgs:
        out.append(
            psf_from_image(im)
            .drawImage(
                nx=size, ny=size, scale=stamp_scale, method="no_pixel", use_true_center=False
            )
            .array
        )
    return np.array(out, dtype=np.float32)


def _noise_variances(data_dir):
    var = []
    for cat in (
        "cosmos_btk100/real_galaxy_catalog_26_extension_example.fits",
        "cosmos_23.5_example/real_galaxy_catalog_23.5_example.fits",
    ):
        f = data_dir / cat
        if f.is_file():
            var.append(np.asarray(fits.getdata(f, 1)["NOISE_VARIANCE"], dtype=float))
    if not var:
        raise GalSimValueError("No real noise variances found", str(data_dir))
    return np.concatenate(var)


#: F814W magnitude where the shape and fit catalogs end: the simulator's galaxies past it are
#: dimmed catalog galaxies, whose sizes :class:`COSMOSLikeSimulator`'s ``faint_size_slope``
#: calibrates.
FAINT_SIZE_PIVOT = 23.5


class COSMOSLikeSimulator:
    """Draws COSMOS-like HST F814W stamps (see the module docstring for what goes in).

    Parameters:
        data_dir: folder of the real data; found with :func:`find_shared_data` when None.
            [default: None]
        stamp_size: side of the stamps in pixels. [default: 64]
        pixel_scale: arcsec per pixel. [default: 0.03]
        max_knot_fraction: largest share of the disk flux put in knots. [default: 0.3]
        faint_fraction: share of galaxies dimmed by up to ``max_dimming`` mag. [default: 0.5]
        max_dimming: largest dimming in magnitudes. [default: 2.5]
        size_scatter: log-normal scatter of the sizes, in dex/ln units. [default: 0.1]
        scale_mode: ``"fixed"`` (every stamp at ``pixel_scale``) or ``"fit"`` (``pixel_scale``
            or coarser, per galaxy; see the module docstring). [default: "fixed"]
        fit_radius: in ``"fit"`` mode, how many half-light radii (major axis, PSF included) the
            stamp's half-width holds at least. 4.5 holds more than 99% of an exponential disk's
            light. [default: 4.5]
        morphology: ``"structured"`` (arms, bars, lopsided disks, giant clumps and companions
            added, see :data:`STRUCTURE`) or ``"smooth"`` (bulge + disk + knots only; the
            training set of the v2 model). [default: "structured"]
        faint_size_slope: dex per magnitude by which a galaxy dimmed past
            :data:`FAINT_SIZE_PIVOT` (F814W 23.5, where the shape and fit catalogs end) is made
            smaller than the r ~ L^0.25 of the dimming gives, for the part of its magnitude past
            the pivot: its sizes times ``10**(-faint_size_slope * (mag - 23.5))``. 0 leaves
            them as they were; ``scripts/calibrate_faint_sizes.py`` measures it on the real
            btk100 galaxies (0.076, docs/data.md). [default: 0]
    """

    def __init__(
        self,
        data_dir=None,
        *,
        stamp_size=64,
        pixel_scale=HST_PIXEL_SCALE,
        max_knot_fraction=0.3,
        faint_fraction=0.5,
        max_dimming=2.5,
        size_scatter=0.1,
        scale_mode="fixed",
        fit_radius=4.5,
        morphology="structured",
        faint_size_slope=0.0,
    ):
        check_stamp_geometry(stamp_size, pixel_scale, scale_mode)
        if not (np.isfinite(faint_size_slope) and 0 <= faint_size_slope <= 1):
            raise GalSimRangeError(
                "faint_size_slope must be in [0, 1] dex per magnitude", faint_size_slope, 0, 1
            )
        if morphology not in MORPHOLOGIES:
            raise GalSimValueError("Unknown morphology", morphology, MORPHOLOGIES)
        self._faint = None
        if not fit_radius > 0:
            raise GalSimRangeError("fit_radius must be positive", fit_radius, 0)
        if not 0 <= max_knot_fraction < 1:
            raise GalSimRangeError("max_knot_fraction must be in [0, 1)", max_knot_fraction, 0, 1)
        if not 0 <= faint_fraction <= 1:
            raise GalSimRangeError("faint_fraction must be in [0, 1]", faint_fraction, 0, 1)
        self.data_dir = find_shared_data(data_dir)
        self.stamp_size = int(stamp_size)
        self.pixel_scale = float(pixel_scale)
        self.max_knot_fraction = float(max_knot_fraction)
        self.faint_fraction = float(faint_fraction)
        self.max_dimming = float(max_dimming)
        self.size_scatter = float(size_scatter)
        self.scale_mode = scale_mode
        self.fit_radius = float(fit_radius)
        self.morphology = morphology
        self.faint_size_slope = float(faint_size_slope)
        self.fits = _fit_rows(self.data_dir)
        bt = self.fits[:, 4] / (self.fits[:, 0] + self.fits[:, 4])
        self._disk_rows = np.flatnonzero(bt < STRUCTURE["max_bulge_fraction"])
        if morphology == "deep":
            self._faint = _faint_disk_shapes(self.data_dir, STRUCTURE["max_bulge_fraction"])
        self.psfs = _psf_library(self.data_dir, self.pixel_scale)
        self.variances = _noise_variances(self.data_dir)
        self._psf_objs = [
            psf_from_image(p, self.pixel_scale, use_true_center=False) for p in self.psfs
        ]
        cf = self.data_dir / "cosmos_btk100" / "acs_I_unrot_sci_20_cf.fits"
        if not cf.is_file():
            raise GalSimValueError("COSMOS noise correlation file not found", str(cf))
        self._noise = galsim.getCOSMOSNoise(file_name=str(cf), cosmos_scale=HST_PIXEL_SCALE)

    def config(self):
        """The simulator's settings, as stored with a dataset."""
        return {
            "stamp_size": self.stamp_size,
            "pixel_scale": self.pixel_scale,
            "max_knot_fraction": self.max_knot_fraction,
            "faint_fraction": self.faint_fraction,
            "max_dimming": self.max_dimming,
            "size_scatter": self.size_scatter,
            "scale_mode": self.scale_mode,
            "fit_radius": self.fit_radius,
            "morphology": self.morphology,
            "faint_size_slope": self.faint_size_slope,
            "faint_size_pivot": FAINT_SIZE_PIVOT,
            "n_fit_rows": len(self.fits),
            "n_psfs": len(self.psfs),
            **(
                {}
                if self._faint is None
                else {
                    "deep_pivot_mag": self._faint.pivot_mag,
                    "deep_shape_slope": self._faint.slope,
                }
            ),
        }

    def draw_params(self, ud):
        """Random galaxy parameters from a ``galsim.UniformDeviate``."""
        gd = galsim.GaussianDeviate(ud)
        row = self.fits[int(ud() * len(self.fits))]
        fd, hd, qd, pd, fb, hb, qb, pb = row
        rot = ud() * np.pi
        dim = self.max_dimming * ud() if ud() < self.faint_fraction else 0.0
        # Fainter galaxies are smaller: sizes follow r ~ L^0.25 under the dimming, and past the
        # catalogs' F814W 23.5 by faint_size_slope more (no random draw: the other parameters of
        # a seed are the same whatever the slope).
        scale = np.exp(self.size_scatter * gd()) * 10 ** (-0.1 * dim)
        total = (fd + fb) * 10 ** (-0.4 * dim)
        if self.faint_size_slope > 0 and total > 0:
            past = F814W_ZEROPOINT - 2.5 * np.log10(total) - FAINT_SIZE_PIVOT
            scale *= 10 ** (-self.faint_size_slope * max(past, 0.0))
        p = {
            "flux_true": float(total),
            **_bulge_disk(row, rot, scale),
            "knot_fraction": float(self.max_knot_fraction * ud()),
            "n_knots": int(10 + 50 * ud()),
            "psf_index": int(ud() * len(self.psfs)),
            "noise_variance": float(self.variances[int(ud() * len(self.variances))]),
            "dimming_mag": float(dim),
        }
        if self.morphology in ("structured", "deep"):
            # Drawn after the smooth parameters, so that a smooth set's galaxies are unchanged.
            p.update(self._structure_params(ud, dict(p, _row_disk_hlr=float(hd))))
        if self.morphology == "deep":
            # Drawn last, so that a deep set's parameters differ from the structured set of its seed
            # only here (its knots and noise, drawn later from the same generator, differ too).
            p["faint_disk_shape"] = p["faint_clumps"] = 0
            mag = F814W_ZEROPOINT - 2.5 * np.log10(max(p["flux_true"], 1e-30))
            u, uc = ud(), ud()
            if p["bulge_fraction"] < STRUCTURE["max_bulge_fraction"] and mag > DEEP["faint_mag"]:
                p["disk_q"], p["bulge_fraction"] = self._faint.draw(u, mag)
                p["faint_disk_shape"] = 1
                if uc < DEEP["faint_clumpy_fraction"]:
                    lo, hi = DEEP["faint_clumps"]
                    nc = lo + int((hi - lo + 1) * ud())
                    p["n_clumps"] = int(nc)
                    p["clump_light"] = float(
                        sum(_uniform(ud, DEEP["faint_clump_light"]) for _ in range(nc))
                    )
                    p["clump_seed"] = int(ud() * 2**31)
                    p["faint_clumps"] = 1
        return p

    def _structure_params(self, ud, p):
        S = STRUCTURE
        faint = p["dimming_mag"] / self.max_dimming if self.max_dimming > 0 else 0.0
        late = {"late_type_redraw": 0}
        if faint > 0 and ud() < S["faint_late_type"] * faint:
            row = self.fits[self._disk_rows[int(ud() * len(self._disk_rows))]]
            rot = ud() * np.pi
            # The same flux, on the same r ~ L^0.25 relation as the dimming (and its scatter).
            scatter = p["disk_hlr"] / (p["_row_disk_hlr"] * 10 ** (-0.1 * p["dimming_mag"]))
            size = scatter * (p["flux_true"] / (row[0] + row[4])) ** 0.25
            late = {"late_type_redraw": 1, **_bulge_disk(row, rot, size)}
        disky = late.get("bulge_fraction", p["bulge_fraction"]) < S["max_bulge_fraction"]
        out = dict.fromkeys(
            (
                "arm_amplitude",
                "arm_pitch_deg",
                "arm_phase",
                "bar_light",
                "bar_hlr",
                "bar_q",
                "bar_beta",
                "lopsided_a1",
                "lopsided_angle",
                "clump_light",
                "companion_ratio",
                "companion_separation",
                "companion_angle",
            ),
            0.0,
        )
        out.update(arm_m=0, n_clumps=0, clump_seed=0, companion_row=-1)
        if disky and ud() < S["spiral_fraction"]:
            u, m = ud(), 2
            for k, pk in S["arm_m_probability"].items():
                m = k
                if u < pk:
                    break
                u -= pk
            out.update(
                arm_m=int(m),
                arm_amplitude=_uniform(ud, S["arm_amplitude"]),
                arm_pitch_deg=_uniform(ud, S["arm_pitch_deg"]),
                arm_phase=2 * np.pi * ud(),
            )
        if disky and ud() < S["bar_fraction"]:
            out.update(
                bar_light=_uniform(ud, S["bar_light"]),
                bar_hlr=_uniform(ud, S["bar_hlr"]) * p["disk_hlr"],
                bar_q=_uniform(ud, S["bar_q"]),
                bar_beta=180 * ud(),
            )
        if disky:
            out.update(
                lopsided_a1=-S["lopsided_mean_a1"] * np.log(1 - ud()),
                lopsided_angle=360 * ud(),
            )
        if disky and ud() < S["clumpy_fraction"] + S["clumpy_faint_extra"] * faint:
            lo, hi = S["clumps"]
            nc = lo + int((hi - lo + 1) * ud())
            out.update(
                n_clumps=nc,
                clump_light=sum(_uniform(ud, S["clump_light"]) for _ in range(nc)),
                clump_seed=int(ud() * 2**31),
            )
        if ud() < S["companion_fraction"]:
            lo, hi = np.log(S["companion_ratio"])
            out.update(
                companion_row=int(ud() * len(self.fits)),
                companion_ratio=float(np.exp(lo + (hi - lo) * ud())),
                companion_separation=_uniform(ud, S["companion_separation"]),
                companion_angle=360 * ud(),
            )
        out = {k: (float(v) if isinstance(v, float) else int(v)) for k, v in out.items()}
        return {**late, **out}

    def components(self, p, rng):
        """The parts of galaxy ``p``, PSF-free: ``(smooth, compact, companion)``.

        ``smooth`` is the bulge and the disk (with its arms and bar in a structured set);
        ``compact`` the knots and giant clumps, or None; ``companion`` the close companion of a
        structured set, or None. The first two make the galaxy whose true flux, size and flux
        fraction the table records.
        """
        total = p["flux_true"]
        bulge = galsim.DeVaucouleurs(
            half_light_radius=p["bulge_hlr"], flux=total * p["bulge_fraction"], gsparams=_GSP
        )
        bulge = bulge.shear(q=p["bulge_q"], beta=p["bulge_beta"] * galsim.degrees)
        fdisk = total * (1 - p["bulge_fraction"])
        disk_shear = galsim.Shear(q=p["disk_q"], beta=p["disk_beta"] * galsim.degrees)
        structured = "arm_m" in p
        bar = clumps = companion = None
        shift = galsim.PositionD(0, 0)
        if structured:
            # Bar and clump light come out of the disk, at most 60% of it.
            want = total * (p["bar_light"] + p["clump_light"])
            take = min(1.0, 0.6 * fdisk / want) if want > 0 else 0.0
            fbar, fclump = total * p["bar_light"] * take, total * p["clump_light"] * take
            fdisk -= fbar + fclump
            h = p["disk_hlr"] / 1.6783469900166608
            a = np.radians(p["lopsided_angle"])
            shift = galsim.PositionD(
                p["lopsided_a1"] * h * np.cos(a), p["lopsided_a1"] * h * np.sin(a)
            )
            if fbar > 0:
                bar = (
                    galsim.Sersic(0.5, half_light_radius=p["bar_hlr"], flux=fbar, gsparams=_GSP)
                    .shear(q=p["bar_q"], beta=p["bar_beta"] * galsim.degrees)
                    .shear(disk_shear)
                )
            if fclump > 0:
                clumps = self._clumps(p, fclump, disk_shear, h).shift(shift)
            if p["companion_row"] >= 0:
                companion = self._companion(p)
        fk = p["knot_fraction"]
        if structured and p["arm_m"] > 0:
            disk = _spiral_disk(
                p["disk_hlr"],
                fdisk * (1 - fk),
                p["arm_m"],
                p["arm_pitch_deg"],
                p["arm_amplitude"],
                p["arm_phase"],
                _GSP,
            )
        else:
            disk = galsim.Exponential(
                half_light_radius=p["disk_hlr"], flux=fdisk * (1 - fk), gsparams=_GSP
            )
        disk = disk.shear(disk_shear).shift(shift)
        knots = None
        if fk > 0:
            knots = (
                galsim.RandomKnots(
                    p["n_knots"],
                    half_light_radius=p["disk_hlr"],
                    flux=fdisk * fk,
                    rng=rng,
                    gsparams=_GSP,
                )
                .shear(disk_shear)
                .shift(shift)
            )
        compact = [c for c in (knots, clumps) if c is not None]
        compact = None if not compact else compact[0] if len(compact) == 1 else galsim.Add(compact)
        smooth = galsim.Add([c for c in (bulge, disk, bar) if c is not None])
        return smooth, compact, companion

    def _clumps(self, p, flux, disk_shear, h):
        """Giant clumps placed like the disk's light (radius ~ Gamma(2, h)), projected."""
        rs = np.random.default_rng(p["clump_seed"])
        nc = p["n_clumps"]
        w = rs.uniform(
            *DEEP["faint_clump_light"] if p.get("faint_clumps") else STRUCTURE["clump_light"], nc
        )
        r = rs.gamma(2.0, h, nc)
        phi = rs.uniform(0, 2 * np.pi, nc)
        xy = disk_shear.getMatrix() @ np.vstack([r * np.cos(phi), r * np.sin(phi)])
        sig = rs.uniform(*STRUCTURE["clump_sigma"], nc)
        return galsim.Add(
            [
                galsim.Gaussian(sigma=sig[k], flux=flux * w[k] / w.sum(), gsparams=_GSP).shift(
                    xy[0, k], xy[1, k]
                )
                for k in range(nc)
            ]
        )

    def _companion(self, p):
        """The close companion: a bulge + disk of the fit catalogs at ``companion_ratio`` of the
        primary's flux (its sizes following r ~ L^0.25 to that flux), at ``companion_separation``
        of the stamp's half-width."""
        fd, hd, qd, pd, fb, hb, qb, pb = self.fits[p["companion_row"]]
        flux = p["companion_ratio"] * p["flux_true"]
        size = float(np.clip((flux / (fd + fb)) ** 0.25, 0.3, 1.5))
        rot = np.radians(p["companion_angle"]) * 2.0  # its orientation, tied to its direction
        parts = [
            galsim.Exponential(
                half_light_radius=hd * size, flux=flux * fd / (fd + fb), gsparams=_GSP
            ).shear(q=qd, beta=(pd + rot) * galsim.radians),
            galsim.DeVaucouleurs(
                half_light_radius=hb * size, flux=flux * fb / (fd + fb), gsparams=_GSP
            ).shear(q=qb, beta=(pb + rot) * galsim.radians),
        ]
        sep = p["companion_separation"] * (self.stamp_size / 2 - 1) * self.stamp_scale(p)
        a = np.radians(p["companion_angle"])
        return galsim.Add(parts).shift(sep * np.cos(a), sep * np.sin(a))

    def galaxy(self, p, rng):
        """The noiseless, PSF-free galaxy of parameters ``p`` (with its companion) as one
        GSObject."""
        return galsim.Add([c for c in self.components(p, rng) if c is not None])

    def reach(self, p):
        """Radius (arcsec) a stamp of galaxy ``p`` must reach: ``fit_radius`` PSF-convolved
        half-light radii along the major axis."""
        bt = p["bulge_fraction"]
        hlr = bulge_disk_hlr(bt, p["bulge_hlr"], p["disk_hlr"])
        q = (1 - bt) * p["disk_q"] + bt * p["bulge_q"]
        return float(self.fit_radius * np.hypot(hlr / np.sqrt(q), PSF_HLR))

    def stamp_scale(self, p):
        """Pixel scale (arcsec) of the stamp of galaxy ``p``: see ``scale_mode``."""
        if self.scale_mode == "fixed":
            return self.pixel_scale
        return max(self.pixel_scale, self.reach(p) / (self.stamp_size / 2 - 1))

    def _draw_clean(self, p, psf, rng, n, scale):
        """The noiseless stamp and the galaxy's own part of it (without the companion)."""
        # Each part is drawn on its own: in one sum the knots' k-space grid would be set by the
        # smooth part's wide wings, and point sources are costly to evaluate on a large grid.
        clean = own = None
        smooth, compact, companion = self.components(p, rng)
        for part in (smooth, compact, companion):
            if part is None:
                continue
            if part is companion:
                own = clean.copy()  # the parts drawn so far: the galaxy alone
            im = galsim.Convolve(part, psf).drawImage(
                nx=n, ny=n, scale=scale, method="no_pixel", use_true_center=False
            )
            clean = im if clean is None else clean + im
        return clean, (clean if own is None else own)

    def stamp(self, index, seed):
        """Stamp ``index`` of the set seeded by ``seed``: image, truth, PSF and table row.

        Returns:
            dict: ``image`` (noisy) and ``truth`` (noiseless), float32 ``(S, S)`` arrays in
            flux units; ``psf``, the stamp's PSF at its scale (``"fit"`` mode) or None (the
            PSF is row ``psf_index`` of the simulator's library); ``row``, the table row.
        """
        rng = galsim.BaseDeviate(item_seed(seed, index))
        ud = galsim.UniformDeviate(rng)
        p = self.draw_params(ud)
        psf = self._psf_objs[p["psf_index"]]
        n, native = self.stamp_size, self.pixel_scale
        s = self.stamp_scale(p)
        noise = self._noise.withVariance(p["noise_variance"]).copy(rng=rng)
        psf_img = None
        if s <= native:
            clean, own = self._draw_clean(p, psf, rng, n, native)
            img = clean.copy()
            img.addNoise(noise)
            if self.scale_mode == "fit":  # one PSF image per stamp, the library's cropped
                c = (self.psfs.shape[1] - FIT_PSF_SIZE) // 2
                psf_img = self.psfs[p["psf_index"], c : c + FIT_PSF_SIZE, c : c + FIT_PSF_SIZE]
        else:
            # As a real postage stamp: drawn and made noisy at 0.03"/px, then resampled.
            n0 = 2 * int(np.ceil(0.5 * n * s / native)) + 8
            clean0, own0 = self._draw_clean(p, psf, rng, n0, native)
            noisy0 = clean0.copy()
            noisy0.addNoise(noise)
            clean, img = (resample(im, n, s) for im in (clean0, noisy0))
            own = clean if own0 is clean0 else resample(own0, n, s)
            psf_img = resample(
                psf.drawImage(nx=48, ny=48, scale=native, method="no_pixel", use_true_center=False),
                FIT_PSF_SIZE,
                s,
            ).array.astype(np.float32)
        if psf_img is not None:  # cut at FIT_PSF_SIZE pixels: unit flux inside
            psf_img = (psf_img / psf_img.sum()).astype(np.float32)
        hlr = bulge_disk_hlr(p["bulge_fraction"], p["bulge_hlr"], p["disk_hlr"])
        arr = img.array.astype(np.float32)
        row = {
            "ident": int(index),
            "source": "simulated",
            "pixel_scale": s,
            "flux_total": p["flux_true"],
            # The galaxy's own light in the stamp (a companion's is not counted).
            "flux_fraction": float(own.array.sum() / p["flux_true"]),
            "original_size": n if s <= native else n0,
            "catalog_noise_variance": p["noise_variance"],
            "flux": float(arr.sum()),
            "hlr": float(hlr),
        }
        row.update(stamp_metrics(arr))
        row["width_arcsec"] = row["width_pix"] * s
        row.update(p)
        return {"image": arr, "truth": clean.array.astype(np.float32), "psf": psf_img, "row": row}


def resample(image, n, scale):
    """A 0.03"/px image resampled onto an ``n x n`` grid of ``scale`` arcsec/px, as real stamps
    are: quintic interpolation, then integration over the new, larger pixel."""
    ii = galsim.InterpolatedImage(image, x_interpolant="quintic", use_true_center=False)
    return ii.drawImage(nx=n, ny=n, scale=scale, method="auto", use_true_center=False)


class _SimWorker:
    def __init__(self, kwargs, seed):
        self.sim = COSMOSLikeSimulator(**kwargs)
        self.seed = seed

    def __call__(self, i):
        return self.sim.stamp(i, self.seed)


class SimulatedStamps(NamedTuple):
    """What :func:`simulate` returns."""

    #: ``(n, S, S)`` float32 noisy stamps, flux units.
    images: np.ndarray
    #: PSF images: the simulator's library (``"fixed"``; rows point into it by ``psf_index``) or
    #: one per stamp (``"fit"``; ``psf_index`` is the row).
    psfs: np.ndarray
    #: one dict per stamp: metrics and true parameters.
    rows: list
    #: the :class:`COSMOSLikeSimulator` that drew them.
    simulator: COSMOSLikeSimulator
    #: ``(n, S, S)`` float32 noiseless stamps (the truths).
    truths: np.ndarray


def simulate(n, *, seed=1234, data_dir=None, nproc=None, progress=True, start=0, **kwargs):
    """``n`` simulated stamps seeded by ``seed``, with their truths.

    Parameters:
        n: number of stamps.
        seed: the set's seed; stamp ``i`` depends only on ``(seed, i)``. [default: 1234]
        data_dir: real data folder (see :func:`find_shared_data`). [default: None]
        nproc: processes; all cores when None. [default: None]
        progress: show a progress bar. [default: True]
        start: index of the first stamp (to extend a set). [default: 0]
        **kwargs: passed to :class:`COSMOSLikeSimulator`.

    Returns:
        SimulatedStamps: ``(images, psfs, rows, simulator, truths)``.
    """
    n = check_count(n)
    sim = COSMOSLikeSimulator(data_dir, **kwargs)
    kw = dict(kwargs, data_dir=sim.data_dir)
    res = parallel_map(
        _SimWorker,
        (kw, seed),
        range(start, start + n),
        nproc=nproc,
        chunk=32,
        desc="simulating",
        progress=progress,
    )
    images = np.stack([r.pop("image") for r in res])
    truths = np.stack([r.pop("truth") for r in res])
    rows = [r["row"] for r in res]
    if sim.scale_mode == "fit":
        psfs = np.stack([r["psf"] for r in res])
        for k, r in enumerate(rows):
            r["psf_library_index"], r["psf_index"] = r["psf_index"], k
    else:
        psfs = sim.psfs
    return SimulatedStamps(images, psfs, rows, sim, truths)
