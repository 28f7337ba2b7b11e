import galsim
import numpy as np
import pytest

from galsim_vae import denormalize, normalize
from galsim_vae.stamp import border_pixels, check_stamps, flux_denormalize, flux_normalize


def test_normalisation_round_trip():
    rng = np.random.default_rng(3)
    stack = rng.normal(0.01, 0.003, (5, 64, 64))
    norm, vmin, vmax = normalize(stack)
    np.testing.assert_allclose(norm.min(axis=(1, 2)), 0)
    np.testing.assert_allclose(norm.max(axis=(1, 2)), 1)
    np.testing.assert_allclose(vmin, stack.min(axis=(1, 2)))
    np.testing.assert_allclose(denormalize(norm, vmin, vmax), stack, rtol=0, atol=1e-15)
    one, a, b = normalize(stack[2])
    assert one.shape == (64, 64) and isinstance(a, float) and isinstance(b, float)
    np.testing.assert_allclose(denormalize(one, a, b), stack[2], atol=1e-15)
    # A galsim.Image is a stamp too.
    img_norm, _, _ = normalize(galsim.Image(stack[1], scale=0.03))
    np.testing.assert_allclose(img_norm, norm[1])


def test_bad_normalisation():
    with pytest.raises(galsim.GalSimValueError, match="constant"):
        normalize(np.ones((2, 8, 8)))
    with pytest.raises(galsim.GalSimValueError, match="NaN"):
        normalize(np.full((8, 8), np.inf))


def test_border_pixels_are_the_frame():
    a = np.zeros((16, 16))
    a[4:-4, 4:-4] = 1.0  # the inside of a 4-pixel frame
    b = border_pixels(a)
    assert len(b) == 16 * 16 - 8 * 8 and np.all(b == 0)
    a[0, 5] = a[15, 15] = a[7, 2] = a[9, 13] = 7.0  # one pixel on each side of the frame
    assert np.sum(border_pixels(a) == 7.0) == 4
    assert len(border_pixels(a, width=2)) == 16 * 16 - 12 * 12


@pytest.mark.parametrize(
    "bad,kwargs,match",
    [
        (np.zeros((64, 32)), {}, "square"),
        (np.zeros((3, 32, 32)), {"size": 64}, "64x64"),
        (np.zeros((2, 3, 64, 64)), {"size": 64}, "64x64"),
        (np.zeros((60, 60)), {"multiple": 8}, "multiple of 8"),
        (np.zeros((8, 8)), {"multiple": 8, "min_size": 16}, "at least 16"),
        (np.zeros((2, 8, 8)), {"single": True}, "2-D"),
        (np.full((8, 8), np.nan), {}, "NaN"),
    ],
)
def test_bad_stamps(bad, kwargs, match):
    with pytest.raises(galsim.GalSimValueError, match=match):
        check_stamps(bad, **kwargs)


def test_good_stamps_become_a_float_stack():
    assert check_stamps(np.zeros((8, 8), dtype=np.float32)).shape == (1, 8, 8)
    assert check_stamps(np.zeros((3, 1, 8, 8))).shape == (3, 8, 8)
    assert check_stamps(np.zeros((3, 8, 8)), size=8).dtype == np.float64


def test_flux_normalisation_round_trip_and_zero_sky():
    rng = np.random.default_rng(4)
    gal = galsim.Exponential(half_light_radius=0.2, flux=37.0)
    img = gal.drawImage(nx=64, ny=64, scale=0.03).array
    stack = np.array([img, 3 * img]) + rng.normal(0, 1e-5, (2, 64, 64))
    y, flux = flux_normalize(stack)
    # Every stamp sums to S; the flux is the stamp's own; brightness no longer matters.
    np.testing.assert_allclose(y.sum(axis=(1, 2)), 64)
    np.testing.assert_allclose(flux, stack.sum(axis=(1, 2)))
    np.testing.assert_allclose(y[0], y[1], atol=1e-3 * y.max())
    np.testing.assert_allclose(flux_denormalize(y, flux), stack, atol=1e-12)
    # Zero stays zero (no sky is introduced): the border of a sky-free stamp stays at zero.
    assert abs(np.median(border_pixels(y[0]))) < 1e-3
    one, f = flux_normalize(stack[0])
    assert one.shape == (64, 64) and isinstance(f, float)
    np.testing.assert_allclose(flux_denormalize(one, f), stack[0], atol=1e-12)
    with pytest.raises(galsim.GalSimValueError, match="not positive"):
        flux_normalize(-stack)


def test_half_light_radius_interpolates_between_pixels():
    from galsim_vae.stamp import half_light_radius

    # Within 2% for sizes between whole-pixel radii, where the pixel-stepped measure
    # (galsim.Image.calculateHLR) is off by up to 10% (0.0424" for 0.05", 0.0949" for 0.1").
    for hlr in (0.1, 0.13, 0.15, 0.21, 0.4):
        img = galsim.Exponential(half_light_radius=hlr).drawImage(
            nx=128, ny=128, scale=0.03, method="no_pixel", use_true_center=False
        )
        assert half_light_radius(img) == pytest.approx(hlr, rel=0.02)
    small = galsim.Exponential(half_light_radius=0.05).drawImage(
        nx=64, ny=64, scale=0.03, method="no_pixel", use_true_center=False
    )
    c0 = small.bounds.center
    stepped = small.calculateHLR(center=galsim.PositionD(c0.x, c0.y))
    assert abs(half_light_radius(small) - 0.05) < 0.5 * abs(stepped - 0.05)
    # About another centre; and no positive flux, no radius.
    off = galsim.Gaussian(sigma=0.1).drawImage(
        nx=64, ny=64, scale=0.03, method="no_pixel", offset=(5, 0), use_true_center=False
    )
    c = off.bounds.center
    assert half_light_radius(off) > 0.15 * 1.2
    assert half_light_radius(off, center=galsim.PositionD(c.x + 5, c.y)) == pytest.approx(
        0.1 * 1.1774, rel=0.03
    )
    assert np.isnan(half_light_radius(galsim.Image(np.zeros((8, 8)), scale=0.03)))


def test_negative_light():
    from galsim_vae.stamp import negative_light

    a = np.zeros((8, 8))
    a[4, 4], a[0, 0] = 10.0, -2.0  # sum 8, negative light 2
    assert negative_light(a) == pytest.approx(0.25)
    assert np.isnan(negative_light(-np.ones((8, 8))))  # no positive flux
    stack = np.stack([a, np.ones((8, 8))])
    np.testing.assert_allclose(negative_light(stack), [0.25, 0.0])
