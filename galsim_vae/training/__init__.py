"""Training: the losses (the paper's three and the Gaussian likelihood, :mod:`.losses`) and the
training loop (:mod:`.loop`).

Not imported by ``import galsim_vae``; the networks themselves are in :mod:`galsim_vae.nn` and
weights are read and written only by :mod:`galsim_vae.checkpoint`.
"""

from .loop import TrainConfig, train
from .losses import LOSSES, VAELoss

__all__ = ["LOSSES", "VAELoss", "TrainConfig", "train"]
