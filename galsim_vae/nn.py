"""The VAE networks (Danilov 2020, Tables 1 and 2), in pure PyTorch.

An architecture is described by a small :class:`VAEConfig`; it is stored with the weights, so any
checkpoint rebuilds its own network. Presets:

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
``wide``
    Twice compact's widths where the image is large (64 and 128 channels at 32x32 and 16x16),
    the same 256 at 8x8 and a 384-channel bottleneck: 3.7 M parameters, about 2.2 times compact's
    arithmetic per stamp. The capacity step measured on a GPU (docs/runs/gpu_experiments.json).
``wide-decoder`` and ``wider-decoder``
    compact's encoder and latents with a wider decoder: widths (256, 128, 128, 64) from the 4x4
    map up (the wide preset's decoder; 2.3 times compact's decoding arithmetic, 16 MB of weights
    in all) and (256, 192, 192, 96) (5 times, 19 MB). :func:`widen_decoder` turns a trained
    compact model into either without changing what it computes, so that training goes on from
    the shipped weights (``galsim-vae train --preset wide-decoder --init default``).

A note on the parameter count: 36,839,232, quoted for the paper's encoder elsewhere, is what the
encoder has with biased convolutions (5,056 more parameters = 64+128+256+512+4096 biases). The
paper's tables say every convolution is unbiased, which is what ``paper`` builds;
``VAEConfig(conv_bias=True)`` builds the biased variant.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import GalSimIncompatibleValuesError, GalSimRangeError, GalSimValueError

__all__ = [
    "VAEConfig",
    "PRESETS",
    "OUTPUTS",
    "OUTPUT_REPRESENTATION",
    "PixelSoftmax",
    "Encoder",
    "Decoder",
    "VAE",
    "build_vae",
    "widen_decoder",
    "FusedEncoder",
    "FusedDecoder",
]


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of a convolutional VAE for square single-band stamps.

    Attributes:
        latent_dim: number of latent variables. [default: 64]
        stamp_size: side of the stamps in pixels, a power of two >= 8. [default: 64]
        channels: encoder widths of the stride-2 convolutions, ``log2(stamp_size / 4)`` of them;
            the decoder uses them in reverse unless ``decoder_channels`` is given.
            [default: (32, 64, 128, 256)]
        bottleneck: channels of the last encoder convolution (4x4 -> 1x1). [default: 512]
        conv_bias: give the convolutions a bias (the paper's are bias-free). [default: False]
        negative_slope: LeakyReLU slope. [default: 0.2]
        output: the decoder's last activation: ``"sigmoid"`` for [0, 1] stamps (the paper's
            min-max representation); for flux-normalised stamps ``"linear"`` (any pixel values)
            or ``"softmax"`` (a light distribution: the last layer's outputs are log-intensities,
            exponentiated and normalised over the stamp, so every pixel is positive and the
            stamp holds exactly its flux, :class:`PixelSoftmax`). [default: "sigmoid"]
        name: preset name, informational. [default: "custom"]
        decoder_channels: the decoder's widths from its 4x4 map up (as many as ``channels``),
            when not ``channels`` reversed. [default: None]
    """

    latent_dim: int = 64
    stamp_size: int = 64
    channels: tuple = (32, 64, 128, 256)
    bottleneck: int = 512
    conv_bias: bool = False
    negative_slope: float = 0.2
    output: str = "sigmoid"
    name: str = field(default="custom", compare=False)
    decoder_channels: tuple | None = None

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.decoder_channels is not None:
            try:
                dc = tuple(int(c) for c in self.decoder_channels)
            except (TypeError, ValueError) as e:
                raise GalSimValueError(
                    "decoder_channels must be a sequence of widths", self.decoder_channels
                ) from e
            if len(dc) != len(self.channels):
                raise GalSimValueError(
                    f"decoder_channels needs {len(self.channels)} widths", self.decoder_channels
                )
            if min(dc) < 1:
                raise GalSimRangeError("decoder_channels must be positive", min(dc), 1)
            # the mirrored decoder is the default: one config (and run identity) for it
            mirrored = dc == tuple(reversed(self.channels))
            object.__setattr__(self, "decoder_channels", None if mirrored else dc)
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

    @property
    def decoder_widths(self) -> tuple:
        """The decoder's widths from its 4x4 map up."""
        return self.decoder_channels or tuple(reversed(self.channels))

    def to_json(self) -> str:
        d = asdict(self)
        if d["decoder_channels"] is None:  # files of the mirrored networks stay as they were
            del d["decoder_channels"]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VAEConfig:
        d = json.loads(text)
        d["channels"] = tuple(d["channels"])
        return cls(**d)


