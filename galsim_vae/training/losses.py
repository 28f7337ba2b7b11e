"""The paper's three VAE losses (Danilov 2020, eqs. 3-8), per pixel.

Signs: the paper writes its cross-entropy (eq. 3) as the log-likelihood and its KL term (eq. 4)
as ``0.5 * sum(1 + log_var - mu^2 - exp(log_var))``, which is minus the KL divergence; so
``BCE_loss - KL_loss`` in eq. 5 is the usual positive loss. Here both terms are written as the
positive quantities they stand for:

- ``BCE = -sum_pixels [y log p + (1 - y) log(1 - p)]`` (>= 0), per image;
- ``KL = -0.5 * sum_latents (1 + log_var - mu^2 - exp(log_var))`` (>= 0), per image.

and the three losses, averaged over the batch and divided by the number of pixels (64*64):

- ``original`` (eq. 5): ``(BCE + KL) / npix``;
- ``beta`` (eq. 7, Beta-VAE): ``(BCE + beta * KL) / npix``, paper ``beta = 1e-2``;
- ``flow`` (eq. 8, "Flow-VAE", KL-constrained): ``(BCE + min(KL, lambda)) / npix``, which is the
  paper's ``BCE_loss - max(-lambda, KL_loss)``: the KL term of each image stops counting (and
  pulling its latents to the prior) once it exceeds ``lambda`` nats.

These three take [0, 1] stamps (the ``"minmax"`` representation, sigmoid decoder). A fourth
knows the noise:

- ``gauss``: ``(chi2 / 2 + beta * KL) / npix`` with ``chi2 = sum_pixels ((recon - y) / sigma)^2``
  and ``sigma`` each stamp's own noise level: the Gaussian likelihood of the stamp, for
  flux-normalised stamps (the ``"flux"`` representation, linear decoder). With ``beta = 1`` it is
  the evidence lower bound itself; its reconstruction term per pixel is half the chi2 per pixel.

A galaxy's light is never negative, so the mean image a decoder should give is nowhere below
zero; ``gauss`` may add ``positivity * neg / 2`` with ``neg = sum_pixels (min(recon, 0) /
sigma)^2``, the chi2 of the reconstruction's negative part against zero. Its gradient reaches
only the negative pixels, but the decoder's weights are shared, so the whole image moves: measured
on the shipped model (MODEL_CARD.md, "Tried and not shipped") it removes nearly all negative
light and lifts the floor of faint samples instead (a positive border "sky"); an option, not the
shipped recipe. With it the validation loss includes the term, so best epochs compare only
between runs of the same weight.

Where the noiseless truth of a stamp is known (simulations; ``train --target truth``), ``gauss``
may add ``floor * empty / 2`` with ``empty = sum_pixels ((recon - truth) / sigma)^2`` over the
pixels where the truth is below :data:`FLOOR_THRESHOLD` of its own peak: the galaxy's outskirts
and the sky around it, where the light a decoder puts is its floor. Unlike the positivity term
it pulls that floor to the truth from both sides. Measured on the shipped model (MODEL_CARD.md,
``scripts/compare_floor.sh``), a weight of 10 halved the negative light of its reconstructions
and samples but left their positive floor where it was, at 1% of chi2 and 3% of the sampled
sizes; an option, not the shipped recipe. The same caveat on validation losses holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import GalSimRangeError, GalSimValueError

__all__ = [
    "bce_per_image",
    "kl_per_image",
    "chi2_per_image",
    "VAELoss",
    "LOSSES",
    "REPRESENTATION",
    "FLOOR_THRESHOLD",
]

#: The floor term's pixels: where the noiseless truth is below this fraction of its peak.
FLOOR_THRESHOLD = 0.01

LOSSES = ("original", "beta", "flow", "gauss")
_DEFAULT_PARAM = {"original": 1.0, "beta": 1e-2, "flow": 32.0, "gauss": 1.0}
#: The stamp representation each loss takes (:data:`galsim_vae.stamp.REPRESENTATIONS`).
REPRESENTATION = {"original": "minmax", "beta": "minmax", "flow": "minmax", "gauss": "flux"}


def bce_per_image(recon: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy summed over the pixels of each image, shape ``(B,)``."""
    return F.binary_cross_entropy(recon, target, reduction="none").flatten(1).sum(1)


