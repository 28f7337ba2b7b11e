"""The VAE networks (Danilov 2020, Tables 1 and 2), in pure PyTorch.

An architecture is described by a small :class:`VAEConfig`; it is stored with the weights, so any
checkpoint rebuilds its own network. Two presets:

``paper``
    Tables 1 and 2 exactly: encoder Conv2d(1,64) -> (128) -> (256) -> (512), all 4x4 stride 2
    padding 1 and bias-free, BatchNorm after the 2nd-4th, LeakyReLU(0.2) after each; then
    Conv2d(512, 4096, 4, 2, 0) turning the 4x4 map into 4096x1x1, LeakyReLU, and two
    Linear(4096, 64) heads for the mean and the log-variance. The decoder mirrors it with
    ConvTranspose2d(64, 512, 4, 2, 0) from the 64 latents as a 64x1x1 map up to a sigmoid 64x64
    image. He-normal initialisation for every convolution that feeds a LeakyReLU, Xavier-normal
    for the last decoder layer. 36,834,176 encoder parameters.
``compact`` (the default)
    The same shape of network with widths (32, 64, 128, 256) and a 512-channel bottleneck:
    3.8 M parameters in all (15 MB of float32 weights), fast enough to train and to encode whole
    catalogs on two CPU cores.

A note on the parameter count: 36,839,232, quoted for the paper's encoder elsewhere, is what the
encoder has with biased convolutions (5,056 more parameters = 64+128+256+512+4096 biases). The
paper's tables say every convolution is unbiased, which is what ``paper`` builds;
``VAEConfig(conv_bias=True)`` builds the biased variant.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from .errors import GalSimRangeError, GalSimValueError

__all__ = ["VAEConfig", "PRESETS", "OUTPUTS", "Encoder", "Decoder", "VAE", "build_vae"]


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of a convolutional VAE for square single-band stamps.

    Attributes:
        latent_dim: number of latent variables. [default: 64]
        stamp_size: side of the stamps in pixels, a power of two >= 8. [default: 64]
        channels: encoder widths of the stride-2 convolutions, ``log2(stamp_size / 4)`` of them;
            the decoder uses them in reverse. [default: (32, 64, 128, 256)]
        bottleneck: channels of the last encoder convolution (4x4 -> 1x1). [default: 512]
        conv_bias: give the convolutions a bias (the paper's are bias-free). [default: False]
        negative_slope: LeakyReLU slope. [default: 0.2]
        output: the decoder's last activation: ``"sigmoid"`` for [0, 1] stamps (the paper's
            min-max representation) or ``"linear"`` for flux-normalised stamps. [default:
            "sigmoid"]
        name: preset name, informational. [default: "custom"]
    """

    latent_dim: int = 64
    stamp_size: int = 64
    channels: tuple = (32, 64, 128, 256)
    bottleneck: int = 512
    conv_bias: bool = False
    negative_slope: float = 0.2
    output: str = "sigmoid"
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        s = self.stamp_size
        if not isinstance(s, int) or s < 8 or s & (s - 1):
            raise GalSimValueError("stamp_size must be a power of two >= 8", s)
        n = int(math.log2(s // 4))
        if len(self.channels) != n:
            raise GalSimValueError(
                f"stamp_size {s} needs {n} encoder widths, got {len(self.channels)}",
                self.channels,
            )
        if self.output not in OUTPUTS:
            raise GalSimValueError("Unknown decoder output", self.output, OUTPUTS)
        if self.latent_dim < 1 or self.bottleneck < 1 or min(self.channels) < 1:
            raise GalSimRangeError(
                "latent_dim, bottleneck and channels must be positive",
                (self.latent_dim, self.bottleneck, min(self.channels)),
                1,
            )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VAEConfig:
        d = json.loads(text)
        d["channels"] = tuple(d["channels"])
        return cls(**d)


#: The decoder's last activation, by stamp representation: sigmoid (min-max), linear (flux).
OUTPUTS = ("sigmoid", "linear")

PRESETS = {
    "paper": VAEConfig(channels=(64, 128, 256, 512), bottleneck=4096, name="paper"),
    "compact": VAEConfig(channels=(32, 64, 128, 256), bottleneck=512, name="compact"),
    "tiny": VAEConfig(latent_dim=8, channels=(4, 8, 8, 16), bottleneck=16, name="tiny"),
}


def _he(conv: nn.Module, slope: float) -> None:
    nn.init.kaiming_normal_(conv.weight, a=slope, nonlinearity="leaky_relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class Encoder(nn.Module):
    """Stamps ``(B, 1, S, S)`` in [0, 1] -> latent mean and log-variance ``(B, latent_dim)``."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i, c in enumerate(cfg.channels):
            layers.append(nn.Conv2d(cin, c, 4, 2, 1, bias=cfg.conv_bias))
            if i > 0:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(cfg.negative_slope))
            cin = c
        layers += [
            nn.Conv2d(cin, cfg.bottleneck, 4, 2, 0, bias=cfg.conv_bias),
            nn.LeakyReLU(cfg.negative_slope),
            nn.Flatten(),
        ]
        self.features = nn.Sequential(*layers)
        self.mu = nn.Linear(cfg.bottleneck, cfg.latent_dim)
        self.logvar = nn.Linear(cfg.bottleneck, cfg.latent_dim)
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                _he(m, cfg.negative_slope)

    #: Range of the log-variance head's output. exp(logvar / 2) overflows to inf for large
    #: outputs early in training, which turns the whole batch into NaN; sigmas outside
    #: [4.5e-5, 150] have no use for unit-scale latents.
    LOGVAR_RANGE = (-20.0, 10.0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(x)
        return self.mu(h), self.logvar(h).clamp(*self.LOGVAR_RANGE)


class Decoder(nn.Module):
    """Latents ``(B, latent_dim)`` -> stamps ``(B, 1, S, S)`` (sigmoid or linear output)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        widths = list(reversed(cfg.channels))
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(cfg.latent_dim, widths[0], 4, 2, 0, bias=cfg.conv_bias),
            nn.BatchNorm2d(widths[0]),
            nn.LeakyReLU(cfg.negative_slope),
        ]
        for cin, cout in zip(widths[:-1], widths[1:], strict=False):
            layers += [
                nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=cfg.conv_bias),
                nn.BatchNorm2d(cout),
                nn.LeakyReLU(cfg.negative_slope),
            ]
        last = nn.ConvTranspose2d(widths[-1], 1, 4, 2, 1, bias=cfg.conv_bias)
        layers += [last, nn.Sigmoid()] if cfg.output == "sigmoid" else [last]
        self.net = nn.Sequential(*layers)
        for m in self.net:
            if isinstance(m, nn.ConvTranspose2d) and m is not last:
                _he(m, cfg.negative_slope)
        nn.init.xavier_normal_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z[:, :, None, None])


class VAE(nn.Module):
    """Encoder + reparameterisation + decoder.

    ``forward(x, generator=None)`` returns ``(reconstruction, mu, logvar)``; the sampling noise of
    the reparameterisation ``z = mu + eps * exp(logvar / 2)`` comes from ``generator`` when given
    (so training is reproducible without touching torch's global seed).
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def reparameterize(
        self, mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * logvar)

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encoder(x)
        z = self.reparameterize(mu, logvar, generator) if self.training else mu
        return self.decoder(z), mu, logvar


def build_vae(config: VAEConfig | str = "compact") -> VAE:
    """A freshly initialised :class:`VAE` from a config or a preset name."""
    if isinstance(config, str):
        if config not in PRESETS:
            raise GalSimValueError("Unknown preset", config, sorted(PRESETS))
        config = PRESETS[config]
    if not isinstance(config, VAEConfig):
        raise TypeError(f"config must be a VAEConfig or a preset name, got {type(config)}")
    return VAE(config)