#: The decoder's last activation, by stamp representation: sigmoid (min-max), linear or softmax
#: (flux).
OUTPUTS = ("sigmoid", "linear", "softmax")
#: The representation each output decodes to.
OUTPUT_REPRESENTATION = {"sigmoid": "minmax", "linear": "flux", "softmax": "flux"}


class PixelSoftmax(nn.Module):
    """``(B, 1, S, S)`` log-intensities -> flux-normalised stamps: ``S * softmax`` over each
    stamp's pixels, so that every pixel is positive and each stamp sums to ``S`` (the
    ``"flux"`` representation, :func:`galsim_vae.stamp.flux_normalize`). Computed in float32."""

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        return torch.softmax(x.float().reshape(b, c * h * w), dim=1).reshape(b, c, h, w) * w


PRESETS = {
    "paper": VAEConfig(channels=(64, 128, 256, 512), bottleneck=4096, name="paper"),
    "compact": VAEConfig(channels=(32, 64, 128, 256), bottleneck=512, name="compact"),
    "wide": VAEConfig(channels=(64, 128, 128, 256), bottleneck=384, name="wide"),
    # compact's encoder and latents, a decoder of twice compact's widths at 16x16 and 32x32
    # (the wide preset's decoder): widen_decoder turns a trained compact model into one
    "wide-decoder": VAEConfig(
        channels=(32, 64, 128, 256),
        bottleneck=512,
        decoder_channels=(256, 128, 128, 64),
        name="wide-decoder",
    ),
    # and three times at 16x16 and 32x32, 1.5 times at 8x8 (19 MB of weights)
    "wider-decoder": VAEConfig(
        channels=(32, 64, 128, 256),
        bottleneck=512,
        decoder_channels=(256, 192, 192, 96),
        name="wider-decoder",
    ),
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
    """Latents ``(B, latent_dim)`` -> stamps ``(B, 1, S, S)`` (sigmoid, linear or softmax
    output)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        widths = list(cfg.decoder_widths)
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
        head = {"sigmoid": [nn.Sigmoid()], "softmax": [PixelSoftmax()]}.get(cfg.output, [])
        layers += [last, *head]
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


def widen_decoder(vae: VAE, config: VAEConfig | str, *, noise=0.01, generator=None) -> VAE:
    """A copy of ``vae`` whose decoder has the (equal or larger) widths of ``config``, computing
    the same function (Net2WiderNet, Chen, Goodfellow & Shlens 2016).

    Each new channel of a layer copies an old one (``j -> j mod C``): its transposed-convolution
    weights and its BatchNorm parameters and running statistics. The next layer's weights from a
    channel and its copies are split between them. The split is made unequal by random shares
    that sum to one over the copies, so the function is unchanged: copies with equal weights would
    get equal gradients and stay copies through training. A share of a channel with k copies
    scatters by ``noise * sqrt(k (k - 1))`` relative to its weight (1.4% for two copies, 2.4% for
    three, at the default). The encoder, the latents and the last layer's output are untouched, so
    a latent density fitted for ``vae`` holds for the widened network until it is trained
    further.

    Parameters:
        vae: a trained :class:`VAE`.
        config: the widened network's :class:`VAEConfig` or preset name; it may differ from
            ``vae.config`` only in ``decoder_channels`` (and ``name``); the output head is kept.
        noise: scale of the shares' spread (above). [default: 0.01]
        generator: ``torch.Generator`` for that spread. [default: None, torch's global]
    """
    if isinstance(config, str):
        if config not in PRESETS:
            raise GalSimValueError("Unknown preset", config, sorted(PRESETS))
        config = PRESETS[config]
    config = dataclasses.replace(config, output=vae.config.output, stamp_size=vae.config.stamp_size)
    old, new = vae.config.decoder_widths, config.decoder_widths
    same = dataclasses.replace(config, decoder_channels=vae.config.decoder_channels)
    if same != vae.config or any(b < a for a, b in zip(old, new, strict=True)):
        raise GalSimIncompatibleValuesError(
            "widen_decoder widens the decoder only: the same network otherwise, each width "
            "at least the trained one's",
            trained=vae.config,
            widened=config,
        )
    out = VAE(config)  # built on the CPU, returned on vae's device
    out.encoder.load_state_dict(vae.encoder.state_dict())
    src = _layers(vae.decoder.net, nn.ConvTranspose2d)
    dst = _layers(out.decoder.net, nn.ConvTranspose2d)
    with torch.no_grad():
        # g[i]: for each input channel of layer i, the old channel it copies
        g_in = torch.arange(src[0][0].in_channels)
        for i, ((c0, b0), (c1, b1)) in enumerate(zip(src, dst, strict=True)):
            cout_old, cout_new = c0.out_channels, c1.out_channels
            g_out = torch.arange(cout_new) % cout_old
            w = c0.weight.cpu()[g_in][:, g_out]  # (Cin, Cout, k, k), old weights by copy
            if i > 0:  # the inputs that were split: share each old input's weights
                count = torch.bincount(g_in, minlength=c0.in_channels).to(w.dtype)
                share = (1.0 / count[g_in]).view(-1, 1, 1, 1)
                if noise:  # plus a spread that sums to zero over the copies of each old input
                    eps = torch.randn(w.shape, generator=generator, dtype=w.dtype) * noise
                    mean = torch.zeros((c0.in_channels, *w.shape[1:]), dtype=w.dtype)
                    mean.index_add_(0, g_in, eps)
                    share = share + (eps - mean[g_in] * share)
                w = w * share
            c1.weight.copy_(w)
            if c0.bias is not None:
                c1.bias.copy_(c0.bias.cpu()[g_out])
            if b0 is not None:
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(b1, name).copy_(getattr(b0, name).cpu()[g_out])
                b1.num_batches_tracked.copy_(b0.num_batches_tracked)
            g_in = g_out
    out.train(vae.training)
    return out.to(next(vae.parameters()).device)


def build_vae(config: VAEConfig | str = "compact") -> VAE:
    """A freshly initialised :class:`VAE` from a config or a preset name."""
    if isinstance(config, str):
        if config not in PRESETS:
            raise GalSimValueError("Unknown preset", config, sorted(PRESETS))
        config = PRESETS[config]
    if not isinstance(config, VAEConfig):
        raise TypeError(f"config must be a VAEConfig or a preset name, got {type(config)}")
    return VAE(config)


# -- inference ---------------------------------------------------------------------------------
# The networks above are what training optimises. For inference the same functions run faster as
# a few fused operations (measured on the 2-core AVX-512 development machine; docs/performance.md):
# BatchNorm's running statistics folded into the preceding convolution's weights and bias,
# LeakyReLU in place, activations in channels-last layout (oneDNN's fast path), the encoder's
# 4x4 -> 1x1 convolution and the decoder's 1x1 -> 4x4 transposed convolution as one matrix product
# each, and the decoder's last transposed convolution (one output channel, which oneDNN runs at a
# tenth of its rate) as a 3x3 convolution to the four sub-pixel phases followed by a pixel
# shuffle. The fused copies hold plain tensors, optionally in bfloat16; they are rebuilt from a
# trained network, never trained.


def _fold(weight: Tensor, bias: Tensor | None, bn: nn.BatchNorm2d | None, out_dim: int):
    """Weight and bias of a convolution followed by an eval-mode BatchNorm, as one convolution.

    ``out_dim`` is the weight's output-channel axis (0 for Conv2d, 1 for ConvTranspose2d)."""
    w = weight.detach().clone()
    b = torch.zeros(w.shape[out_dim]) if bias is None else bias.detach().clone()
    if bn is not None:
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        shape = [1] * w.ndim
        shape[out_dim] = -1
        w = w * scale.view(shape)
        b = (b - bn.running_mean) * scale + bn.bias.detach()
    return w, b


def _layers(seq: nn.Sequential, kind):
    """``[(conv, batchnorm or None)]`` of a Sequential's convolutions of type ``kind``."""
    mods = list(seq)
    out = []
    for i, m in enumerate(mods):
        if isinstance(m, kind):
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            out.append((m, nxt if isinstance(nxt, nn.BatchNorm2d) else None))
    return out


class FusedEncoder(nn.Module):
    """Inference copy of a trained :class:`Encoder` (same outputs to rounding; see above).

    Parameters:
        encoder: the trained encoder (its BatchNorm running statistics are used).
        dtype: ``torch.float32`` or ``torch.bfloat16``; outputs are float32 either way.
    """

    def __init__(self, encoder: Encoder, dtype=torch.float32):
        super().__init__()
        convs = _layers(encoder.features, nn.Conv2d)
        self.dtype = dtype
        self.slope = float(encoder.features[1].negative_slope)
        self.convs = []
        for conv, bn in convs[:-1]:
            w, b = _fold(conv.weight, conv.bias, bn, 0)
            if not self.convs and w.shape[1] == 1:
                # A one-channel image is as much NCHW as channels-last, and oneDNN then gives
                # the first layer's output (and every later layer) the slow NCHW layout; a
                # second, zero input channel makes the layout unambiguous (measured: -14% time).
                w = torch.cat([w, torch.zeros_like(w)], 1)
            w = w.to(dtype).contiguous(memory_format=torch.channels_last)
            self.convs.append((w, b.to(dtype), conv.stride, conv.padding))
        last, bn = convs[-1]  # kernel = input size: a matrix product over (h, w, c)
        w, b = _fold(last.weight, last.bias, bn, 0)
        self.w_last = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1).to(dtype).contiguous()
        self.b_last = b.to(dtype)
        self.w_heads = torch.cat([encoder.mu.weight, encoder.logvar.weight]).detach().to(dtype)
        self.b_heads = torch.cat([encoder.mu.bias, encoder.logvar.bias]).detach().to(dtype)
        self.latent_dim = encoder.mu.out_features

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[1] == 1:  # (B, 1, S, S) -> (B, 2, S, S) channels-last, second channel 0
            h = torch.zeros(len(x), x.shape[2], x.shape[3], 2, dtype=self.dtype)
            h[..., 0] = x[:, 0]
            h = h.permute(0, 3, 1, 2)
        else:
            h = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        for w, b, stride, pad in self.convs:
            h = F.leaky_relu_(F.conv2d(h, w, b, stride, pad), self.slope)
        h = h.permute(0, 2, 3, 1).reshape(len(h), -1)
        h = F.leaky_relu_(F.linear(h, self.w_last, self.b_last), self.slope)
        out = F.linear(h, self.w_heads, self.b_heads).float()
        k = self.latent_dim
        return out[:, :k], out[:, k:].clamp(*Encoder.LOGVAR_RANGE)


def _subpixel_weight(w: Tensor) -> Tensor:
    """A ConvTranspose2d(k=4, stride=2, padding=1) weight ``(Cin, Cout, 4, 4)`` as the weight
    ``(4 Cout, Cin, 3, 3)`` of a stride-1, padding-1 convolution whose output channels are the
    four sub-pixel phases (``pixel_shuffle(., 2)`` restores the image).

    Output row ``2i + a`` takes input rows ``i`` (tap ``1 + a``) and ``i - 1`` (tap 3, ``a = 0``)
    or ``i + 1`` (tap 0, ``a = 1``); the same along columns."""
    cin, cout = w.shape[:2]
    taps = {0: ((0, 3), (1, 1)), 1: ((1, 2), (2, 0))}  # phase -> ((3x3 offset, 4x4 tap), ...)
    out = torch.zeros(cout, 2, 2, cin, 3, 3, dtype=w.dtype)
    for a in (0, 1):
        for c in (0, 1):
            for oy, ky in taps[a]:
                for ox, kx in taps[c]:
                    out[:, a, c, :, oy, ox] = w[:, :, ky, kx].T
    return out.reshape(cout * 4, cin, 3, 3)


class FusedDecoder(nn.Module):
    """Inference copy of a trained :class:`Decoder` (same outputs to rounding; see above).

    Parameters:
        decoder: the trained decoder (its BatchNorm running statistics are used).
        dtype: ``torch.float32`` or ``torch.bfloat16``; outputs are float32 either way.
    """

    def __init__(self, decoder: Decoder, dtype=torch.float32):
        super().__init__()
        convs = _layers(decoder.net, nn.ConvTranspose2d)
        if any(c.kernel_size != (4, 4) or c.stride != (2, 2) for c, _ in convs):
            raise GalSimValueError("FusedDecoder needs 4x4 stride-2 transposed convolutions", None)
        self.dtype = dtype
        self.slope = float(decoder.net[2].negative_slope)
        last = decoder.net[-1]
        self.head = last if isinstance(last, (nn.Sigmoid, PixelSoftmax)) else None
        first, bn = convs[0]  # from a 1x1 map: a matrix product to (4, 4, C)
        w, b = _fold(first.weight, first.bias, bn, 1)
        cin, cout, k, _ = w.shape
        self.first_shape = (k, k, cout)
        self.w_first = w.permute(2, 3, 1, 0).reshape(-1, cin).to(dtype).contiguous()
        self.b_first = b.repeat(k * k).to(dtype)
        self.convs = []
        for conv, bn in convs[1:-1]:
            w, b = _fold(conv.weight, conv.bias, bn, 1)
            self.convs.append((w.to(dtype), b.to(dtype)))
        last, bn = convs[-1]
        w, b = _fold(last.weight, last.bias, bn, 1)
        self.w_last = _subpixel_weight(w).to(dtype).contiguous(memory_format=torch.channels_last)
        self.b_last = b.repeat_interleave(4).to(dtype)

    def forward(self, z: Tensor) -> Tensor:
        h = F.leaky_relu_(F.linear(z.to(self.dtype), self.w_first, self.b_first), self.slope)
        h = h.view(len(z), *self.first_shape).permute(0, 3, 1, 2)  # channels-last NCHW
        for w, b in self.convs:
            h = F.leaky_relu_(F.conv_transpose2d(h, w, b, 2, 1), self.slope)
        h = F.pixel_shuffle(F.conv2d(h, self.w_last, self.b_last, 1, 1), 2)
        if self.head is not None:
            h = self.head(h.float())
        return h.float().contiguous()
