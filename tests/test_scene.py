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


def _scene_panel(path, n):
    """The image panel of a scene PNG sampled at the centres of its ``n x n`` pixels (grey
    levels, row 0 at the bottom as drawn with ``origin="lower"``)."""
    from test_cli import figure_rgb, runs

    rgb = figure_rgb(path)
    ink = rgb.min(axis=2) < 0.97  # the panel: no white pixel in the grey-scale stretch
    ((r0, r1),) = runs(ink.mean(axis=1) > 0.5, 50)
    ((c0, c1),) = runs(ink.mean(axis=0) > 0.5, 50)
    assert 0.9 < (r1 - r0) / (c1 - c0) < 1.1  # a square scene in a square panel
    ys = r0 + ((np.arange(n) + 0.5) * (r1 - r0) / n).astype(int)
    xs = c0 + ((np.arange(n) + 0.5) * (c1 - c0) / n).astype(int)
    return rgb[np.ix_(ys, xs)].mean(axis=2)[::-1]


def test_draw_cli(tmp_path):
    from test_cli import tile_grid

    assert (
        main(["draw", "--out", str(tmp_path), "--n", "4", "--size", "96", "--gallery", "16"]) == 0
    )
    img = galsim.fits.read(str(tmp_path / "scene.fits"))
    assert img.array.shape == (96, 96) and img.array.std() > 0
    # The PNG shows that scene (grey scale reversed: bright galaxies are dark).
    panel = _scene_panel(tmp_path / "scene.png", 96)
    assert np.corrcoef(panel.ravel(), img.array.ravel())[0, 1] < -0.4
    assert abs(np.corrcoef(panel.ravel(), np.roll(img.array, 20, axis=0).ravel())[0, 1]) < 0.2
    # 16 samples in rows of 8.
    assert tile_grid(tmp_path / "gallery.png") == (2, 8)


def test_scene_of_given_galaxies_has_the_sampled_layout():
    kw = dict(size=128, seed=3, noise_sigma=0, flux_range=(1000, 1000), psf="gaussian")
    _, gals, pos = draw_scene(4, **kw)
    dots = [galsim.Gaussian(sigma=0.05) for _ in range(4)]
    img, placed, pos2 = draw_scene(galaxies=dots, **kw)
    assert placed == dots and pos2 == pos  # same seed, same positions
    assert 3000 < img.array.sum() <= 4000 * 1.001  # some light falls past the edges


def test_draw_cli_with_real_galaxies(tmp_path, btk_dir):
    from test_cli import figure_rgb

    argv = ["draw", "--out", str(tmp_path), "--n", "4", "--size", "96", "--gallery", "8"]
    assert main([*argv, "--real", str(btk_dir)]) == 0
    figure_rgb(tmp_path / "gallery_real.png")
    figure_rgb(tmp_path / "scene_vs_real.png")
    # RealGalaxy profiles are deconvolved: without a PSF they cannot be drawn.
    assert main([*argv, "--out", str(tmp_path / "y"), "--real", str(btk_dir), "--psf", "none"]) == 2
    assert not (tmp_path / "y" / "scene.png").exists()
    # Not a catalog: refused before anything is drawn.
    assert main([*argv, "--out", str(tmp_path / "x"), "--real", str(tmp_path)]) == 2
    assert not (tmp_path / "x" / "scene.png").exists()


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
