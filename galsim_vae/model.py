"""VAEModel: a trained VAE behind a numpy interface (stamps in, latents out, and back).

This is the object the rest of the package (and users) hold: it owns the torch network, knows the
stamp size, pixel scale and normalisation the network was trained with, and does all batching.

How to get one: :func:`get_model` (``get_model()`` for the shipped model, ``get_model(file)`` for
another), which loads each file once per process and hands every caller the same instance, as
GalSim config runs, ``VAEGalaxy`` and the CLI do. Build ``VAEModel(file)`` directly only when you
need an instance of your own: another ``batch_size``, or a model object you will change. Whatever
a model does is a method of it: ``get_model().estimate_attributes(latents)`` estimates the
attributes of latents, ``get_model().attributes`` is its :class:`~galsim_vae.AttributeModel`.
"""

from __future__ import annotations

import json
import os
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ._utils import as_deviate, check_count
from .attributes import AttributeModel, attributes_path
from .checkpoint import load_vae
from .density import LatentDensity
from .errors import (
    GalSimIncompatibleValuesError,
    GalSimRangeError,
    GalSimValueError,
    GalSimWarning,
)
from .nn import FusedDecoder, FusedEncoder
from .psf import F814W_ZEROPOINT
from .stamp import (
    REPRESENTATIONS,
    border_noise,
    border_pixels,
    check_stamps,
    denormalize,
    flux_denormalize,
    flux_normalize,
    normalize,
)

__all__ = [
    "DEFAULT_MODEL",
    "PRECISIONS",
    "REFINE_STEPS",
    "tune_allocator",
    "default_model_path",
    "density_path",
    "VAEModel",
    "get_model",
]

#: File name of the shipped model inside ``galsim_vae/data``.
DEFAULT_MODEL = "default_vae.safetensors"
#: The largest latent value accepted (the prior is a unit Gaussian; float32 overflows at 3e38).
MAX_LATENT = 100.0
#: Adam steps of :meth:`VAEModel.refine_latents` unless told otherwise, and its first rate (a
#: cosine decay to zero over the steps). Chosen on 128 random bright held-out simulations
#: (2026-11-28, v6): 20% over the noise floor from the encoder's means, 15.8% after 30 steps,
#: 14.0% after 100, 13.5% after 300.
REFINE_STEPS = 100
REFINE_RATE = 0.05


def _one_thread_after_fork():
    # An OpenMP thread pool does not survive fork(): the child of a process that has run the
    # model (multiprocessing's default "fork" start on Linux) hangs in its first parallel region,
    # torch's or GalSim's (its random-number generation), which share libgomp. One thread in the
    # child never enters the pool; the parent keeps its threads.
    import galsim

    torch.set_num_threads(1)
    galsim.set_omp_threads(1)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_one_thread_after_fork)


#: The network arithmetic a :class:`VAEModel` can use (see its ``precision`` parameter).
PRECISIONS = ("float32", "bfloat16", "auto", "reference")
#: Stamps (or latents) per forward pass: the fastest measured for both precisions on the 2-core
#: development machine (64-256 are within the run-to-run scatter; 512 is 1.5-2x slower, its
#: activations no longer fit in the caches).
DEFAULT_BATCH = 128


def tune_allocator() -> bool:
    """Keep freed memory in this process (glibc's malloc; no-op elsewhere); True when set.

    A forward pass allocates and frees megabytes of activations. Once long-lived small objects
    sit above them in the heap, glibc returns the freed top of the heap to the system after every
    batch and the next batch page-faults it back: measured, the network then runs at half its
    rate (docs/performance.md). Raising the mmap threshold to 32 MB (glibc's largest; a batch's
    activations are below 17 MB) and the trim threshold to 512 MB keeps that memory in the
    process (its resident size stays at its peak, up to 512 MB more). The package's commands
    and :func:`~galsim_vae.pipeline.encode.encode_catalog` call this in the processes they run;
    call it in your own script before long encoding or decoding,
    or set ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=536870912`` before Python
    starts.
    """
    global _ALLOCATOR_TUNED
    if not _ALLOCATOR_TUNED:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
            mallopt = libc.mallopt if libc is not None else None
        except (OSError, AttributeError):  # not glibc
            mallopt = None
        if mallopt is not None:
            # M_MMAP_THRESHOLD = -3 first (setting it or the trim threshold ends glibc's
            # adaptive thresholds: the trim one alone would leave mmap at 128 kB), then
            # M_TRIM_THRESHOLD = -1 (malloc.h).
            if mallopt(-3, 32 << 20):
                _ALLOCATOR_TUNED = bool(mallopt(-1, 512 << 20))
    return _ALLOCATOR_TUNED