def chi2_per_image(recon: Tensor, target: Tensor, sigma: Tensor) -> Tensor:
    """``sum_pixels ((recon - target) / sigma)^2`` of each image, ``(B,)``; one sigma per image."""
    r = (recon - target).flatten(1) / sigma.reshape(-1, 1)
    return r.pow(2).sum(1)


def kl_per_image(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL divergence of ``N(mu, exp(logvar))`` from ``N(0, 1)``, summed over latents, ``(B,)``."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


@dataclass(frozen=True)
class VAELoss:
    """One of the paper's losses, or the Gaussian likelihood.

    Attributes:
        kind: ``"original"``, ``"beta"``, ``"flow"`` or ``"gauss"``.
        param: beta for ``beta`` (paper: 1e-2) and ``gauss`` (1: the ELBO), lambda in nats for
            ``flow`` (paper: 4 to 64); ignored for ``original``. [default: by kind]
        positivity: weight of the negative part's chi2 against zero (``gauss`` only; 0: none).
            [default: 0]
        floor: weight of the chi2 against the noiseless truth over the pixels where the truth
            is below :data:`FLOOR_THRESHOLD` of its peak (``gauss`` only, and the target must be
            the truth; 0: none). [default: 0]
    """

    kind: str = "beta"
    param: float | None = None
    positivity: float = 0.0
    floor: float = 0.0

    def __post_init__(self):
        if self.kind not in LOSSES:
            raise GalSimValueError("Unknown loss", self.kind, LOSSES)
        if not self.positivity >= 0:
            raise GalSimRangeError("positivity must be >= 0", self.positivity, 0)
        if self.positivity and self.kind != "gauss":
            raise GalSimValueError("positivity goes with the gauss loss", self.kind)
        if not self.floor >= 0:
            raise GalSimRangeError("floor must be >= 0", self.floor, 0)
        if self.floor and self.kind != "gauss":
            raise GalSimValueError("the floor term goes with the gauss loss", self.kind)
        if self.param is None:
            object.__setattr__(self, "param", _DEFAULT_PARAM[self.kind])
        if not self.param >= 0:
            raise GalSimRangeError("loss parameter must be >= 0", self.param, 0)

    @property
    def representation(self) -> str:
        """The stamp representation this loss takes: ``"minmax"`` or ``"flux"``."""
        return REPRESENTATION[self.kind]

    def terms(self, recon: Tensor, target: Tensor, mu: Tensor, logvar: Tensor, sigma=None) -> dict:
        """The loss and its parts, batch means per pixel: ``loss``, ``rec`` (the reconstruction
        term: BCE, or chi2 / 2), ``kl``; ``bce`` or ``chi2`` by kind. ``sigma``: each stamp's
        noise, ``(B,)``, for ``gauss`` (required there, ignored otherwise)."""
        npix = target[0].numel()
        kl = kl_per_image(mu, logvar)
        if self.kind == "gauss":
            if sigma is None:
                raise GalSimValueError("the gauss loss needs each stamp's noise sigma", None)
            chi2 = chi2_per_image(recon, target, sigma)
            rec = 0.5 * chi2
            out = {"chi2": chi2.mean() / npix}
            if self.positivity:
                neg = chi2_per_image(torch.clamp(recon, max=0), torch.zeros_like(recon), sigma)
                rec = rec + 0.5 * self.positivity * neg
                out["neg"] = neg.mean() / npix
            if self.floor:  # target is the noiseless truth here (the training loop checks)
                peak = target.amax(dim=tuple(range(1, target.ndim)), keepdim=True)
                empty = target < FLOOR_THRESHOLD * peak
                fl = chi2_per_image(torch.where(empty, recon, target), target, sigma)
                rec = rec + 0.5 * self.floor * fl
                out["floor"] = fl.mean() / npix
        else:
            rec = bce_per_image(recon, target)
            out = {"bce": rec.mean() / npix}
        if self.kind in ("original",):
            reg = kl
        elif self.kind in ("beta", "gauss"):
            reg = self.param * kl
        else:
            reg = torch.clamp(kl, max=self.param)
        out.update(loss=(rec + reg).mean() / npix, rec=rec.mean() / npix, kl=kl.mean() / npix)
        return out

    def __call__(self, recon: Tensor, target: Tensor, mu: Tensor, logvar: Tensor, sigma=None):
        return self.terms(recon, target, mu, logvar, sigma)["loss"]
