"""PSFs: the HST F814W PSF of the training stamps, and PSF images as GalSim profiles."""

from __future__ import annotations

import galsim
import numpy as np

__all__ = ["HST_PIXEL_SCALE", "F814W_ZEROPOINT", "hst_f814w_psf", "psf_from_image", "psf_sigma"]

#: Pixel scale of the COSMOS HST/ACS F814W images, arcsec/pixel.
HST_PIXEL_SCALE = 0.03
#: HST ACS/WFC F814W AB zero point of the COSMOS images (the magnitude of 1 count/s):
#: ``mag = -2.5 log10(flux) + F814W_ZEROPOINT``.
F814W_ZEROPOINT = 25.94


def hst_f814w_psf(gsparams=None):
    """An analytic stand-in for the HST/ACS F814W effective PSF of the training stamps.

    An Airy pattern of the 2.4 m, 33%-obscured HST mirror at 814 nm convolved with the 0.05"
    ACS/WFC pixel that the drizzled COSMOS images inherit: FWHM 0.074", against 0.072" for the
    PSF images of the COSMOS catalog in ``cosmos_btk100`` (median of ten, as profiles without a
    pixel). Its core matches; its wings do not: the adaptive-moment sigma is 0.031" against 0.052"
    for the catalog's PSFs, whose wings are broader. Pass a better one (for example
    :func:`psf_from_image` of a measured PSF) as ``original_psf`` when you have it.

    Parameters:
        gsparams: a ``galsim.GSParams``. [default: None]
    """
    airy = galsim.Airy(
        lam=814.0, diam=2.4, obscuration=0.33, scale_unit=galsim.arcsec, gsparams=gsparams
    )
    return galsim.Convolve(airy, galsim.Pixel(0.05, gsparams=gsparams), gsparams=gsparams)


def psf_from_image(psf, scale=None, *, use_true_center=True):
    """A PSF image as a unit-flux ``galsim.InterpolatedImage`` (quintic); a GSObject as it is.

    Parameters:
        psf: a ``galsim.GSObject`` (returned unchanged), a ``galsim.Image`` or a 2-D array.
        scale: pixel scale (arcsec) of an array, or to override the image's. [default: None]
        use_true_center: centre the profile on the image's true centre (GalSim's default), or on
            its nominal centre pixel ``(S/2, S/2)`` (0-based), as the stamps of this package
            are. [default: True]
    """
    if isinstance(psf, galsim.GSObject):
        return psf
    if isinstance(psf, galsim.Image):
        img = psf if scale is None else galsim.Image(psf.array.astype(float), scale=scale)
    else:
        if scale is None:
            raise TypeError("psf_from_image needs a scale for an array")
        img = galsim.Image(np.asarray(psf, dtype=float), scale=scale)
    return galsim.InterpolatedImage(
        img, x_interpolant="quintic", flux=1.0, use_true_center=use_true_center
    )


def psf_sigma(psf) -> float:
    """Adaptive-moment sigma of a PSF profile, in arcsec (``galsim.hsm``)."""
    img = psf.drawImage(nx=256, ny=256, scale=0.005, method="no_pixel")
    return galsim.hsm.FindAdaptiveMom(img).moments_sigma * 0.005
