import galsim
import numpy as np
import pytest
from astropy.io import fits

from galsim_vae.pipeline import stamps
from galsim_vae.stamp import centre_shift


def test_find_catalog_from_folder_file_and_env(btk_dir, monkeypatch):
    f = stamps.find_catalog(btk_dir)
    assert f.name == "real_galaxy_catalog_26_extension_example.fits"
    assert stamps.find_catalog(f) == f
    monkeypatch.setenv(stamps.COSMOS_ENV, str(btk_dir))
    assert stamps.find_catalog() == f


def test_missing_catalog_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(stamps.COSMOS_ENV, raising=False)
    with pytest.raises(galsim.GalSimValueError, match="GALSIM_VAE_COSMOS"):
        stamps.find_catalog()
    with pytest.raises(galsim.GalSimValueError, match="not found"):
        stamps.find_catalog(tmp_path / "nope.fits")
    with pytest.raises(galsim.GalSimValueError, match="found 0"):
        stamps.find_catalog(tmp_path)


def test_catalog_missing_columns_and_images(tmp_path, btk_dir):
    src = stamps.find_catalog(btk_dir)
    t = fits.getdata(src, 1)
    bad = tmp_path / "real_galaxy_catalog_bad.fits"
    cols = [c for c in t.columns if c.name != "PSF_HDU"]
    fits.BinTableHDU.from_columns(cols).writeto(bad)
    with pytest.raises(galsim.GalSimValueError, match="PSF_HDU"):
        stamps.open_catalog(bad)
    noimg = tmp_path / "other" / "real_galaxy_catalog_noimg.fits"
    noimg.parent.mkdir()
    fits.BinTableHDU(t).writeto(noimg)
    with pytest.raises(galsim.GalSimValueError, match="missing"):
        stamps.open_catalog(noimg)


@pytest.mark.parametrize(
    "size,scale,mode,match",
    [
        (60, 0.03, "fixed", "multiple of 8"),
        (8, 0.03, "fixed", "multiple of 8"),
        (64, 0.0, "fixed", "pixel_scale"),
        (64, 5.0, "fixed", "pixel_scale"),
        (64, 0.03, "zoom", "scale_mode"),
    ],
)
def test_bad_geometry(size, scale, mode, match):
    with pytest.raises(galsim.GalSimError, match=match):
        stamps.check_stamp_geometry(size, scale, mode)
    with pytest.raises(TypeError):
        stamps.check_stamp_geometry(64.0, 0.03)


def test_fit_scale_is_paper_eq1():
    assert stamps.fit_scale(124, 64) == pytest.approx(0.03 * 124 / 62)


def test_real_stamps_fixed_and_fit(btk_dir):
    images, psfs, rows, errors = stamps.real_stamps(
        btk_dir, indices=range(6), nproc=1, progress=False
    )
    assert errors == []
    assert images.shape == (6, 64, 64) and psfs.shape == (6, 64, 64)
    np.testing.assert_allclose(psfs.sum(axis=(1, 2)), 1, atol=0.02)
    rgc = stamps.open_catalog(btk_dir)
    for k, r in enumerate(rows):
        assert r["pixel_scale"] == 0.03
        orig = rgc.getGalImage(k)
        # Flux fraction: original pixels inside the 64x64 window over all of them.
        n = orig.array.shape[0]
        if n <= 64:
            assert r["flux_fraction"] == pytest.approx(1.0)
        else:  # the 64 pixels about the one nearest the galaxy (0-based n // 2 + shift)
            dx, dy = centre_shift(orig)
            x0, y0 = n // 2 + dx - 32, n // 2 + dy - 32
            inner = orig.array[max(y0, 0) : y0 + 64, max(x0, 0) : x0 + 64].sum()
            assert r["flux_fraction"] == pytest.approx(inner / orig.array.sum(), rel=0.05)
        # The galaxy sits on the central pixel: its light-weighted centroid is near (32, 32).
        a = np.clip(images[k] - np.median(images[k]), 0, None)
        a[a < 3 * r["noise_sigma"]] = 0
        y, x = np.mgrid[:64, :64]
        assert abs((a * x).sum() / a.sum() - 32) < 3 and abs((a * y).sum() / a.sum() - 32) < 3
    fit = stamps.real_stamps(btk_dir, indices=range(6), nproc=1, progress=False, scale_mode="fit")[
        2
    ]
    for r in fit:
        assert r["pixel_scale"] == pytest.approx(0.03 * r["original_size"] / 62)
        assert r["flux_fraction"] == pytest.approx(1.0)


