import galsim
import numpy as np
import pytest

from galsim_vae import hst_f814w_psf, psf_from_image
from galsim_vae.psf import psf_sigma


def test_hst_psf_width():
    # The Airy core of the 2.4 m HST at 814 nm (FWHM 1.028 lambda/D = 0.072") widened by the
    # 0.05" ACS pixel: 0.074".
    img = hst_f814w_psf().drawImage(nx=256, ny=256, scale=0.0025, method="no_pixel")
    assert img.calculateFWHM() == pytest.approx(0.074, abs=0.002)
    airy = galsim.Airy(lam=814.0, diam=2.4, obscuration=0.33, scale_unit=galsim.arcsec)
    assert psf_sigma(hst_f814w_psf()) > psf_sigma(airy)


def test_psf_from_image_round_trip():
    true = galsim.Moffat(beta=3, fwhm=0.15)
    img = true.drawImage(nx=48, ny=48, scale=0.03, method="no_pixel", use_true_center=False)
    for p in (img, img.array):
        prof = psf_from_image(p, 0.03, use_true_center=False)
        assert prof.flux == pytest.approx(1.0)
        assert psf_sigma(prof) == pytest.approx(psf_sigma(true), rel=0.02)
        # Centred on the nominal centre pixel: the centroid is at the origin.
        assert abs(prof.centroid.x) < 1e-3 and abs(prof.centroid.y) < 1e-3
    # With the true centre (GalSim's default), an even-sized image drawn about its nominal
    # centre pixel has its light half a pixel off the origin.
    shifted = psf_from_image(img)
    assert abs(shifted.centroid.x) == pytest.approx(0.015, abs=1e-3)
    assert psf_from_image(true) is true
    with pytest.raises(TypeError, match="scale"):
        psf_from_image(np.zeros((8, 8)))
