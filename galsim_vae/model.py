"""VAEModel: a trained VAE behind a numpy interface (stamps in, latents out, and back).

This is the object the rest of the package (and users) hold: it owns the torch network, knows the
stamp size, pixel scale and normalisation the network was trained with, and does all batching.
``VAEModel()`` with no argument loads the model shipped with the package; :func:`get_model`
returns one shared instance per file and process.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_vae
from .density import LatentDensity
from .errors import GalSimValueError
from .metrics import denormalize, normalize

__all__ = [
    "DEFAULT_MODEL",
    "default_model_path",
    "density_path",
    "VAEModel",
    "get_model",
    "estimate_attributes",
]

#: File name of the shipped model inside ``galsim_vae/data``.
DEFAULT_MODEL = "default_vae.safetensors"


def density_path(model_file) -> Path:
    """Where the latent density of a model file lives: ``<stem>_density.npz`` beside it."""
    p = Path(model_file)
    return p.with_name(p.name.replace(".safetensors", "") + "_density.npz")


def default_model_path() -> Path:
    """Path of the model shipped with the package."""
    return Path(__file__).resolve().parent / "data" / DEFAULT_MODEL


class VAEModel:
    """A trained galaxy VAE with numpy input and output.

    Args:
        file_name: a weights file written by :func:`galsim_vae.checkpoint.save_vae`; the shipped
            default model when None. [default: None]
        batch_size: images per forward pass. [default: 512]

    Attributes:
        latent_dim: number of latent variables.
        stamp_size: side of the stamps in pixels.
        pixel_scale: arcsec per pixel of the stamps the model was trained on.
        metadata: the weights file's metadata (dict of str).
    """

    def __init__(self, file_name=None, *, batch_size: int = 512):
        path = default_model_path() if file_name is None else Path(file_name)
        self.file_name = str(path)
        self.net, self.metadata = load_vae(path)
        self.config = self.net.config
        self.latent_dim = self.config.latent_dim
        self.stamp_size = self.config.stamp_size
        self.pixel_scale = float(self.metadata["pixel_scale"])
        self.batch_size = int(batch_size)
        ds = json.loads(self.metadata.get("dataset", "{}") or "{}")
        self.dataset_summary = ds
        # Typical normalisation constants of the training stamps, used to give sampled galaxies
        # (which have no stamp of their own) a flux scale.
        self.norm_min = float(ds.get("median_norm_min", 0.0))
        self.norm_max = float(ds.get("median_norm_max", 1.0))
        dens = density_path(path)
        self.density = LatentDensity.load(dens) if dens.is_file() else None
        self._attributes = None

    def __repr__(self):
        return f"galsim_vae.VAEModel({self.file_name!r})"

    @property
    def attributes(self):
        """The attribute model stored beside the weights (``<stem>_attributes.npz``)."""
        from .attributes import AttributeModel, attributes_path

        if self._attributes is None:
            p = attributes_path(self.file_name)
            if not p.is_file():
                raise GalSimValueError(
                    "Model has no attribute file; run galsim-vae fit-attributes", str(p)
                )
            self._attributes = AttributeModel.load(p)
        return self._attributes

    def decoded_sky(self, latents):
        """Normalised sky of latents decoded with the median constants; None without a predictor.

        The attribute file's sky predictor (:meth:`AttributeModel.decoded_sky
        <galsim_vae.attributes.AttributeModel.decoded_sky>`); None when the model has no
        attribute file or the file has no predictor.
        """
        from .attributes import attributes_path

        if self._attributes is None and not attributes_path(self.file_name).is_file():
            return None
        return self.attributes.decoded_sky(self._check_latents(latents))

    def estimate_attributes(self, latents) -> dict:
        """Hubble type (T), half-light radius (arcsec) and axis ratio of latents."""
        return self.attributes.estimate(self._check_latents(latents))

    # Pickled as its file name: the receiving process loads the (checksummed) file itself, once.
    def __getstate__(self):
        return {"file_name": self.file_name, "batch_size": self.batch_size}

    def __setstate__(self, d):
        self.__dict__.update(get_model(d["file_name"]).__dict__)
        self.batch_size = d["batch_size"]

    # -- input checking -------------------------------------------------------------------
    def _check_latents(self, latents) -> np.ndarray:
        z = np.asarray(latents, dtype=np.float64)
        if z.ndim == 1:
            z = z[None]
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise GalSimValueError(
                f"latents must have {self.latent_dim} values per galaxy", z.shape
            )
        if not np.all(np.isfinite(z)):
            raise GalSimValueError(
                "latents contain NaN or infinite values", np.argwhere(~np.isfinite(z)).tolist()
            )
        return z

    def _check_stamps(self, images) -> np.ndarray:
        x = np.asarray(images, dtype=np.float64)
        if x.ndim == 2:
            x = x[None]
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        s = self.stamp_size
        if x.ndim != 3 or x.shape[1:] != (s, s):
            raise GalSimValueError(f"stamps must be {s}x{s} (one channel)", x.shape)
        if not np.all(np.isfinite(x)):
            raise GalSimValueError(
                "stamps contain NaN or infinite pixels", int(np.sum(~np.isfinite(x)))
            )
        return x

    # -- the network ----------------------------------------------------------------------
    @torch.no_grad()
    def encode_normalized(self, normalized) -> tuple[np.ndarray, np.ndarray]:
        """Latent means and sigmas of stamps already normalised to [0, 1], ``(N, latent_dim)``."""
        x = self._check_stamps(normalized)
        mus, sigs = [], []
        for i in range(0, len(x), self.batch_size):
            xb = torch.from_numpy(x[i : i + self.batch_size, None].astype(np.float32))
            mu, logvar = self.net.encoder(xb)
            mus.append(mu.numpy())
            sigs.append(torch.exp(0.5 * logvar).numpy())
        return np.concatenate(mus).astype(np.float64), np.concatenate(sigs).astype(np.float64)

    def encode(self, images) -> dict:
        """Encode stamps in flux units.

        Returns:
            dict: ``mu`` and ``sigma`` ``(N, latent_dim)``, and the per-stamp normalisation
            ``norm_min`` and ``norm_max`` (flux units) needed to return a decoded stamp to flux.
        """
        x = self._check_stamps(images)
        norm, vmin, vmax = normalize(x)
        mu, sigma = self.encode_normalized(norm)
        return {
            "mu": mu,
            "sigma": sigma,
            "norm_min": np.atleast_1d(vmin),
            "norm_max": np.atleast_1d(vmax),
        }

    @torch.no_grad()
    def decode(self, latents) -> np.ndarray:
        """Decoded stamps in [0, 1], ``(N, S, S)`` float64."""
        z = self._check_latents(latents)
        out = []
        for i in range(0, len(z), self.batch_size):
            zb = torch.from_numpy(z[i : i + self.batch_size].astype(np.float32))
            out.append(self.net.decoder(zb)[:, 0].numpy())
        return np.concatenate(out).astype(np.float64)

    def decode_flux(self, latents, norm_min=None, norm_max=None) -> np.ndarray:
        """Decoded stamps returned to flux units with the given (or typical) normalisation."""
        d = self.decode(latents)
        lo = self.norm_min if norm_min is None else norm_min
        hi = self.norm_max if norm_max is None else norm_max
        lo = np.broadcast_to(np.asarray(lo, dtype=float), (len(d),))
        hi = np.broadcast_to(np.asarray(hi, dtype=float), (len(d),))
        return denormalize(d, lo, hi)

    def reconstruct(self, images) -> np.ndarray:
        """Encode then decode (at the latent means) stamps in flux units; flux units out."""
        enc = self.encode(images)
        return self.decode_flux(enc["mu"], enc["norm_min"], enc["norm_max"])

    def sample_latents(self, n: int, rng=None, *, sampling: str = "density") -> np.ndarray:
        """``n`` latents drawn with a ``galsim.BaseDeviate`` (or an int seed).

        Args:
            n: number of latents.
            rng: ``galsim.BaseDeviate`` or int seed; a fresh deviate when None. [default: None]
            sampling: ``"prior"`` (unit Gaussian) or ``"density"`` (the latent density shipped
                with the model; falls back to an error when the model has none).
                [default: "density"]
        """
        import galsim

        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise GalSimValueError("n must be a non-negative integer", n)
        if rng is None:
            rng = galsim.BaseDeviate()
        elif isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
            rng = galsim.BaseDeviate(int(rng))
        elif not isinstance(rng, galsim.BaseDeviate):
            raise TypeError(f"rng must be a galsim.BaseDeviate or an int seed, got {rng!r}")
        if sampling == "density":
            if self.density is None:
                raise GalSimValueError(
                    f"Model {self.file_name} has no latent density file; use sampling='prior'",
                    str(density_path(self.file_name)),
                )
            return self.density.sample(int(n), rng)
        if sampling != "prior":
            raise GalSimValueError("Unknown sampling", sampling, ("prior", "density"))
        z = np.empty(n * self.latent_dim)
        galsim.GaussianDeviate(rng).generate(z)
        return z.reshape(n, self.latent_dim)


@lru_cache(maxsize=8)
def _cached(path: str, mtime: float) -> VAEModel:
    return VAEModel(path)


def get_model(file_name=None) -> VAEModel:
    """The shared :class:`VAEModel` of ``file_name`` (default model when None) in this process.

    Loaded once per file and process (reloaded if the file changes), so GalSim config runs and
    sampling loops do not read the weights again for every galaxy.
    """
    path = (default_model_path() if file_name is None else Path(file_name)).resolve()
    if not path.is_file():
        raise GalSimValueError("Model file not found", str(path))
    return _cached(str(path), path.stat().st_mtime)


def estimate_attributes(latents, model=None) -> dict:
    """Hubble type (T), half-light radius (arcsec) and axis ratio of latent vectors, from the
    attribute model of ``model`` (the shipped one when None)."""
    return get_model(model).estimate_attributes(latents)
