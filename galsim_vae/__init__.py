"""galsim_vae: a variational-autoencoder galaxy model for GalSim.

Learns HST COSMOS galaxy stamps with a convolutional VAE (Danilov 2020) and draws the decoder's
galaxies as GalSim objects: ``galsim_vae.VAEGalaxy(latent)`` is a ``GSObject``, and
``modules: [galsim_vae]`` in a GalSim YAML file registers the ``vae_model`` input and the
``VAEGalaxy`` object type.
"""

from . import config, metrics, stamps  # config registers the GalSim config types
from ._version import __version__
from .dataset import StampDataset, read_dataset, write_dataset
from .density import LatentDensity
from .galaxy import VAEGalaxy, hst_f814w_psf, reconvolve
from .metrics import QualityCuts, denormalize, normalize
from .model import VAEModel, default_model_path, estimate_attributes, get_model
from .simulate import COSMOSLikeSimulator, simulate
from .stamps import real_stamps

__all__ = [
    "__version__",
    "config",
    "metrics",
    "stamps",
    "VAEGalaxy",
    "VAEModel",
    "get_model",
    "estimate_attributes",
    "default_model_path",
    "LatentDensity",
    "hst_f814w_psf",
    "reconvolve",
    "QualityCuts",
    "normalize",
    "denormalize",
    "real_stamps",
    "COSMOSLikeSimulator",
    "simulate",
    "StampDataset",
    "read_dataset",
    "write_dataset",
]