_ALLOCATOR_TUNED = False


def _bf16_faster(net) -> bool:
    """Whether the fused encoder runs faster in bfloat16 than in float32 on this CPU, measured
    (best of 3 batches each, ~0.2 s once per process and architecture). CPUs without native
    bfloat16 arithmetic emulate it, slower than float32."""
    key = net.config.to_json()
    if key not in _BF16_FASTER:
        import time

        x = torch.rand(DEFAULT_BATCH, 1, net.config.stamp_size, net.config.stamp_size)
        best = {}
        with torch.inference_mode():
            for dtype in (torch.float32, torch.bfloat16):
                enc = FusedEncoder(net.encoder, dtype)
                try:
                    enc(x[:8])
                except RuntimeError:  # no bfloat16 kernels on this CPU
                    best[dtype] = float("inf")
                    continue
                times = []
                for _ in range(3):
                    t = time.perf_counter()
                    enc(x)
                    times.append(time.perf_counter() - t)
                best[dtype] = min(times)
        _BF16_FASTER[key] = best[torch.bfloat16] < 0.8 * best[torch.float32]
    return _BF16_FASTER[key]


_BF16_FASTER: dict = {}


def _resolve_precision(net, precision: str) -> str:
    if precision == "auto":
        return "bfloat16" if _bf16_faster(net) else "float32"
    return precision


def density_path(model_file) -> Path:
    """Where the latent density of a model file lives: ``<stem>_density.npz`` beside it."""
    p = Path(model_file)
    return p.with_name(p.name.replace(".safetensors", "") + "_density.npz")


def default_model_path() -> Path:
    """Path of the model shipped with the package."""
    return Path(__file__).resolve().parent / "data" / DEFAULT_MODEL


