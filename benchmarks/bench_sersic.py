"""Per-galaxy cost on the same real stamps: VAE encoding, least-squares and emcee Sersic fits.

The emcee runs are short (16 walkers x 200 steps); their cost is scaled to convergence, taken as
50 integrated autocorrelation times per walker (emcee's rule of thumb), from the measured tau.
Targets: encoding >= 1e5 times faster than MCMC to convergence, >= 30 times faster than least
squares.
"""

import time

import numpy as np
import pytest

from galsim_vae import get_model
from galsim_vae.pipeline.stamps import real_stamps
from galsim_vae.studies.sersic import fit_sersic_lsq, fit_sersic_mcmc

N_LSQ = 8
N_MCMC = 2


@pytest.fixture(scope="module")
def stamps(data_dir):
    images, psfs, rows, _ = real_stamps(
        data_dir / "cosmos_btk100", indices=range(40), nproc=1, progress=False
    )
    order = np.argsort([-r["snr"] for r in rows])[:N_LSQ]  # the brightest: fits converge
    return images[order], psfs[order], np.array([rows[k]["noise_sigma"] for k in order])


def test_encode_per_galaxy(benchmark, stamps):
    images = np.repeat(stamps[0], 250, axis=0)  # 2,000 stamps for a stable rate
    model = get_model()
    enc = benchmark.pedantic(model.encode, args=(images,), rounds=3, iterations=1)
    assert np.isfinite(enc["mu"]).all()
    benchmark.extra_info["n"] = len(images)


def test_lsq_per_galaxy(benchmark, stamps):
    images, psfs, sig = stamps

    def run():
        return [fit_sersic_lsq(i, p, s) for i, p, s in zip(images, psfs, sig)]

    fits = benchmark.pedantic(run, rounds=1, iterations=1)
    assert all(np.isfinite(f.chi2_per_pixel) and f.chi2_per_pixel < 50 for f in fits)
    benchmark.extra_info["n"] = len(images)


def test_mcmc_per_galaxy(benchmark, stamps):
    images, psfs, sig = stamps
    steps, walkers = 200, 16
    starts = [fit_sersic_lsq(i, p, s) for i, p, s in zip(images[:N_MCMC], psfs, sig)]
    taus = []

    def run():
        out = []
        for i, p, s, st in zip(images[:N_MCMC], psfs, sig, starts):
            t0 = time.perf_counter()
            f = fit_sersic_mcmc(i, p, s, nsteps=steps, nwalkers=walkers, start=st)
            out.append((f, time.perf_counter() - t0))
        return out

    res = benchmark.pedantic(run, rounds=1, iterations=1)
    for f, _ in res:
        assert np.isfinite(f.params).all()
        taus.append(float(np.nanmax(f.info["tau"])))
    per_step = np.mean([dt for _, dt in res]) / steps
    converged = per_step * 50 * max(np.nanmax(taus), 1.0)
    benchmark.extra_info.update(
        n=N_MCMC,
        steps=steps,
        walkers=walkers,
        tau_max=max(taus),
        seconds_to_convergence_per_galaxy=converged,
    )


def test_pysersic_per_galaxy(benchmark, stamps):
    """pysersic's NUTS with its defaults (2 chains x (1000 warm-up + 1000) steps), one galaxy.

    Target: encoding >= 1e4 times faster per galaxy. Skipped without the optional extra.
    """
    pytest.importorskip("pysersic")
    from galsim_vae.studies.sersic import fit_sersic_pysersic

    images, psfs, sig = stamps
    res = benchmark.pedantic(
        fit_sersic_pysersic, args=(images[0], psfs[0], sig[0]), rounds=1, iterations=1
    )
    assert np.isfinite(res["n"]) and res["r_hat"] < 1.1
    benchmark.extra_info.update(n=1, r_hat=res["r_hat"])
