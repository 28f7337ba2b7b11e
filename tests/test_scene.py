import galsim
import numpy as np
import pytest

from galsim_vae.cli import main
from galsim_vae.scene import draw_scene, make_psf


def test_scene_is_seeded_and_has_the_flux():
    a, gals, pos = draw_scene(5, size=128, seed=3, noise_sigma=0, flux_range=(1000, 1000))
    b, _, _ = draw_scene(5, size=128, seed=3, noise_sigma=0, flux_range=(1000, 1000))
    c, _, _ = draw_scene(5, size=128, seed=4, noise_sigma=0, flux_range=(1000, 1000))
    np.testing.assert_array_equal(a.array, b.array)
    assert not np.array_equal(a.array, c.array)
    inside = sum(1 for x, y in pos if 12 < x < 116 and 12 < y < 116)
    assert a.array.sum() <= 5 * 1000 * 1.01 and a.array.sum() >= inside * 1000 * 0.9


def test_draw_cli(tmp_path):
    assert main(["draw", "--out", str(tmp_path), "--n", "4", "--size", "96", "--gallery", "4"]) == 0
    img = galsim.fits.read(str(tmp_path / "scene.fits"))
    assert img.array.shape == (96, 96) and img.array.std() > 0
    assert (tmp_path / "scene.png").stat().st_size > 5000
    assert (tmp_path / "gallery.png").stat().st_size > 5000


def test_bad_inputs():
    with pytest.raises(galsim.GalSimValueError, match="PSF kind"):
        make_psf("kolmogorov")
    with pytest.raises(galsim.GalSimRangeError, match="fwhm"):
        make_psf("moffat", -1)
    with pytest.raises(galsim.GalSimValueError, match="positive integer"):
        draw_scene(0)
    with pytest.raises(galsim.GalSimRangeError, match="flux_range"):
        draw_scene(2, flux_range=(10, 1))
    assert make_psf("none") is None
    assert make_psf("airy", 0.1).calculateFWHM() == pytest.approx(0.1, rel=0.02)
