"""Studies of a trained model: the paper's analyses, validation against real galaxies, the
Sersic baselines, the attribute-model fit, and every figure.

Not imported by ``import galsim_vae``; import it as ``galsim_vae.studies``.

- :mod:`.analysis`: latent SNR, traversals, reconstructions, rotation, denoising (:func:`evaluate`);
- :mod:`.validation`: HSM and statmorph statistics of real, VAE and Sersic galaxies
  (:func:`validate`);
- :mod:`.sersic`: PSF-convolved Sersic fits by least squares, emcee and pysersic;
- :mod:`.attribute_fit`: the Sersic size estimator and :func:`fit_attribute_model`;
- :mod:`.crossval`: fine-tuning on the real galaxies under k-fold cross-validation;
- :mod:`.plots`: the PNG figures.
"""

from .analysis import evaluate
from .attribute_fit import fit_attribute_model, measure_sersic
from .sersic import fit_sersic_lsq, fit_sersic_mcmc, fit_sersic_pysersic
from .validation import validate

__all__ = [
    "evaluate",
    "validate",
    "fit_sersic_lsq",
    "fit_sersic_mcmc",
    "fit_sersic_pysersic",
    "measure_sersic",
    "fit_attribute_model",
]