class VAEModel:
    """A trained galaxy VAE with numpy input and output.

    Users get the shared instance of a file with :func:`get_model`; build one directly only for an
    instance of your own (another ``batch_size``).

    Parameters:
        file_name: a weights file written by :func:`galsim_vae.checkpoint.save_vae`; the shipped
            default model when None. [default: None]
        batch_size: images per forward pass. [default: 128, the fastest measured on the
            2-core development machine (docs/performance.md)]
        precision: arithmetic of the network: ``"float32"`` (the trained network with its
            BatchNorm folded into the convolutions, equal to the training network to float32
            rounding), ``"bfloat16"`` (the same, in bfloat16: latent means within a median 1-2%
            of their posterior sigma, decoded stamps within a median ~0.5% of their peak, and
            twice as fast on CPUs with native bfloat16), ``"auto"`` (bfloat16 where it measures
            faster on this CPU, float32 otherwise) or ``"reference"`` (the training network
            itself, unfused float32). [default: "float32"]

    Attributes:
        latent_dim: number of latent variables.
        stamp_size: side of the stamps in pixels.
        pixel_scale: arcsec per pixel of the stamps the model was trained on (the median, for a
            model trained on stamps of per-galaxy scales: what a galaxy gets when its own scale
            is not known).
        representation: the stamps the network sees, ``"minmax"`` ([0, 1] per stamp, the
            paper's) or ``"flux"`` (divided by their flux; :mod:`galsim_vae.stamp`).
        precision: the precision in use (``"auto"`` resolved).
        metadata: the weights file's metadata (dict of str).
    """

    def __init__(self, file_name=None, *, batch_size: int | None = None, precision="float32"):
        path = default_model_path() if file_name is None else Path(file_name)
        self.file_name = str(path)
        if precision not in PRECISIONS:
            raise GalSimValueError("Unknown precision", precision, PRECISIONS)
        self.net, self.metadata = load_vae(path)
        self.net.eval()
        self.precision = _resolve_precision(self.net, precision)
        if self.precision == "reference":
            self._encoder, self._decoder = self.net.encoder, self.net.decoder
        else:
            dtype = torch.bfloat16 if self.precision == "bfloat16" else torch.float32
            self._encoder = FusedEncoder(self.net.encoder, dtype)
            self._decoder = FusedDecoder(self.net.decoder, dtype)
        self.config = self.net.config
        self.latent_dim = self.config.latent_dim
        self.stamp_size = self.config.stamp_size
        self.pixel_scale = float(self.metadata["pixel_scale"])
        self.representation = self.metadata.get("representation", "minmax")
        if self.representation not in REPRESENTATIONS:
            raise GalSimValueError(
                "Unknown stamp representation in the model file", self.representation
            )
        self.batch_size = DEFAULT_BATCH if batch_size is None else check_count(int(batch_size))
        ds = json.loads(self.metadata.get("dataset", "{}") or "{}")
        self.dataset_summary = ds
        # Typical normalisation constants of the training stamps, used to give sampled galaxies
        # (which have no stamp of their own) a flux scale.
        self.norm_min = float(ds.get("median_norm_min", 0.0))
        self.norm_max = float(ds.get("median_norm_max", 1.0))
        # ... and, for a flux-representation model, a flux.
        self.median_flux = float(ds.get("median_flux", 1.0))
        self._density = None
        self._attributes = None

    def __repr__(self):
        return f"galsim_vae.VAEModel({self.file_name!r}, precision={self.precision!r})"

    def _check_sidecar(self, obj, path, command):
        """Refuse a density or attribute file fitted to other weights than these."""
        sha = obj.meta.get("model_sha256")
        if sha is not None and sha != self.metadata["sha256"]:
            raise GalSimValueError(
                f"{path} was fitted to another model (sha256 {sha[:12]}...) than {self.file_name} "
                f"(sha256 {self.metadata['sha256'][:12]}...); refit it with galsim-vae {command}",
                str(path),
            )
        return obj

    @property
    def density(self) -> LatentDensity | None:
        """The latent density stored beside the weights (``<stem>_density.npz``), or None."""
        if self._density is None:
            p = density_path(self.file_name)
            if not p.is_file():
                return None
            self._density = self._check_sidecar(LatentDensity.load(p), p, "fit-density")
        return self._density

    @property
    def attributes(self) -> AttributeModel:
        """The attribute model stored beside the weights (``<stem>_attributes.npz``)."""
        if self._attributes is None:
            p = attributes_path(self.file_name)
            if not p.is_file():
                raise GalSimValueError(
                    "Model has no attribute file; run galsim-vae fit-attributes", str(p)
                )
            self._attributes = self._check_sidecar(AttributeModel.load(p), p, "fit-attributes")
        return self._attributes

    def sky_free_constants(self, latents, norm_min=None, norm_max=None, *, decoded=None):
        """Normalisation constants that put the decoded sky of each latent at zero.

        A latent decoded with the constants of the stamp it was encoded from has zero sky (the
        decoder learned the mean of zero-mean noise); decoded with any other constants (the
        training set's medians, for a latent drawn from the density or from attributes) it
        has not. Both constants are shifted by the sky of the decoded stamp: the one the
        attribute file's sky predictor gives (:meth:`AttributeModel.decoded_sky
        <galsim_vae.AttributeModel.decoded_sky>`) or, for a model without one, the median of
        the stamp's 4-pixel border (which also removes the faint outskirts of galaxies that
        reach the border).

        Parameters:
            latents: ``(N, latent_dim)`` latents.
            norm_min, norm_max: the constants to shift, scalars or one per latent.
                [default: None, the training set's medians]
            decoded: the latents' decoded stamps in [0, 1], if already at hand (for the border
                median). [default: None]

        Returns:
            tuple: ``(norm_min, norm_max)``, arrays of one value per latent.
        """
        if self.representation != "minmax":
            raise GalSimIncompatibleValuesError(
                "sky_free_constants is for min-max models: a flux-representation model decodes "
                "with zero sky",
                representation=self.representation,
            )
        z = self._check_latents(latents)
        lo, hi = (
            np.broadcast_to(np.asarray(default if v is None else v, dtype=float), (len(z),))
            for v, default in ((norm_min, self.norm_min), (norm_max, self.norm_max))
        )
        sky = None
        if self._attributes is not None or attributes_path(self.file_name).is_file():
            sky = self.attributes.decoded_sky(z)
        if sky is None:
            d = self.decode(z) if decoded is None else np.asarray(decoded, dtype=float)
            sky = np.array([np.median(border_pixels(di)) for di in d])
        shift = lo + sky * (hi - lo)  # the decoded sky in flux units
        return lo - shift, hi - shift

    def estimate_attributes(self, latents, pixel_scale=None) -> dict:
        """Hubble type (T), half-light radius (arcsec) and axis ratio of latents.

        The inverse attribute model (:meth:`AttributeModel.estimate
        <galsim_vae.AttributeModel.estimate>`) of the model's attribute file; the latents are
        those of stamps as they are (any orientation), as :meth:`encode` gives them. A flux
        model's galaxies need their stamps' ``pixel_scale`` (arcsec, one or one per latent).
        """
        return self.attributes.estimate(self._check_latents(latents), pixel_scale)

    # Pickled as its file name: the receiving process loads the (checksummed) file itself, once.
    def __getstate__(self):
        return {
            "file_name": self.file_name,
            "batch_size": self.batch_size,
            "precision": self.precision,
        }

    def __setstate__(self, d):
        precision = d.get("precision", "float32")  # pickles of earlier versions have none
        self.__dict__.update(get_model(d["file_name"], precision=precision).__dict__)
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
        if np.any(np.abs(z) > MAX_LATENT):
            raise GalSimRangeError(
                f"latent values beyond +-{MAX_LATENT:g} lie far outside the latent space the "
                "model was trained on (its prior is a unit Gaussian; the training galaxies' "
                "latents stay within +-10)",
                float(np.abs(z).max()),
                -MAX_LATENT,
                MAX_LATENT,
            )
        return z

    def _check_stamps(self, images) -> np.ndarray:
        return check_stamps(images, size=self.stamp_size)

    # -- the network ----------------------------------------------------------------------
    def normalize(self, images) -> tuple[np.ndarray, dict]:
        """Stamps (flux units) in the model's representation, and the constants that undo it.

        Returns:
            tuple: ``(normalized (N, S, S), constants)``; ``constants`` is ``{"norm_min",
            "norm_max"}`` (min-max) or ``{"flux"}`` (flux), arrays of one value per stamp, the
            keyword arguments of :meth:`decode_flux`.
        """
        x = self._check_stamps(images)
        if self.representation == "minmax":
            norm, vmin, vmax = normalize(x)
            return norm, {"norm_min": np.atleast_1d(vmin), "norm_max": np.atleast_1d(vmax)}
        norm, flux = flux_normalize(x)
        return norm, {"flux": np.atleast_1d(flux)}

    @torch.inference_mode()
    def encode_normalized(self, normalized) -> tuple[np.ndarray, np.ndarray]:
        """Latent means and sigmas of stamps already in the model's representation (see
        :meth:`normalize`), ``(N, latent_dim)``."""
        x = np.ascontiguousarray(check_stamps(normalized, size=self.stamp_size, dtype=np.float32))
        mu_out = np.empty((len(x), self.latent_dim))
        sigma_out = np.empty((len(x), self.latent_dim))
        for i in range(0, len(x), self.batch_size):
            mu, logvar = self._encoder(torch.from_numpy(x[i : i + self.batch_size, None]))
            mu_out[i : i + len(mu)] = mu.numpy()
            sigma_out[i : i + len(mu)] = torch.exp(0.5 * logvar).numpy()
        return mu_out, sigma_out

    def encode(self, images, *, refine: int = 0, noise_sigma=None) -> dict:
        """Encode stamps in flux units.

        Parameters:
            images: one stamp or a stack ``(N, S, S)``, sky-subtracted, flux units.
            refine: flux models: move each latent from the encoder's mean to the mode of its
                posterior under the model in this many steps (:meth:`refine_latents`); 0 keeps
                the encoder's means. [default: 0]
            noise_sigma: with ``refine``, each stamp's noise sigma in flux units (one, or one per
                stamp); measured on the stamps' borders when None. [default: None]

        Returns:
            dict: ``mu`` and ``sigma`` ``(N, latent_dim)``, and the per-stamp constants needed to
            return a decoded stamp to flux: ``norm_min`` and ``norm_max`` (min-max models) or
            ``flux`` (flux models), flux units. With ``refine``, ``mu`` is the refined latent and
            ``sigma`` is still the encoder's.
        """
        refine = int(refine)
        if refine < 0:
            raise GalSimRangeError("refine is a number of steps", refine, 0)
        norm, constants = self.normalize(images)
        mu, sigma = self.encode_normalized(norm)
        if refine:
            x = self._check_stamps(images)
            mu = self.refine_latents(mu, x, noise_sigma, steps=refine)
        return {"mu": mu, "sigma": sigma, **constants}

    def refine_latents(self, latents, images, noise_sigma=None, *, steps: int = REFINE_STEPS):
        """The latents that explain stamps best under the model: the posterior modes.

        The encoder amortises inference: one pass gives every stamp a latent, but not the best
        one the decoder has for it (the "amortisation gap"; Cremer, Li & Duvenaud 2018). This
        takes each stamp's latent from ``latents`` (usually the encoder's mean) and maximises the
        model's own posterior, ``-chi2 / 2 - |z|^2 / 2``, with ``chi2`` the stamp against its
        decoded latent in units of its noise sigma and the unit Gaussian prior the network was
        trained with: ``steps`` Adam steps (first rate :data:`REFINE_RATE`, cosine decay),
        keeping each stamp's best latent seen, so no stamp ends worse than it started. Each
        stamp is refined on its own (its result does not depend on the others in the batch).
        Flux models only: they have the Gaussian likelihood this maximises.

        Parameters:
            latents: ``(N, latent_dim)`` starting latents.
            images: ``(N, S, S)`` stamps in flux units, sky subtracted.
            noise_sigma: each stamp's noise sigma in flux units (one, or one per stamp); the
                median of the standard deviations of each stamp's border blocks when None
                (:func:`galsim_vae.stamp.border_noise`). [default: None]
            steps: Adam steps. [default: :data:`REFINE_STEPS`]

        Returns:
            numpy.ndarray: ``(N, latent_dim)`` refined latents.
        """
        if self.representation != "flux":
            raise GalSimValueError(
                "refining latents needs a flux model (a Gaussian likelihood of each stamp's "
                "noise); this one has min-max stamps",
                self.representation,
            )
        steps = int(steps)
        if steps < 1:
            raise GalSimRangeError("steps must be at least 1", steps, 1)
        z0 = self._check_latents(latents)
        x = self._check_stamps(images).astype(float)
        if len(x) != len(z0):
            raise GalSimIncompatibleValuesError(
                "one stamp per latent", latents=z0.shape, images=x.shape
            )
        sig = border_noise(x) if noise_sigma is None else np.asarray(noise_sigma, float)
        sig = np.broadcast_to(np.atleast_1d(sig), (len(x),)).astype(float)
        if np.any(~np.isfinite(sig)) or np.any(sig < 0):
            raise GalSimValueError("noise_sigma must be finite and not negative", noise_sigma)
        norm, flux = flux_normalize(x)
        s = self.stamp_size
        # Noise in the network's units; a noiseless stamp gets a sigma far below its peak, which
        # leaves its latent a least-squares fit.
        peak = np.abs(norm).max(axis=(1, 2))
        sig_n = np.maximum(sig * s / flux, 1e-5 * peak)
        dec = self.net.decoder
        out = np.empty_like(z0)
        for i in range(0, len(x), self.batch_size):
            sl = slice(i, i + self.batch_size)
            out[sl] = self._refine_batch(dec, z0[sl], norm[sl], sig_n[sl], steps)
        return np.clip(out, -MAX_LATENT, MAX_LATENT)

    @staticmethod
    def _refine_batch(dec, z0, norm, sig_n, steps):
        with torch.enable_grad():
            z = torch.tensor(z0, dtype=torch.float32, requires_grad=True)
            target = torch.as_tensor(norm[:, None], dtype=torch.float32)
            w = torch.as_tensor(1.0 / sig_n, dtype=torch.float32)[:, None, None, None]
            opt = torch.optim.Adam([z], lr=REFINE_RATE)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
            best = torch.full((len(z0),), float("inf"))
            best_z = z.detach().clone()
            for k in range(steps + 1):
                r = ((dec(z) - target) * w) ** 2
                per = 0.5 * r.sum(dim=(1, 2, 3)) + 0.5 * (z**2).sum(dim=1)
                better = per.detach() < best
                best = torch.where(better, per.detach(), best)
                best_z[better] = z.detach()[better]
                if k == steps:
                    break
                (g,) = torch.autograd.grad(per.sum(), z)
                z.grad = g
                opt.step()
                sched.step()
        return best_z.double().numpy()

    @torch.inference_mode()
    def decode(self, latents) -> np.ndarray:
        """Decoded stamps in the model's representation, ``(N, S, S)`` float64."""
        z = self._check_latents(latents).astype(np.float32)
        out = np.empty((len(z), self.stamp_size, self.stamp_size))
        for i in range(0, len(z), self.batch_size):
            d = self._decoder(torch.from_numpy(z[i : i + self.batch_size]))
            out[i : i + len(d)] = d[:, 0].numpy()
        return out

    def decode_flux(self, latents, norm_min=None, norm_max=None, *, flux=None) -> np.ndarray:
        """Decoded stamps returned to flux units with the given (or typical) constants.

        Parameters:
            latents: ``(N, latent_dim)``.
            norm_min, norm_max: min-max models' constants, one or one per latent. [default:
                None, the training set's medians]
            flux: flux models' fluxes, one or one per latent. [default: None, the training
                set's median]
        """
        d = self.decode(latents)
        if self.representation == "flux":
            if norm_min is not None or norm_max is not None:
                raise GalSimIncompatibleValuesError(
                    "a flux-representation model takes flux=, not norm_min/norm_max",
                    norm_min=norm_min,
                    norm_max=norm_max,
                )
            f = np.broadcast_to(
                np.asarray(self.median_flux if flux is None else flux, float), (len(d),)
            )
            return flux_denormalize(d, f)
        if flux is not None:
            raise GalSimIncompatibleValuesError(
                "a min-max model takes norm_min/norm_max, not flux=", flux=flux
            )
        lo = self.norm_min if norm_min is None else norm_min
        hi = self.norm_max if norm_max is None else norm_max
        lo = np.broadcast_to(np.asarray(lo, dtype=float), (len(d),))
        hi = np.broadcast_to(np.asarray(hi, dtype=float), (len(d),))
        return denormalize(d, lo, hi)

    def reconstruct(self, images) -> np.ndarray:
        """Encode then decode (at the latent means) stamps in flux units; flux units out."""
        enc = self.encode(images)
        return self.decode_flux(enc.pop("mu"), **{k: v for k, v in enc.items() if k != "sigma"})

    def sample_latents(self, n: int, rng=None, *, sampling: str = "density") -> np.ndarray:
        """``n`` latents drawn with a ``galsim.BaseDeviate`` (or an int seed).

        Parameters:
            n: number of latents.
            rng: ``galsim.BaseDeviate`` or int seed; a fresh deviate when None. [default: None]
            sampling: ``"prior"`` (unit Gaussian) or ``"density"`` (the latent density shipped
                with the model; falls back to an error when the model has none).
                [default: "density"]
        """
        n = check_count(n)
        rng = as_deviate(rng)
        if sampling == "density":
            if self.density is None:
                raise GalSimValueError(
                    f"Model {self.file_name} has no latent density file; use sampling='prior'",
                    str(density_path(self.file_name)),
                )
            return self.density.sample(int(n), rng)
        if sampling != "prior":
            raise GalSimValueError("Unknown sampling", sampling, ("prior", "density"))
        z = as_deviate(rng).np.standard_normal(n * self.latent_dim)
        return z.reshape(n, self.latent_dim)

    def sample_population(
        self, n: int, rng=None, *, sampling: str = "density", magnitude=None
    ) -> dict:
        """``n`` galaxies' latents, with their pixel scales and fluxes where the model knows them.

        A flux-representation model whose latent density was fitted jointly on latents, pixel
        scales and fluxes draws all three together, so sizes, fluxes and shapes come with their
        correlations; otherwise every galaxy gets the model's pixel scale and no flux (the
        caller's, or the training set's median).

        Magnitudes (F814W AB, ``-2.5 log10(flux) + 25.94``): with ``magnitude=None`` they follow
        the distribution stored with the density (the COSMOS F814W<23.5 sample's, for the
        shipped model; :attr:`LatentDensity.magnitude_prior`) and each galaxy's latent and size
        are drawn given its magnitude (:meth:`LatentDensity.sample_given`); a density without
        one, or ``magnitude="training"``, draws them as the training set has them
        (:meth:`LatentDensity.sample_joint`); ``magnitude="cosmos"`` insists on the stored
        distribution. A number, or one per galaxy, conditions on it.

        Returns:
            dict: ``latent`` ``(n, latent_dim)``, ``pixel_scale`` ``(n,)``, ``flux`` ``(n,)`` or
            None.
        """
        rng = as_deviate(rng)
        n = check_count(n)
        d = self.density
        joint = sampling == "density" and d is not None and "log10_flux" in d.aux_names
        given = None if isinstance(magnitude, str) else magnitude
        if isinstance(magnitude, str):
            if magnitude not in ("cosmos", "training"):
                raise GalSimValueError(
                    "Unknown magnitude", magnitude, (None, "cosmos", "training", "a number")
                )
            if not joint:
                raise GalSimIncompatibleValuesError(
                    f"magnitude={magnitude!r} needs a flux model whose density draws fluxes "
                    "(sampling='density')",
                    magnitude=magnitude,
                    sampling=sampling,
                )
            if magnitude == "cosmos" and d.magnitude_prior is None:
                raise GalSimValueError(
                    f"the density of {self.file_name} has no COSMOS magnitude distribution "
                    "(galsim-vae fit-density --magnitudes cosmos stores one)",
                    str(density_path(self.file_name)),
                )
        if given is not None:
            if not joint:
                raise GalSimIncompatibleValuesError(
                    "magnitude= needs a flux model whose density draws fluxes (sampling='density')",
                    magnitude=magnitude,
                    sampling=sampling,
                )
            given = np.asarray(given, dtype=float)
            if given.ndim > 1 or given.ndim == 1 and len(given) != n:
                raise GalSimValueError(f"give one magnitude or {n}", given.shape)
            if not np.isfinite(given).all():
                raise GalSimRangeError("magnitudes must be finite", given, -np.inf, np.inf)
            given = np.broadcast_to(given, (n,))
            lo, hi = d.meta.get("aux_range", {}).get("log10_flux", (-np.inf, np.inf))
            bright, faint = F814W_ZEROPOINT - 2.5 * hi, F814W_ZEROPOINT - 2.5 * lo
            out = int(np.sum((given < bright) | (given > faint)))
            if out:  # said here in magnitudes, not by the density in log10 flux
                warnings.warn(
                    f"{out} of {n} magnitudes lie outside the F814W range the density was "
                    f"fitted on ({bright:.1f} to {faint:.1f}): their galaxies are drawn by "
                    "extrapolating its Gaussians",
                    GalSimWarning,
                    stacklevel=2,
                )
        elif joint and magnitude != "training" and d.magnitude_prior is not None:
            given = d.sample_magnitudes(n, rng)
        if joint:
            if given is not None:
                # The range was checked above, in magnitudes.
                z, aux = d.sample_given(
                    rng, check_range=False, log10_flux=(F814W_ZEROPOINT - given) / 2.5
                )
            else:
                z, aux = d.sample_joint(n, rng)
            # Scales only where training had them (the mixture's tails reach past them); a
            # training set of one scale has no scale column.
            lo, hi = self.dataset_summary.get("pixel_scale_range", [self.pixel_scale] * 2)
            scale = 10 ** aux.get("log10_pixel_scale", np.log10(self.pixel_scale))
            return {
                "latent": z,
                "pixel_scale": np.clip(np.broadcast_to(scale, (len(z),)), lo, hi),
                "flux": 10 ** aux["log10_flux"],
            }
        z = self.sample_latents(n, rng, sampling=sampling)
        return {"latent": z, "pixel_scale": np.full(len(z), self.pixel_scale), "flux": None}


@lru_cache(maxsize=8)
def _cached(path: str, stamps: tuple, precision: str) -> VAEModel:
    return VAEModel(path, precision=precision)


def _mtime(p: Path):
    return p.stat().st_mtime_ns if p.is_file() else None


def get_model(file_name=None, *, precision: str = "float32") -> VAEModel:
    """The shared :class:`VAEModel` of ``file_name`` (default model when None) in this process.

    This is how to get a model. Loaded once per file and process (reloaded when the weights, or
    the density or attribute file beside them, appear or change), so GalSim config runs and
    sampling loops do not read the weights again for every galaxy.

    Parameters:
        file_name: a weights file. [default: None, the shipped model]
        precision: the network's arithmetic (:class:`VAEModel`'s ``precision``); one shared
            instance per file and precision. [default: "float32"]
    """
    path = (default_model_path() if file_name is None else Path(file_name)).resolve()
    if not path.is_file():
        raise GalSimValueError("Model file not found", str(path))
    if precision not in PRECISIONS:
        raise GalSimValueError("Unknown precision", precision, PRECISIONS)
    files = (path, density_path(path), attributes_path(path))
    return _cached(str(path), tuple(_mtime(p) for p in files), precision)
