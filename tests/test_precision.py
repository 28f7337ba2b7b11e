"""The fast inference paths against the training network: fused float32 to rounding, bfloat16
within the accuracy the README promises (latent means within 5% of their posterior sigma, decoded
stamps within 1% of their peak, medians over real galaxies and held-out simulations)."""

import numpy as np
import pytest
import torch

from galsim_vae import VAEModel, get_model
from galsim_vae.errors import GalSimValueError
from galsim_vae.nn import FusedDecoder, FusedEncoder
from galsim_vae.pipeline.dataset import read_dataset


def _stamps(path):
    images, table, _, _ = read_dataset(path)
    keep = images.sum(axis=(1, 2)) > 0  # the flux model needs a positive flux
    if "passes" in table.colnames:
        keep &= np.asarray(table["passes"], bool)
    return images[keep]


def _compare(model, ref, images):
    """Median |d mu| / sigma, and median and 99th percentile of max |d stamp| / peak."""
    norm, _ = ref.normalize(images)
    mu0, sig0 = ref.encode_normalized(norm)
    mu, _ = model.encode_normalized(norm)
    d0, d = ref.decode(mu0), model.decode(mu0)
    dmu = np.median(np.abs(mu - mu0) / sig0)
    dstamp = np.abs(d - d0).max(axis=(1, 2)) / np.abs(d0).max(axis=(1, 2))
    return dmu, np.median(dstamp), np.percentile(dstamp, 99)


@pytest.fixture(scope="module")
def reference():
    return VAEModel(precision="reference")


@pytest.mark.parametrize("which", ["real_dataset", "sim_dataset"])
def test_bfloat16_accuracy(which, reference, request):
    images = _stamps(request.getfixturevalue(which))
    assert len(images) >= 40
    dmu, dstamp, dstamp99 = _compare(VAEModel(precision="bfloat16"), reference, images)
    assert dmu < 0.05, f"bfloat16 latent means off by {dmu:.3f} sigma (median)"
    assert dstamp < 0.01, f"bfloat16 stamps off by {dstamp:.4f} of their peak (median)"
    assert dstamp99 < 0.1


def test_fused_float32_matches_training_network(real_dataset, reference):
    images = _stamps(real_dataset)
    dmu, dstamp, dstamp99 = _compare(VAEModel(precision="float32"), reference, images)
    assert dmu < 1e-3 and dstamp99 < 1e-4


@pytest.mark.parametrize("preset", ["tiny", "compact"])
@pytest.mark.parametrize("output", ["sigmoid", "linear", "softmax"])
@pytest.mark.parametrize("bias", [False, True])
def test_fused_networks_any_architecture(preset, output, bias):
    """BatchNorm folding and the sub-pixel last layer (its bias per phase too), with
    non-trivial running statistics."""
    from dataclasses import replace

    from galsim_vae.nn import PRESETS, VAE

    net = VAE(replace(PRESETS[preset], output=output, conv_bias=bias))
    with torch.no_grad():
        for m in net.modules():
            if getattr(m, "bias", None) is not None and not isinstance(m, torch.nn.BatchNorm2d):
                m.bias.normal_(0, 0.3, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    net.eval()
    x = torch.rand(5, 1, 64, 64, generator=g)
    z = torch.randn(5, net.config.latent_dim, generator=g)
    with torch.no_grad():
        mu0, lv0 = net.encoder(x)
        mu, lv = FusedEncoder(net.encoder)(x)
        assert torch.allclose(mu, mu0, atol=1e-4) and torch.allclose(lv, lv0, atol=1e-4)
        d0, d = net.decoder(z), FusedDecoder(net.decoder)(z)
        assert d.shape == d0.shape
        assert torch.allclose(d, d0, atol=1e-5 * float(d0.abs().max()))


def test_precision_choice():
    with pytest.raises(GalSimValueError, match="precision"):
        VAEModel(precision="float16")
    with pytest.raises(GalSimValueError, match="precision"):
        get_model(precision="half")
    auto = get_model(precision="auto")
    assert auto.precision in ("float32", "bfloat16")
    assert auto is get_model(precision="auto")  # one shared instance per file and precision
    assert get_model(precision="bfloat16").precision == "bfloat16"
    assert get_model().precision == "float32"
    assert "precision='float32'" in repr(get_model())
