"""galsim_vae: a variational-autoencoder galaxy model for GalSim.

Learns HST COSMOS galaxy stamps with a convolutional VAE (Danilov 2020) and draws the decoder's
galaxies as GalSim objects.
"""

from . import metrics, stamps
from ._version import __version__
from .dataset import StampDataset, read_dataset, write_dataset
from .metrics import QualityCuts, denormalize, normalize
from .simulate import COSMOSLikeSimulator, simulate
from .stamps import real_stamps

__all__ = [
    "__version__",
    "metrics",
    "stamps",
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
