"""A latent density learned from encoded training stamps (a Gaussian mixture).

Sampling latents from the unit-Gaussian prior gives galaxies the model rarely saw, since a
Beta-VAE's aggregate posterior is not the prior. A Gaussian mixture fitted (scikit-learn) to the
latent means of the training stamps follows it. The fitted mixture is stored without pickle, as an
``.npz`` of its arrays plus a JSON header (scikit-learn version, number of components, source), and
sampled with a GalSim random deviate.
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
    def latent_dim(self) -> int:
        return self.means.shape[1]

    @classmethod
    def fit(cls, latents, *, n_components=16, seed=0, meta=None) -> LatentDensity:
        """Fit a full-covariance mixture to ``latents`` ``(N, D)`` with scikit-learn."""
        import sklearn
        from sklearn.mixture import GaussianMixture

        z = np.asarray(latents, dtype=float)
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
        }
        return cls(gm.weights_, gm.means_, gm.covariances_, m)

    def sample(self, n: int, rng) -> np.ndarray:
        """``n`` latents drawn with the ``galsim.BaseDeviate`` ``rng``."""
        import galsim

        n = check_count(n)
        ud = galsim.UniformDeviate(rng)
        u = np.empty(n)
        ud.generate(u)
        comp = np.searchsorted(np.cumsum(self.weights), u * self.weights.sum())
        comp = np.minimum(comp, len(self.weights) - 1)
        g = np.empty(n * self.latent_dim)
        galsim.GaussianDeviate(rng).generate(g)
        g = g.reshape(n, self.latent_dim)
        return self.means[comp] + np.einsum("nij,nj->ni", self._chol[comp], g)

    def log_prob(self, latents) -> np.ndarray:
        """Log density of each latent."""
        from scipy.stats import multivariate_normal

        z = np.atleast_2d(np.asarray(latents, dtype=float))
        comps = [
            np.log(w) + multivariate_normal(m, c).logpdf(z)
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
