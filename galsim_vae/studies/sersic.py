"""The parametric baseline: a PSF-convolved Sersic profile fitted to a stamp (GalSim).

Seven parameters: flux, half-light radius (arcsec), Sersic index n, reduced shear g1, g2 and the
centre offset x0, y0 (arcsec). Two fitters:

- :func:`fit_sersic_lsq`: least squares (``scipy.optimize.least_squares``, trust region). GalSim's
  rendering has small numerical noise (FFT folding, Sersic interpolation tables), which breaks
  finite-difference steps near the default ``sqrt(eps)``; ``diff_step=1e-3`` (relative) converges
  correctly. Uncertainties from the Jacobian at the optimum.
- :func:`fit_sersic_mcmc`: the same likelihood sampled with emcee (flat priors inside the
  bounds), walkers started around the least-squares optimum. The chain length, walkers and the
  integrated autocorrelation time are returned, so the cost of a converged run (about 50
  autocorrelation times per walker) can be scaled from a short one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import galsim
import numpy as np
from scipy.optimize import least_squares

from ..errors import GalSimValueError
from ..psf import psf_from_image
from ..stamp import check_stamps

__all__ = [
    "PARAMS",
    "SersicFit",
    "sersic_model",
    "fit_sersic_lsq",
    "fit_sersic_mcmc",
    "fit_sersic_pysersic",
]

PARAMS = ("flux", "hlr", "n", "g1", "g2", "x0", "y0")
#: The largest half-light radius (arcsec) the Sersic fits reach (their bound).
SERSIC_MAX_HLR = 1.5
_LO = np.array([0.0, 0.01, 0.3, -0.8, -0.8, -0.3, -0.3])
_HI = np.array([np.inf, SERSIC_MAX_HLR, 6.2, 0.8, 0.8, 0.3, 0.3])
_GSP = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=3e-3)


@dataclass
class SersicFit:
    """Result of a Sersic fit."""

    params: np.ndarray
    errors: np.ndarray
    chi2_per_pixel: float
    model: np.ndarray
    success: bool
    info: dict = field(default_factory=dict)

    def as_dict(self):
        d = {p: float(v) for p, v in zip(PARAMS, self.params)}
        d.update({f"{p}_err": float(v) for p, v in zip(PARAMS, self.errors)})
        d.update(chi2_per_pixel=self.chi2_per_pixel, success=self.success, **self.info)
        return d


def sersic_model(params, psf, *, stamp_size=64, scale=0.03):
    """The PSF-convolved Sersic stamp of ``params`` (see :data:`PARAMS`), centred like a stamp.

    ``psf`` is a GSObject or an effective-PSF image at ``scale`` (drawn without a pixel).
    """
    flux, hlr, n, g1, g2, x0, y0 = params
    gal = galsim.Sersic(n=float(n), half_light_radius=float(hlr), flux=float(flux), gsparams=_GSP)
    gal = gal.shear(g1=float(g1), g2=float(g2)).shift(float(x0), float(y0))
    conv = galsim.Convolve(gal, psf_from_image(psf, scale, use_true_center=False), gsparams=_GSP)
    return conv.drawImage(
        nx=stamp_size, ny=stamp_size, scale=scale, method="no_pixel", use_true_center=False
    ).array


def _start(image, scale):
    arr = np.clip(image, 0, None)
    n = arr.shape[0]
    y, x = np.mgrid[:n, :n]
    tot = arr.sum()
    r2 = ((x - n // 2) ** 2 + (y - n // 2) ** 2) * arr
    hlr = np.clip(np.sqrt(r2.sum() / tot) * scale * 0.6, 0.03, 1.0) if tot > 0 else 0.2
    return np.array([max(image.sum(), 1e-6), hlr, 1.5, 0.0, 0.0, 0.0, 0.0])


def _check(image, sigma):
    img = check_stamps(image, single=True)[0]
    if not sigma > 0:
        raise GalSimValueError("noise sigma must be positive", sigma)
    return img


def fit_sersic_lsq(image, psf, sigma, *, scale=0.03, diff_step=1e-3, max_nfev=200, fit_sky=False):
    """Least-squares Sersic fit of ``image`` with per-pixel noise ``sigma``.

    With ``fit_sky=True`` a constant sky level is fitted too (``info["sky"]``), for stamps
    whose background is not zero (decoded VAE stamps carry a small pedestal); ``model`` is the
    Sersic part alone.

    Returns:
        SersicFit: parameters, 1-sigma errors (Jacobian), chi2 per pixel and the model stamp.
    """
    img = _check(image, sigma)
    n = img.shape[0]
    psf_obj = psf_from_image(psf, scale, use_true_center=False)
    lo, hi = _LO.copy(), _HI.copy()
    hi[0] = max(10 * abs(img.sum()), 1e-3)
    p0 = np.clip(_start(img, scale), lo + 1e-6, hi - 1e-6)
    if not np.all(np.isfinite(p0)):
        raise GalSimValueError("no starting point for a Sersic fit of this stamp", p0)
    x_scale = np.array([p0[0], 0.1, 1.0, 0.1, 0.1, 0.03, 0.03])
    if fit_sky:
        span = max(float(np.ptp(img)), 1e-12)
        lo, hi = np.append(lo, -span), np.append(hi, span)
        p0 = np.append(p0, 0.0)
        x_scale = np.append(x_scale, max(float(sigma), 1e-3 * span))

    def resid(p):
        try:
            m = sersic_model(p[:7], psf_obj, stamp_size=n, scale=scale)
        except (galsim.GalSimError, ValueError, RuntimeError):
            return np.full(img.size, 1e3)
        sky = p[7] if fit_sky else 0.0
        r = ((m + sky - img) / sigma).ravel()
        return r if np.all(np.isfinite(r)) else np.full(img.size, 1e3)

    res = least_squares(
        resid, p0, bounds=(lo, hi), diff_step=diff_step, max_nfev=max_nfev, x_scale=x_scale
    )
    chi2 = float(np.mean(res.fun**2))
    try:
        cov = np.linalg.inv(res.jac.T @ res.jac) * max(chi2, 1.0)
        err = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        err = np.full(len(p0), np.nan)
    info = {"nfev": int(res.nfev)}
    if fit_sky:
        info.update(sky=float(res.x[7]), sky_err=float(err[7]))
    model = sersic_model(res.x[:7], psf_obj, stamp_size=n, scale=scale)
    return SersicFit(res.x[:7], err[:7], chi2, model, bool(res.success), info)


def fit_sersic_mcmc(
    image, psf, sigma, *, scale=0.03, nwalkers=16, nsteps=300, seed=0, start=None, progress=False
):
    """Sample the Sersic posterior with emcee (flat priors inside the bounds).

    Parameters:
        image, psf, sigma, scale: as :func:`fit_sersic_lsq`.
        nwalkers: number of walkers (>= 14). [default: 16]
        nsteps: steps per walker. [default: 300]
        seed: seed of the sampler. [default: 0]
        start: a :class:`SersicFit` to start around; a least-squares fit is run when None.
        progress: emcee's progress bar. [default: False]

    Returns:
        SersicFit: posterior medians and standard deviations (second half of the chain);
        ``info`` holds ``nwalkers``, ``nsteps``, ``tau`` (integrated autocorrelation time per
        parameter, steps) and ``n_evals``.
    """
    import emcee

    img = _check(image, sigma)
    n = img.shape[0]
    psf_obj = psf_from_image(psf, scale, use_true_center=False)
    if start is None:
        start = fit_sersic_lsq(img, psf_obj, sigma, scale=scale)
    hi = _HI.copy()
    hi[0] = max(10 * abs(img.sum()), 1e-3)

    def log_prob(p):
        if np.any(p < _LO) or np.any(p > hi) or np.hypot(p[3], p[4]) > 0.9:
            return -np.inf
        try:
            m = sersic_model(p, psf_obj, stamp_size=n, scale=scale)
        except (galsim.GalSimError, ValueError, RuntimeError):
            return -np.inf
        return -0.5 * float(np.sum(((m - img) / sigma) ** 2))

    rng = np.random.default_rng(seed)
    width = np.where(
        np.isfinite(start.errors) & (start.errors > 0),
        start.errors,
        0.01 * np.abs(start.params) + 1e-3,
    )
    p0 = start.params + 0.5 * width * rng.standard_normal((nwalkers, 7))
    p0 = np.clip(p0, _LO + 1e-6, hi - 1e-6)
    sampler = emcee.EnsembleSampler(nwalkers, 7, log_prob)
    # emcee draws from its own RandomState; seeding it keeps runs reproducible without touching
    # numpy's global state.
    sampler.random_state = np.random.RandomState(seed).get_state()
    sampler.run_mcmc(p0, nsteps, progress=progress)
    chain = sampler.get_chain(discard=nsteps // 2, flat=True)
    tau = sampler.get_autocorr_time(tol=0, quiet=True)
    med = np.median(chain, axis=0)
    model = sersic_model(med, psf_obj, stamp_size=n, scale=scale)
    chi2 = float(np.mean(((model - img) / sigma) ** 2))
    info = {
        "nwalkers": nwalkers,
        "nsteps": nsteps,
        "tau": tau.tolist(),
        "n_evals": nwalkers * nsteps,
        "acceptance": float(np.mean(sampler.acceptance_fraction)),
    }
    return SersicFit(med, chain.std(axis=0), chi2, model, True, info)


def fit_sersic_pysersic(
    image, psf, sigma, *, num_samples=1000, num_warmup=1000, num_chains=2, seed=0, progress=False
):
    """Fit a Sersic profile with pysersic (JAX/NumPyro, NUTS): the third-party MCMC peer.

    An optional dependency (``pip install 'galsim_vae[pysersic]'``). pysersic's own priors
    (``autoprior``) and renderer are used; ``psf`` is an image at the stamp's scale.

    Returns:
        dict: posterior mean and standard deviation of pysersic's parameters (``flux``,
        ``r_eff`` in pixels, ``n``, ``ellip``, ``theta``, ``xc``, ``yc``), the largest ``r_hat``,
        the sampler settings and ``seconds``.
    """
    import time

    try:
        import jax
        from pysersic import FitSingle, autoprior
    except ImportError as e:
        raise GalSimValueError(
            "pysersic is not installed: pip install 'galsim_vae[pysersic]'", "pysersic"
        ) from e
    img = _check(image, sigma)
    p = np.asarray(getattr(psf, "array", psf), dtype=float)
    import warnings

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # pysersic and its dependencies warn about their own deprecated APIs; not ours to fix.
        warnings.simplefilter("ignore")
        fitter = FitSingle(
            data=img, rms=np.full_like(img, sigma), psf=p / p.sum(), prior=autoprior(img, "sersic")
        )
        res = fitter.sample(
            rkey=jax.random.PRNGKey(seed),
            num_samples=num_samples,
            num_warmup=num_warmup,
            num_chains=num_chains,
            mcmc_kwargs={"progress_bar": progress},
        )
    dt = time.perf_counter() - t0
    summ = res.summary()
    out = {f"{k}": float(summ.loc[k, "mean"]) for k in summ.index}
    out.update({f"{k}_err": float(summ.loc[k, "sd"]) for k in summ.index})
    out.update(
        r_hat=float(summ["r_hat"].max()),
        num_samples=num_samples,
        num_warmup=num_warmup,
        num_chains=num_chains,
        seconds=dt,
    )
    return out
