"""Stamp quality metrics, filtering and [0, 1] normalisation (Danilov 2020, sections 1.2 and 2).

Definitions, for a square stamp ``I`` of side ``N`` pixels (N divisible by 8 and by 4):

- noise sigma: the minimum, over the 8x8 blocks that touch the stamp border, of each block's
  standard deviation. Taking the minimum keeps an edge-on disk that reaches into some border
  blocks from inflating the estimate.
- SNR: the maximum of the stamp block-averaged to (N/4)x(N/4) (4x4 blocks, 16x16 for N=64),
  divided by the noise sigma.
- Width: the standard deviation along the major axis of a 2-D elliptical Gaussian fitted to the
  stamp. Fitting a rotated Gaussian is equivalent to the paper's "rotate the galaxy so that its
  long axis is horizontal, then fit": the major-axis sigma is the largest sigma any rotation gives.
- NonUniformity: ``max(I) / mean(I)``.

The [0, 1] normalisation the networks see is part of the core: :func:`galsim_vae.normalize`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import curve_fit

from ..errors import GalSimRangeError
from ..stamp import check_stamps

__all__ = [
    "noise_sigma",
    "snr",
    "gaussian_width",
    "nonuniformity",
    "stamp_metrics",
    "QualityCuts",
    "NOISE_BLOCK",
    "SNR_BLOCK",
]

#: Side of the border blocks used for the noise estimate, in pixels.
NOISE_BLOCK = 8
#: Side of the blocks averaged before taking the SNR maximum, in pixels.
SNR_BLOCK = 4


def _check_stamp(image, block):
    return check_stamps(image, multiple=block, min_size=2 * block, single=True)[0]


def _blocks(arr, block):
    n = arr.shape[0] // block
    return arr.reshape(n, block, n, block).swapaxes(1, 2)  # (n, n, block, block)


def noise_sigma(image, *, block=NOISE_BLOCK):
    """Noise standard deviation from the border of a stamp.

    Parameters:
        image: square 2-D array (or ``galsim.Image``), side a multiple of ``block``.
        block: side of the border blocks in pixels. [default: 8]

    Returns:
        float: the smallest standard deviation of the border blocks, in the image's units.
    """
    arr = _check_stamp(getattr(image, "array", image), block)
    b = _blocks(arr, block)
    n = b.shape[0]
    ring = np.zeros((n, n), dtype=bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    return float(b[ring].reshape(-1, block * block).std(axis=1).min())


def snr(image, *, sigma=None, block=SNR_BLOCK):
    """Signal-to-noise ratio of a stamp: peak of the 4x4-block-averaged image over the noise.

    Parameters:
        image: square 2-D array (or ``galsim.Image``).
        sigma: noise standard deviation; measured with :func:`noise_sigma` when None.
            [default: None]
        block: side of the averaging blocks in pixels. [default: 4]

    Returns:
        float: the SNR (``inf`` for a noiseless stamp).
    """
    arr = _check_stamp(getattr(image, "array", image), block)
    if sigma is None:
        sigma = noise_sigma(arr)
    peak = _blocks(arr, block).mean(axis=(2, 3)).max()
    return float(peak / sigma) if sigma > 0 else float("inf")


def nonuniformity(image):
    """``max(I) / mean(I)`` of a stamp (``inf`` when the mean is not positive)."""
    arr = check_stamps(image, single=True)[0]
    mean = arr.mean()
    return float(arr.max() / mean) if mean > 0 else float("inf")


def _gauss2d(xy, amp, x0, y0, sa, sb, theta):
    x, y = xy
    c, s = np.cos(theta), np.sin(theta)
    u = (x - x0) * c + (y - y0) * s
    v = -(x - x0) * s + (y - y0) * c
    return amp * np.exp(-0.5 * ((u / sa) ** 2 + (v / sb) ** 2))


def gaussian_width(image):
    """Major-axis standard deviation of a rotated 2-D Gaussian fitted to a stamp.

    The fit is ``scipy.optimize.curve_fit`` (Levenberg-Marquardt) of amplitude, centre, two
    sigmas and a position angle, started from the stamp's second moments.

    Parameters:
        image: 2-D array (or ``galsim.Image``) in any units.

    Returns:
        tuple: ``(width, minor, theta)``: major- and minor-axis sigma in pixels and the major
        axis' angle from +x in radians. ``(nan, nan, nan)`` when the fit does not converge.
    """
    arr = np.asarray(getattr(image, "array", image), dtype=float)
    ny, nx = arr.shape
    y, x = np.mgrid[:ny, :nx].astype(float)
    w = np.clip(arr, 0, None)
    tot = w.sum()
    if not tot > 0:
        return (float("nan"),) * 3
    xc, yc = (w * x).sum() / tot, (w * y).sum() / tot
    ixx = (w * (x - xc) ** 2).sum() / tot
    iyy = (w * (y - yc) ** 2).sum() / tot
    ixy = (w * (x - xc) * (y - yc)).sum() / tot
    # Second moments of the clipped, noisy image overestimate the size; halve them as a start.
    s0 = max(np.sqrt(max(0.5 * (ixx + iyy), 0.25)) * 0.7, 0.5)
    th0 = 0.5 * np.arctan2(2 * ixy, ixx - iyy)
    p0 = [arr.max(), xc, yc, s0, s0 * 0.8, th0]
    try:
        popt, _ = curve_fit(_gauss2d, (x.ravel(), y.ravel()), arr.ravel(), p0=p0, maxfev=2000)
    except (RuntimeError, ValueError):
        return (float("nan"),) * 3
    sa, sb, theta = abs(popt[3]), abs(popt[4]), popt[5]
    if sb > sa:
        sa, sb, theta = sb, sa, theta + np.pi / 2
    theta = (theta + np.pi / 2) % np.pi - np.pi / 2
    return float(sa), float(sb), float(theta)


@dataclass(frozen=True)
class StampMetrics:
    """The paper's quality metrics of one stamp."""

    noise_sigma: float
    snr: float
    width_pix: float
    nonuniformity: float
    norm_min: float
    norm_max: float