def test_real_stamps_are_deterministic(btk_dir):
    a = stamps.real_stamps(btk_dir, indices=[0, 3], nproc=1, progress=False, seed=5)[0]
    b = stamps.real_stamps(btk_dir, indices=[0, 3], nproc=1, progress=False, seed=5)[0]
    c = stamps.real_stamps(btk_dir, indices=[0, 3], nproc=1, progress=False, seed=6)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_postage_stamp_pixels_are_copied_as_observed():
    # An even-sided postage stamp with a galaxy 2.3 and -1.6 pixels from its nominal centre:
    # redrawn at its own scale every pixel is one of the observed ones (an interpolation half a
    # pixel off would smooth the galaxy and the noise), and the galaxy lands within half a pixel
    # of the stamp's centre, pixel (32, 32) 0-based.
    from galsim_vae.stamp import image_stamp

    post = galsim.Image(44, 44, scale=0.03)
    galsim.Gaussian(sigma=0.09).drawImage(
        post, offset=(2.3, -1.6), method="no_pixel", use_true_center=False
    )
    rng = np.random.default_rng(3)
    post.array[:] += rng.normal(0, 1e-4, post.array.shape)
    arr, scale = image_stamp(post, noise=1e-8)
    assert scale == 0.03
    # The postage stamp's pixel (25, 21) 1-based (its nominal centre (23, 23) moved by (2, -2),
    # nearest the galaxy) lands on the stamp's (33, 33): rows shift by 12, columns by 8.
    np.testing.assert_allclose(arr[12:56, 8:52], post.array, rtol=1e-5, atol=1e-9)
    y, x = np.mgrid[:64, :64]
    a = np.clip(arr, 0, None)
    cx, cy = (a * x).sum() / a.sum(), (a * y).sum() / a.sum()
    assert abs(cx - 32) <= 0.5 and abs(cy - 32) <= 0.5


def test_real_stamps_keep_the_observed_noise(btk_dir):
    # The real stamps' border noise reads what COSMOS noise at the catalog's variance reads when
    # added to an empty stamp the same way (the simulator's treatment), not 15% less.
    from galsim_vae.pipeline.metrics import noise_sigma

    rgc = stamps.open_catalog(btk_dir)
    real, added = [], []
    for k in range(12):
        real.append(stamps.real_stamp(rgc, k)["row"]["noise_sigma"])
        empty = galsim.Image(64, 64, scale=0.03)
        empty.addNoise(rgc.getNoise(k, rng=galsim.BaseDeviate(k + 1)))
        added.append(noise_sigma(empty.array))
    assert np.median(np.array(real) / np.array(added)) == pytest.approx(1.0, abs=0.08)


def test_centre_shift_keeps_a_fitting_postage_stamp_inside():
    # A galaxy 2.6 pixels right of the nominal centre of a 62-pixel postage stamp: the shift to
    # it would push the stamp's far column out of a 64-pixel stamp, so it stops at 1; without a
    # stamp size (or past the cap) it is the nearest pixel.
    from galsim_vae.stamp import MAX_CENTRE_SHIFT, centre_shift, image_stamp

    post = galsim.Image(62, 62, scale=0.03)
    galsim.Gaussian(sigma=0.06).drawImage(
        post, offset=(2.6, 0.0), method="no_pixel", use_true_center=False
    )
    assert centre_shift(post) == (3, 0)
    assert centre_shift(post, 64) == (1, 0)
    arr, _ = image_stamp(post, noise=1e-12)
    assert arr.sum() == pytest.approx(post.array.sum(), rel=1e-4)  # all of it inside
    far = galsim.Image(62, 62, scale=0.03)
    galsim.Gaussian(sigma=0.06).drawImage(
        far, offset=(MAX_CENTRE_SHIFT + 1.2, 0.0), method="no_pixel", use_true_center=False
    )
    assert centre_shift(far) == (0, 0)  # a neighbour or a blend: the nominal centre
