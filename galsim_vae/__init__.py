"""galsim_vae: a variational-autoencoder galaxy model for GalSim.

Learns HST COSMOS galaxy stamps with a convolutional VAE (Danilov 2020) and draws the decoder's
galaxies as GalSim objects: ``galsim_vae.VAEGalaxy(latent)`` is a ``GSObject``, and
``modules: [galsim_vae]`` in a GalSim YAML file registers the ``vae_model`` input and the
``VAEGalaxy`` object type.

``import galsim_vae`` loads the GalSim-facing core only (the model, the galaxy, the config types,
the latent density and the attribute model: torch, galsim and numpy). The jobs that make and use
datasets live in sub-packages imported on demand: :mod:`galsim_vae.pipeline` (stamps, the
simulator, dataset files, catalog encoding), :mod:`galsim_vae.training` (losses and the training
loop) and :mod:`galsim_vae.studies` (analyses, validation, Sersic baselines, attribute fitting,
figures); :mod:`galsim_vae.cli` is the ``galsim-vae`` command.

Get a model with :func:`get_model` (shared per file and process).
"""

from . import config  # noqa: F401  (registers the GalSim config types)
from ._version import __version__
from .attributes import AttributeModel
from .density import LatentDensity
from .galaxy import VAEGalaxy, reconvolve
from .model import VAEModel, default_model_path, get_model
from .psf import hst_f814w_psf, psf_from_image
from .scene import draw_scene
from .stamp import denormalize, normalize

__all__ = [
    "__version__",
    "VAEGalaxy",
    "reconvolve",
    "get_model",
    "VAEModel",
    "default_model_path",
    "LatentDensity",
    "AttributeModel",
    "hst_f814w_psf",
    "psf_from_image",
    "draw_scene",
    "normalize",
    "denormalize",
]
