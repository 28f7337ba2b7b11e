"""Scenes of sampled VAE galaxies drawn with GalSim (the ``galsim-vae draw`` job)."""

from __future__ import annotations

import galsim

from ._utils import as_deviate, check_count
from .errors import GalSimRangeError, GalSimValueError
from .galaxy import VAEGalaxy, reconvolve
from .model import get_model

__all__ = ["PSF_KINDS", "make_psf", "draw_scene"]

PSF_KINDS = ("moffat", "gaussian", "airy", "none")


def make_psf(kind="moffat", fwhm=0.7):
    """A PSF by name: ``moffat`` (beta 3), ``gaussian`` or ``airy`` of the given FWHM (arcsec),
    or ``none`` (the galaxies keep only the HST PSF of the training stamps)."""
    if kind not in PSF_KINDS:
        raise GalSimValueError("Unknown PSF kind", kind, PSF_KINDS)
    if kind == "none":
        return None
    if not fwhm > 0:
        raise GalSimRangeError("PSF fwhm must be positive", fwhm, 0)
    if kind == "moffat":
        return galsim.Moffat(beta=3.0, fwhm=fwhm)
    if kind == "gaussian":
        return galsim.Gaussian(fwhm=fwhm)
    # An Airy pattern's FWHM is 1.028 lambda/D.
    return galsim.Airy(lam_over_diam=fwhm / 1.028)


def draw_scene(
    n=50,
    *,
    size=512,
    pixel_scale=0.2,
    psf="moffat",
    fwhm=0.7,
    noise_sigma=0.0,
    flux_range=(2e3, 2e4),
    seed=1,
    model=None,
    sampling="density",
    shear=(0.0, 0.0),
    galaxies=None,
):
    """Draw ``n`` sampled galaxies at random positions, orientations and fluxes.

    Parameters:
        n: number of galaxies.
        size: image side in pixels. [default: 512]
        pixel_scale: arcsec/pixel. [default: 0.2]
        psf, fwhm: see :func:`make_psf`. [default: "moffat", 0.7]
        noise_sigma: Gaussian noise per pixel (image units). [default: 0]
        flux_range: galaxies' fluxes are log-uniform in this range (image units).
            [default: (2e3, 2e4)]
        seed: seed (int or ``galsim.BaseDeviate``) of everything random: same seed, same
            image. [default: 1]
        model: a model file or VAEModel; the shipped one when None. [default: None]
        sampling: ``"density"`` or ``"prior"``. [default: "density"]
        shear: constant reduced shear (g1, g2) applied to every galaxy. [default: (0, 0)]
        galaxies: GSObjects to place instead of sampled VAE galaxies (e.g. ``galsim.RealGalaxy``
            profiles, for the same scene with real galaxies); ``n`` is then their number and
            ``model``/``sampling`` are unused. They are placed, rotated and scaled in flux as
            the sampled ones would be with the same seed. [default: None]

    Returns:
        tuple: ``(image, galaxies, positions)``.
    """
    n = check_count(n if galaxies is None else len(galaxies))
    if not size >= 16:
        raise GalSimRangeError("size must be at least 16 pixels", size, 16)
    lo, hi = flux_range
    if not 0 < lo <= hi:
        raise GalSimRangeError("flux_range must be 0 < min <= max", flux_range, 0)
    rng = as_deviate(seed)
    # The layout (positions, orientations, fluxes) has its own deviate, so that a scene of given
    # galaxies is laid out as the sampled one of the same seed.
    ud = galsim.UniformDeviate(int(galsim.UniformDeviate(rng)() * 2**31))
    if galaxies is None:
        m = get_model(model) if not hasattr(model, "decode") else model
        gals = VAEGalaxy.sample(n, rng, m, sampling=sampling)
    else:
        gals = list(galaxies)
    p = make_psf(psf, fwhm)
    image = galsim.ImageF(size, size, scale=pixel_scale)
    positions = []
    for g in gals:
        flux = lo * (hi / lo) ** ud()
        obj = g.withFlux(flux).rotate(ud() * 180 * galsim.degrees).shear(g1=shear[0], g2=shear[1])
        if p is not None:
            obj = reconvolve(obj, p)
        x, y = 1 + ud() * (size - 1), 1 + ud() * (size - 1)
        positions.append((x, y))
        stamp = obj.drawImage(scale=pixel_scale, center=galsim.PositionD(x, y))
        b = stamp.bounds & image.bounds
        if b.isDefined():
            image[b] += stamp[b]
    if noise_sigma > 0:
        image.addNoise(galsim.GaussianNoise(rng, sigma=noise_sigma))
    return image, gals, positions