def stamp_metrics(image):
    """All quality metrics and normalisation constants of one stamp, as a dict."""
    arr = _check_stamp(getattr(image, "array", image), NOISE_BLOCK)
    sig = noise_sigma(arr)
    return asdict(
        StampMetrics(
            noise_sigma=sig,
            snr=snr(arr, sigma=sig),
            width_pix=gaussian_width(arr)[0],
            nonuniformity=nonuniformity(arr),
            norm_min=float(arr.min()),
            norm_max=float(arr.max()),
        )
    )


@dataclass(frozen=True)
class QualityCuts:
    """Limits on the stamp metrics; a stamp passes when every metric is inside its range.

    The defaults were chosen by looking at the 100 real COSMOS galaxies of ``cosmos_btk100`` and
    at simulated COSMOS-like stamps (see ``docs/data.md``): they drop stamps whose galaxy is lost
    in the noise (SNR < 8), point-like stamps with no resolved structure (Width < 1.5 px =
    0.045"), galaxies too large for the stamp (Width > 16 px, or less than 95% of their flux inside
    it), and flat stamps (NonUniformity < 3). The paper's 99.5% flux-fraction limit was set for
    stamps whose scale is fitted to each galaxy; at a fixed 0.03"/px a 64-pixel stamp is 1.92"
    wide, and 99.5% keeps only 7% of COSMOS-like galaxies (95% keeps 33%), the missing light
    being in wings below the noise.

    Attributes:
        min_snr: lowest SNR. [default: 8]
        max_snr: highest SNR. [default: inf]
        min_width: lowest Width in pixels. [default: 1.5]
        max_width: highest Width in pixels. [default: 16]
        min_nonuniformity: lowest NonUniformity. [default: 3]
        max_nonuniformity: highest NonUniformity. [default: inf]
        min_flux_fraction: lowest fraction of the galaxy's flux inside the stamp.
            [default: 0.95]
    """

    min_snr: float = 8.0
    max_snr: float = float("inf")
    min_width: float = 1.5
    max_width: float = 16.0
    min_nonuniformity: float = 3.0
    max_nonuniformity: float = float("inf")
    min_flux_fraction: float = 0.95

    def __post_init__(self):
        for lo, hi in [
            ("min_snr", "max_snr"),
            ("min_width", "max_width"),
            ("min_nonuniformity", "max_nonuniformity"),
        ]:
            a, b = getattr(self, lo), getattr(self, hi)
            if not a <= b:
                raise GalSimRangeError(f"{lo} must not exceed {hi}", a, -np.inf, b)
        if not 0 <= self.min_flux_fraction <= 1:
            raise GalSimRangeError(
                "min_flux_fraction must be in [0, 1]", self.min_flux_fraction, 0, 1
            )

    def passes(self, table):
        """Boolean mask of the rows of ``table`` (mapping of column -> array) inside every cut."""

        def col(name):
            return np.asarray(table[name], dtype=float)

        with np.errstate(invalid="ignore"):
            ok = (col("snr") >= self.min_snr) & (col("snr") <= self.max_snr)
            ok &= (col("width_pix") >= self.min_width) & (col("width_pix") <= self.max_width)
            ok &= col("nonuniformity") >= self.min_nonuniformity
            ok &= col("nonuniformity") <= self.max_nonuniformity
            ok &= col("flux_fraction") >= self.min_flux_fraction
        return ok

    def as_dict(self):
        return asdict(self)
