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

from pathlib import Path

import numpy as np

from ._utils import check_count, load_arrays, save_arrays
from .errors import GalSimValueError

__all__ = ["LatentDensity"]


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
        m = {
            "sklearn_version": sklearn.__version__,
            "n_fit": int(len(z)),
            "n_components": int(n_components),
            **(meta or {}),
            "aux": list(aux),
        }
        return cls(gm.weights_, gm.means_, gm.covariances_, m)

    def sample(self, n: int, rng) -> np.ndarray:
        """``n`` latents drawn with the ``galsim.BaseDeviate`` ``rng``."""
        return self.sample_joint(n, rng)[0]

    def sample_joint(self, n: int, rng) -> tuple[np.ndarray, dict]:
        """``n`` latents and their ``aux`` values, drawn together: ``(latents, {name: (n,)})``."""
        import galsim

        n = check_count(n)
        ud = galsim.UniformDeviate(rng)
        u = np.empty(n)
        ud.generate(u)
        comp = np.searchsorted(np.cumsum(self.weights), u * self.weights.sum())
        comp = np.minimum(comp, len(self.weights) - 1)
        dim = self.means.shape[1]
        g = np.empty(n * dim)
        galsim.GaussianDeviate(rng).generate(g)
        x = self.means[comp] + np.einsum("nij,nj->ni", self._chol[comp], g.reshape(n, dim))
        k = self.latent_dim
        return x[:, :k], {name: x[:, k + i] for i, name in enumerate(self.aux_names)}

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
