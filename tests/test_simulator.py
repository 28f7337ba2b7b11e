import importlib

import numpy as np
import pytest

sim_mod = importlib.import_module("galsim_vae.pipeline.simulator")


def test_same_seed_same_set_any_nproc(data_dir):
    a, _, ra, _, ta = sim_mod.simulate(6, seed=11, data_dir=data_dir, nproc=1, progress=False)
    b, _, rb, _, tb = sim_mod.simulate(6, seed=11, data_dir=data_dir, nproc=2, progress=False)
    c = sim_mod.simulate(6, seed=12, data_dir=data_dir, nproc=1, progress=False).images
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ta, tb)
    assert ra == rb
    assert not np.array_equal(a, c)
    # Extending a set reproduces its tail.
    d = sim_mod.simulate(3, seed=11, data_dir=data_dir, nproc=1, progress=False, start=3)
    np.testing.assert_array_equal(a[3:], d.images)


def test_simulated_rows_are_consistent(data_dir):
    images, psfs, rows, sim, truths = sim_mod.simulate(
        20, seed=3, data_dir=data_dir, nproc=1, progress=False
    )
    assert images.shape == (20, 64, 64) and images.dtype == np.float32
    np.testing.assert_allclose(psfs.sum(axis=(1, 2)), 1, atol=0.03)
    for img, r in zip(images, rows, strict=False):
        assert 0 < r["flux_fraction"] <= 1.0 + 1e-6
        assert 0 <= r["bulge_fraction"] <= 1
        assert r["hlr"] > 0 and 0 <= r["psf_index"] < len(psfs)
        assert r["flux"] == pytest.approx(float(img.sum()), rel=1e-5)
        # Stamp flux = fraction * total, up to the noise summed over the stamp.
        assert abs(r["flux"] - r["flux_fraction"] * r["flux_total"]) < 8 * 64 * np.sqrt(
            r["noise_variance"]
        )
    # The truth is the same galaxy without noise: its flux is the true flux in the stamp, and
    # the stamp minus its truth is noise of the row's variance.
    fluxes = np.array([r["flux_fraction"] * r["flux_total"] for r in rows])
    np.testing.assert_allclose(truths.sum(axis=(1, 2)), fluxes, rtol=1e-4)
    ratio = (images - truths).var(axis=(1, 2)) / np.array([r["noise_variance"] for r in rows])
    assert 0.8 < np.median(ratio) < 1.2


@pytest.fixture(scope="module")
def fit_set(data_dir):
    return sim_mod.simulate(
        40, seed=5, data_dir=data_dir, nproc=1, progress=False, scale_mode="fit"
    )


def test_fit_mode_scales_each_galaxy_to_fit(fit_set):
    images, psfs, rows, sim, truths = fit_set
    scale = np.array([r["pixel_scale"] for r in rows])
    frac = np.array([r["flux_fraction"] for r in rows])
    hlr = np.array([r["hlr"] for r in rows])
    # Native where the galaxy fits, coarser where it does not; never finer.
    assert scale.min() == pytest.approx(0.03) and scale.max() > 0.06
    for r, s in zip(rows, scale, strict=True):
        assert s == pytest.approx(sim.stamp_scale(r))
    # Large galaxies are kept whole: the median galaxy keeps 99% of its light in the stamp,
    # and the size in pixels no longer grows with the size in arcsec.
    assert np.median(frac) > 0.99 and np.percentile(frac, 10) > 0.9
    big = hlr > np.median(hlr)
    assert np.all(scale[big] >= np.median(scale[~big]))
    # One PSF per stamp, at the stamp's scale: narrower in pixels where the pixels are larger.
    assert psfs.shape == (40, sim_mod.FIT_PSF_SIZE, sim_mod.FIT_PSF_SIZE)
    np.testing.assert_allclose(psfs.sum(axis=(1, 2)), 1, atol=0.03)
    assert [r["psf_index"] for r in rows] == list(range(40))
    y, x = np.mgrid[:32, :32] - 16.0
    width = [np.sqrt((p * (x**2 + y**2)).sum() / p.sum()) for p in psfs]  # pixels
    assert np.corrcoef(width, scale)[0, 1] < -0.8
    np.testing.assert_allclose(
        truths.sum(axis=(1, 2)), [r["flux_total"] * f for r, f in zip(rows, frac)], rtol=1e-4
    )


def test_fit_mode_noise_is_resampled_like_real_stamps(fit_set):
    # Resampled onto k times larger pixels the stamp keeps its flux, so a pixel sums k^2 native
    # pixels: white noise would grow k times, the COSMOS noise (positively correlated between
    # neighbours) more; the galaxy's light per pixel grows k^2 times. As a real postage stamp
    # redrawn onto a coarser grid (stamps.real_stamp): the same code path.
    images, _, rows, _, truths = fit_set
    k = np.array([r["pixel_scale"] for r in rows]) / 0.03
    per_var = (images - truths).std(axis=(1, 2)) / np.sqrt([r["noise_variance"] for r in rows])
    native = k < 1.01
    assert native.any() and (k > 2).any()
    assert np.median(per_var[native]) == pytest.approx(1.0, rel=0.2)
    growth = per_var[~native] / k[~native]
    assert np.all(growth > 0.9) and np.median(growth) < 4
    assert np.corrcoef(per_var, k)[0, 1] > 0.8
