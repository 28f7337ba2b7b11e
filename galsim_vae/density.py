"""A latent density learned from encoded training stamps (a Gaussian mixture).

Sampling latents from the unit-Gaussian prior gives galaxies the model rarely saw, since a
Beta-VAE's aggregate posterior is not the prior. A Gaussian mixture fitted (scikit-learn) to the
latent means of the training stamps follows it. The fitted mixture is stored without pickle, as an
``.npz`` of its arrays plus a JSON header (scikit-learn version, number of components, source), and
sampled with a GalSim random deviate.

The mixture may also model quantities beside the latents (``aux``): a flux-representation model's
density is fitted on ``[latent, log10 pixel_scale, log10 flux]``, so that sampled galaxies get
sizes and fluxes with the correlations of the training set (:meth:`LatentDensity.sample_joint`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ._utils import as_deviate, check_count, load_arrays, save_arrays
from .errors import GalSimRangeError, GalSimValueError, GalSimWarning

__all__ = ["LatentDensity", "REDSHIFT_NEIGHBOURS", "REDSHIFT_WINDOW"]

#: A galaxy drawn at a redshift takes the magnitude of one of this many COSMOS galaxies, those
#: whose photometric redshifts are nearest (:meth:`LatentDensity.magnitudes_at_redshift`).
REDSHIFT_NEIGHBOURS = 20
#: ... all of them within ``REDSHIFT_WINDOW * (1 + z)`` of the redshift asked for; where the
#: catalog has fewer there, the redshift is refused as outside its range.
REDSHIFT_WINDOW = 0.15


class LatentDensity:
    """A Gaussian mixture over latents.

    Parameters:
        weights: ``(K,)`` component weights (summing to 1).
        means: ``(K, D)`` component means.
        covariances: ``(K, D, D)`` full covariances.
        meta: free-form dict stored with the file. [default: None]
    """

    def __init__(self, weights, means, covariances, meta=None):
        self.weights = np.asarray(weights, dtype=float)
        self.means = np.asarray(means, dtype=float)
        self.covariances = np.asarray(covariances, dtype=float)
        k, d = self.means.shape
        if self.weights.shape != (k,) or self.covariances.shape != (k, d, d):
            raise GalSimValueError(
                "inconsistent mixture shapes",
                (self.weights.shape, self.means.shape, self.covariances.shape),
            )
        if not np.isclose(self.weights.sum(), 1.0):
            raise GalSimValueError("mixture weights must sum to 1", float(self.weights.sum()))
        self._chol = np.linalg.cholesky(self.covariances)
        self.meta = dict(meta or {})

    @property
    def aux_names(self) -> tuple:
        """Names of the quantities modelled beside the latents (the last columns)."""
        return tuple(self.meta.get("aux", ()))

    @property
    def latent_dim(self) -> int:
        return self.means.shape[1] - len(self.aux_names)

    @classmethod
    def fit(cls, latents, *, aux=None, n_components=16, seed=0, meta=None) -> LatentDensity:
        """Fit a full-covariance mixture to ``latents`` ``(N, D)`` with scikit-learn.

        Parameters:
            latents: ``(N, D)`` latent means.
            aux: quantities modelled jointly with them, name -> ``(N,)`` array. [default: None]
            n_components: mixture components. [default: 16]
            seed: seed of the fit. [default: 0]
            meta: extra metadata to store. [default: None]
        """
        import sklearn
        from sklearn.mixture import GaussianMixture

        z = np.asarray(latents, dtype=float)
        aux = dict(aux or {})
        if aux:
            cols = [np.asarray(v, dtype=float).reshape(-1) for v in aux.values()]
            if any(len(c) != len(z) for c in cols):
                raise GalSimValueError("aux needs one value per latent", [len(c) for c in cols])
            z = np.column_stack([z] + cols)
        if z.ndim != 2 or len(z) < 2 * n_components:
            raise GalSimValueError("need (N, D) latents with N >= 2 * n_components", z.shape)
        gm = GaussianMixture(
            n_components, covariance_type="full", random_state=seed, reg_covar=1e-4
        ).fit(z)
        k = z.shape[1] - len(aux)
        m = {
            "sklearn_version": sklearn.__version__,
            "n_fit": int(len(z)),
            "n_components": int(n_components),
            **(meta or {}),
            "aux": list(aux),
            # where the fit saw data: conditioning beyond it extrapolates (sample_given warns)
            "aux_range": {
                name: [float(z[:, k + i].min()), float(z[:, k + i].max())]
                for i, name in enumerate(aux)
            },
        }
        return cls(gm.weights_, gm.means_, gm.covariances_, m)

    def sample(self, n: int, rng) -> np.ndarray:
        """``n`` latents drawn with the ``galsim.BaseDeviate`` ``rng``."""
        return self.sample_joint(n, rng)[0]

    def sample_joint(self, n: int, rng) -> tuple[np.ndarray, dict]:
        """``n`` latents and their ``aux`` values, drawn together: ``(latents, {name: (n,)})``."""
        n = check_count(n)
        rng = as_deviate(rng)
        u = rng.np.random(n)
        comp = np.searchsorted(np.cumsum(self.weights), u * self.weights.sum())
        comp = np.minimum(comp, len(self.weights) - 1)
        dim = self.means.shape[1]
        g = rng.np.standard_normal(n * dim)
        x = self.means[comp] + np.einsum("nij,nj->ni", self._chol[comp], g.reshape(n, dim))
        k = self.latent_dim
        return x[:, :k], {name: x[:, k + i] for i, name in enumerate(self.aux_names)}

    def sample_given(self, rng, *, check_range=True, **given) -> tuple[np.ndarray, dict]:
        """Latents and the other ``aux`` values drawn given some ``aux`` values: the mixture
        conditioned on them (each component reweighted by how well it explains them, its
        Gaussian conditioned in closed form). One draw per given value.

        Parameters:
            rng: ``galsim.BaseDeviate``.
            check_range: warn when given values lie outside the range the density was fitted
                on (a caller that has said so in its own terms passes False). [default: True]
            **given: ``aux`` name -> ``(n,)`` values (e.g. ``log10_flux``); all of one length.

        Returns:
            tuple: ``(latents (n, latent_dim), {aux name: (n,)})``, the given ones included.
        """
        unknown = [k for k in given if k not in self.aux_names]
        if unknown or not given:
            raise GalSimValueError(
                "can condition only on the quantities modelled beside the latents",
                unknown or None,
                self.aux_names,
            )
        vals = [np.atleast_1d(np.asarray(v, dtype=float)) for v in given.values()]
        n = len(vals[0])
        if any(v.ndim != 1 or len(v) != n for v in vals) or n == 0:
            raise GalSimValueError(
                "give one value per draw, all of one length", [len(v) for v in vals]
            )
        if not all(np.isfinite(v).all() for v in vals):
            raise GalSimValueError("conditioning values must be finite", given)
        ranges = self.meta.get("aux_range", {}) if check_range else {}
        for name, v in zip(given, vals):
            lo, hi = ranges.get(name, (-np.inf, np.inf))
            out = int(np.sum((v < lo) | (v > hi)))
            if out:
                warnings.warn(
                    f"{out} of {n} {name} values lie outside the range the density was fitted "
                    f"on ({lo:.3g} to {hi:.3g}): drawn by extrapolating its Gaussians",
                    GalSimWarning,
                    stacklevel=2,
                )
        k = self.latent_dim
        gi = np.array([k + self.aux_names.index(name) for name in given])
        oi, sgg, logdet, a, chol_o = self._conditioned(tuple(gi))
        g = np.column_stack(vals)  # (n, G)
        m = self.means
        # Each component's weight given g: w_k N(g; m_g, S_gg), normalised per draw.
        dg = g[:, None, :] - m[None][:, :, gi]  # (n, K, G)
        sol = np.linalg.solve(sgg[None], dg[..., None])[..., 0]
        logw = np.log(self.weights) - 0.5 * (np.einsum("nkg,nkg->nk", dg, sol) + logdet)
        p = np.exp(logw - logw.max(axis=1, keepdims=True))
        cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
        rng = as_deviate(rng)
        u = rng.np.random(n)
        comp = np.minimum((cdf < u[:, None]).sum(axis=1), len(self.weights) - 1)
        eps = rng.np.standard_normal((n, len(oi)))
        xo = np.empty((n, len(oi)))
        for j in np.unique(comp):  # by component: no (n, O, O) stack of factors
            r = np.flatnonzero(comp == j)
            xo[r] = m[j, oi] + dg[r, j] @ a[j].T + eps[r] @ chol_o[j].T
        x = np.empty((n, self.means.shape[1]))
        x[:, oi], x[:, gi] = xo, g
        return x[:, :k], {name: x[:, k + i] for i, name in enumerate(self.aux_names)}

    def _conditioned(self, gi: tuple) -> tuple:
        """What conditioning on the columns ``gi`` needs, per component, computed once per set
        of columns (a galaxy drawn per config object asks again and again): the other columns
        ``oi``, ``S_gg`` and its log determinant, the regression ``S_og S_gg^-1`` of the others
        on the given, and the Cholesky factors of the conditioned covariances."""
        cache = self.__dict__.setdefault("_conditioned_cache", {})
        if gi not in cache:
            gi_ = np.array(gi)
            c = self.covariances
            oi = np.setdiff1d(np.arange(self.means.shape[1]), gi_)
            sgg = c[:, gi_][:, :, gi_]  # (K, G, G)
            sog = c[:, oi][:, :, gi_]  # (K, O, G)
            a = np.einsum("kog,kgh->koh", sog, np.linalg.inv(sgg))  # regression of o on g
            cov_o = c[:, oi][:, :, oi] - np.einsum("kog,kpg->kop", a, sog)
            try:
                chol_o = np.linalg.cholesky(cov_o)
            except np.linalg.LinAlgError as e:
                raise GalSimValueError(
                    f"a conditioned component is not positive definite ({e})", None
                ) from e
            cache[gi] = (oi, sgg, np.linalg.slogdet(sgg)[1], a, chol_o)
        return cache[gi]

    @property
    def magnitude_prior(self):
        """The F814W magnitude distribution sampled galaxies get by default, when the file has
        one: ``(edges, counts)`` of a histogram; None otherwise."""
        mp = self.meta.get("magnitude_prior")
        if not mp:
            return None
        return np.asarray(mp["edges"], dtype=float), np.asarray(mp["counts"], dtype=float)

    def sample_magnitudes(self, n: int, rng) -> np.ndarray:
        """``n`` magnitudes from :attr:`magnitude_prior` (uniform within each bin)."""
        prior = self.magnitude_prior
        if prior is None:
            raise GalSimValueError("this density has no magnitude distribution", None)
        edges, counts = prior
        u = as_deviate(rng).np.random(2 * check_count(n))
        cdf = np.cumsum(counts) / counts.sum()
        b = np.minimum(np.searchsorted(cdf, u[:n], side="right"), len(counts) - 1)
        return edges[b] + u[n:] * (edges[b + 1] - edges[b])

    @property
    def redshift_prior(self):
        """Photometric redshifts and F814W magnitudes of COSMOS galaxies, for drawing galaxies
        at a redshift, when the file has them: ``(zphot, mag)`` arrays; None otherwise."""
        rp = self.meta.get("redshift_prior")
        if not rp:
            return None
        return np.asarray(rp["zphot"], dtype=float), np.asarray(rp["mag"], dtype=float)

    def magnitudes_at_redshift(self, redshift, rng) -> np.ndarray:
        """One F814W magnitude per redshift: that of a COSMOS galaxy drawn at random among the
        :data:`REDSHIFT_NEIGHBOURS` of :attr:`redshift_prior` whose photometric redshifts are
        nearest. The density itself knows no redshift: a redshift acts through the magnitudes
        of real galaxies there (and the density's shapes and sizes given a magnitude).

        Parameters:
            redshift: one redshift, or an array of them.
            rng: ``galsim.BaseDeviate``, seed or None.

        Returns:
            numpy.ndarray of magnitudes, one per redshift (shape of ``np.atleast_1d``).

        Raises:
            GalSimValueError: the density has no redshifts (fit-density --magnitudes cosmos
                stores them).
            GalSimRangeError: a redshift that is not finite and positive, or where the catalog
                has fewer than :data:`REDSHIFT_NEIGHBOURS` galaxies within
                :data:`REDSHIFT_WINDOW` ``* (1 + z)``.
        """
        prior = self.redshift_prior
        if prior is None:
            raise GalSimValueError(
                "this density has no redshifts (refit it: galsim-vae fit-density --magnitudes "
                "cosmos)",
                None,
            )
        zcat, mcat = prior
        try:
            z_all = np.atleast_1d(np.asarray(redshift, dtype=float))
        except (TypeError, ValueError):
            raise GalSimValueError("redshifts must be numbers", redshift) from None
        if z_all.ndim != 1 or not np.all(np.isfinite(z_all) & (z_all > 0)):
            raise GalSimRangeError(
                "redshifts must be finite and positive, one or a list", redshift, 0
            )
        z, back = np.unique(z_all, return_inverse=True)  # one neighbour search per redshift
        k = min(REDSHIFT_NEIGHBOURS, len(zcat))
        near = np.argsort(np.abs(zcat[None, :] - z[:, None]), axis=1, kind="stable")[:, :k]
        reach = np.abs(zcat[near[:, -1]] - z)
        far = reach > REDSHIFT_WINDOW * (1 + z)
        if far.any():
            ok = [
                t
                for t in np.arange(0.01, zcat.max() + 0.01, 0.01)
                if np.sort(np.abs(zcat - t))[k - 1] <= REDSHIFT_WINDOW * (1 + t)
            ]
            raise GalSimRangeError(
                f"too few COSMOS galaxies near redshift {z[far][0]:g}: fewer than {k} within "
                f"{REDSHIFT_WINDOW} (1 + z)",
                float(z[far][0]),
                round(float(min(ok)), 2) if ok else None,
                round(float(max(ok)), 2) if ok else None,
            )
        pick = (as_deviate(rng).np.random(len(z_all)) * k).astype(int)
        return mcat[near[back.ravel(), np.minimum(pick, k - 1)]]

    def log_prob(self, latents) -> np.ndarray:
        """Log density of each latent: of the latents alone (the marginal of a joint density), or
        of latents with their auxiliary columns (``aux_names``) appended."""
        from scipy.stats import multivariate_normal

        z = np.atleast_2d(np.asarray(latents, dtype=float))
        k = z.shape[1]
        if k not in (self.latent_dim, self.means.shape[1]):
            raise GalSimValueError(
                f"latents must have {self.latent_dim} columns (or {self.means.shape[1]} with "
                f"{', '.join(self.aux_names)})"
                if self.aux_names
                else f"latents must have {self.latent_dim} columns",
                z.shape,
            )
        comps = [
            np.log(w) + multivariate_normal(m[:k], c[:k, :k]).logpdf(z)
            for w, m, c in zip(self.weights, self.means, self.covariances)
        ]
        return np.logaddexp.reduce(np.atleast_2d(np.array(comps)), axis=0)

    def save(self, path) -> Path:
        """Write ``path`` (``.npz``, no pickled objects) atomically."""
        arrays = {"weights": self.weights, "means": self.means, "covariances": self.covariances}
        return save_arrays(path, arrays, self.meta)

    @classmethod
    def load(cls, path) -> LatentDensity:
        """Read a file written by :meth:`save` (``allow_pickle=False``)."""
        a, meta = load_arrays(path, "latent density", ("weights", "means", "covariances"))
        try:
            return cls(a["weights"], a["means"], a["covariances"], meta)
        except (ValueError, np.linalg.LinAlgError) as e:
            raise GalSimValueError(f"Not a valid latent density file ({e})", str(path)) from e
