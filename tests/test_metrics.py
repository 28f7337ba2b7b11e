import galsim
import numpy as np
import pytest

from galsim_vae.pipeline import metrics


def test_noise_sigma_is_min_border_block_std():
    img = np.zeros((64, 64))
    rng = np.random.default_rng(1)
    # Give every 8x8 border block a different noise level; the quietest is block (7, 3).
    for by in range(8):
        for bx in range(8):
            if by in (0, 7) or bx in (0, 7):
                img[by * 8 : (by + 1) * 8, bx * 8 : (bx + 1) * 8] = rng.normal(
                    0, 1 + by + bx, (8, 8)
                )
    img[56:64, 24:32] = rng.normal(0, 0.1, (8, 8))
    expected = img[56:64, 24:32].std()
    # A very quiet interior block must not count.
    img[24:32, 24:32] = 0
    assert metrics.noise_sigma(img) == pytest.approx(expected)


def test_snr_hand_computed():
    img = np.zeros((64, 64))
    img[:8, :8] = np.tile([[1.0, -1.0], [-1.0, 1.0]], (4, 4))  # std 1 border block
    img[8:, 8:] = 0
    img[1:64, 8:] = 0
    img[0, 8:] = 0
    # others border blocks: std 0 would win the minimum, so fill them with std-2 patterns
    pattern = 2 * np.tile([[1.0, -1.0], [-1.0, 1.0]], (4, 4))
    for by in range(8):
        for bx in range(8):
            if (by in (0, 7) or bx in (0, 7)) and (by, bx) != (0, 0):
                img[by * 8 : (by + 1) * 8, bx * 8 : (bx + 1) * 8] = pattern
    img[32:36, 32:36] = 5.0  # one 4x4 block with mean 5
    img[36:38, 36:38] = 8.0  # a 4x4 block with mean 8*4/16 = 2
    assert metrics.noise_sigma(img) == pytest.approx(1.0)
    assert metrics.snr(img) == pytest.approx(5.0)
    assert metrics.snr(img, sigma=2.5) == pytest.approx(2.0)


def test_nonuniformity():
    img = np.ones((16, 16))
    img[3, 4] = 257.0
    assert metrics.nonuniformity(img) == pytest.approx(257.0 / 2.0)


@pytest.mark.parametrize("sigma,q,beta", [(0.15, 0.5, 30.0), (0.09, 1.0, 0.0), (0.2, 0.3, -70.0)])
def test_gaussian_width_recovers_major_axis(sigma, q, beta):
    prof = galsim.Gaussian(sigma=sigma).shear(q=q, beta=beta * galsim.degrees)
    img = prof.drawImage(nx=64, ny=64, scale=0.03, method="no_pixel", use_true_center=False)
    width, minor, theta = metrics.gaussian_width(img)
    # Shearing at fixed area: major sigma = sigma / sqrt(q), minor = sigma * sqrt(q).
    assert width == pytest.approx(sigma / np.sqrt(q) / 0.03, rel=1e-5)
    assert minor == pytest.approx(sigma * np.sqrt(q) / 0.03, rel=1e-5)
    if q < 1:
        d = (theta - np.radians(beta) + np.pi / 2) % np.pi - np.pi / 2
        assert abs(d) < 1e-4


def test_stamp_metrics_keys_and_values():
    rng = np.random.default_rng(5)
    img = galsim.Gaussian(sigma=0.1, flux=10).drawImage(nx=64, ny=64, scale=0.03).array
    img = img + rng.normal(0, 1e-3, img.shape)
    m = metrics.stamp_metrics(img)
    assert set(m) == {"noise_sigma", "snr", "width_pix", "nonuniformity", "norm_min", "norm_max"}
    assert m["noise_sigma"] == pytest.approx(1e-3, rel=0.3)
    assert m["width_pix"] == pytest.approx(np.hypot(0.1 / 0.03, 1 / np.sqrt(12)), rel=0.05)


def test_quality_cuts_mask():
    table = {
        "snr": [20, 5, 20, 20, 20],
        "width_pix": [3, 3, 1, 3, 3],
        "nonuniformity": [10, 10, 10, 2, 10],
        "flux_fraction": [1, 1, 1, 1, 0.5],
    }
    np.testing.assert_array_equal(metrics.QualityCuts().passes(table), [1, 0, 0, 0, 0])


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((64, 32)), "square"),
        (np.zeros((60, 60)), "multiple of 8"),
        (np.full((64, 64), np.nan), "NaN"),
    ],
)
def test_bad_stamps(bad, match):
    with pytest.raises(galsim.GalSimValueError, match=match):
        metrics.noise_sigma(bad)


def test_bad_cuts():
    with pytest.raises(galsim.GalSimRangeError, match="min_snr"):
        metrics.QualityCuts(min_snr=10, max_snr=5)
    with pytest.raises(galsim.GalSimRangeError, match="min_flux_fraction"):
        metrics.QualityCuts(min_flux_fraction=1.5)
