import galsim
import numpy as np
import pytest

from galsim_vae.studies.sersic import (
    fit_sersic_lsq,
    fit_sersic_mcmc,
    fit_sersic_pysersic,
    sersic_model,
)

PSF = galsim.Moffat(beta=3, fwhm=0.1)
TRUE = np.array([20.0, 0.2, 2.0, 0.2, -0.1, 0.01, -0.02])
SIGMA = 0.002


@pytest.fixture(scope="module")
def stamp():
    rng = np.random.default_rng(1)
    return sersic_model(TRUE, PSF) + rng.normal(0, SIGMA, (64, 64))


def test_lsq_recovers_parameters(stamp):
    f = fit_sersic_lsq(stamp, PSF, SIGMA)
    assert f.success
    assert np.all(np.abs(f.params - TRUE) < 4 * f.errors + 1e-4)
    assert f.chi2_per_pixel == pytest.approx(1.0, abs=0.06)
    # The fit also works from a PSF image.
    img = PSF.drawImage(nx=48, ny=48, scale=0.03, method="no_pixel", use_true_center=False).array
    g = fit_sersic_lsq(stamp, img, SIGMA)
    assert abs(g.params[2] - TRUE[2]) < 0.2


@pytest.mark.slow
def test_mcmc_recovers_parameters(stamp):
    start = fit_sersic_lsq(stamp, PSF, SIGMA)
    f = fit_sersic_mcmc(stamp, PSF, SIGMA, nsteps=60, nwalkers=16, start=start, seed=3)
    assert np.all(np.abs(f.params - TRUE) < 5 * f.errors + 1e-3)
    assert f.info["nwalkers"] == 16 and f.info["n_evals"] == 960 and len(f.info["tau"]) == 7
    g = fit_sersic_mcmc(stamp, PSF, SIGMA, nsteps=60, nwalkers=16, start=start, seed=3)
    np.testing.assert_array_equal(f.params, g.params)


def test_bad_inputs():
    with pytest.raises(galsim.GalSimValueError, match="square"):
        fit_sersic_lsq(np.zeros((10, 12)), PSF, 1.0)
    with pytest.raises(galsim.GalSimValueError, match="NaN"):
        fit_sersic_lsq(np.full((16, 16), np.nan), PSF, 1.0)
    with pytest.raises(galsim.GalSimValueError, match="sigma"):
        fit_sersic_lsq(np.zeros((16, 16)), PSF, 0.0)


@pytest.mark.slow
def test_pysersic_peer(stamp):
    pytest.importorskip("pysersic")
    img = PSF.drawImage(nx=48, ny=48, scale=0.03, method="no_pixel", use_true_center=False).array
    res = fit_sersic_pysersic(stamp, img, SIGMA, num_samples=200, num_warmup=200, num_chains=1)
    # pysersic's r_eff is in pixels along the major axis; n and flux are directly comparable.
    assert res["n"] == pytest.approx(TRUE[2], abs=5 * res["n_err"] + 0.1)
    assert res["flux"] == pytest.approx(TRUE[0], rel=0.05)
    assert res["seconds"] > 0 and res["num_chains"] == 1
