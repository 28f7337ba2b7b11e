import galsim
import numpy as np
import pytest
import torch

from galsim_vae import VAEModel, get_model
from galsim_vae.checkpoint import save_vae
from galsim_vae.density import LatentDensity
from galsim_vae.model import default_model_path, density_path
from galsim_vae.nn import build_vae


@pytest.fixture
def tiny_file(tmp_path):
    torch.manual_seed(0)
    return save_vae(
        tmp_path / "tiny.safetensors",
        build_vae("tiny"),
        pixel_scale=0.03,
        loss="beta",
        loss_param=0.01,
        dataset={"median_norm_min": -0.01, "median_norm_max": 0.1},
    )


def test_shipped_model_loads_with_one_call():
    m = VAEModel()
    assert m.latent_dim == 64 and m.stamp_size == 64
    # The shipped model is a flux model ("Model v2"): galaxies at their own pixel scales, from
    # 0.03"/px up; a joint density of latents, scales and fluxes; an attribute file.
    assert m.representation == "flux" and m.metadata["loss"] == "gauss"
    lo, hi = m.dataset_summary["pixel_scale_range"]
    assert lo == 0.03 and hi > 0.1 and lo <= m.pixel_scale <= hi
    assert m.density is not None and m.density.aux_names
    assert m.attributes.scale_model
    assert default_model_path().stat().st_size <= 20e6
    assert get_model() is get_model()


def test_encode_decode_shapes_and_round_trip(tiny_file):
    m = VAEModel(tiny_file)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 64, 64))
    enc = m.encode(x)
    assert enc["mu"].shape == (5, 8) and np.all(enc["sigma"] > 0)
    np.testing.assert_allclose(enc["norm_min"], x.min(axis=(1, 2)))
    d = m.decode(enc["mu"])
    assert d.shape == (5, 64, 64) and d.min() >= 0 and d.max() <= 1
    r = m.reconstruct(x)
    np.testing.assert_allclose(
        r,
        enc["norm_min"][:, None, None] + d * (enc["norm_max"] - enc["norm_min"])[:, None, None],
        rtol=1e-6,
    )
    # Batching does not change the result.
    m.batch_size = 2
    np.testing.assert_allclose(m.decode(enc["mu"]), d, rtol=1e-5, atol=1e-6)


def test_sampling_is_seeded(tiny_file):
    m = VAEModel(tiny_file)
    a = m.sample_latents(4, galsim.BaseDeviate(3), sampling="prior")
    b = m.sample_latents(4, 3, sampling="prior")
    np.testing.assert_array_equal(a, b)
    assert abs(m.sample_latents(4000, 1, sampling="prior").std() - 1) < 0.05
    with pytest.raises(galsim.GalSimValueError, match="no latent density"):
        m.sample_latents(2, 1)


def test_density_fit_sample_save_load(tmp_path):
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(-3, 0.5, (300, 2)), rng.normal(3, 0.5, (300, 2))])
    d = LatentDensity.fit(z, n_components=2, seed=0)
    p = d.save(tmp_path / "d.npz")
    d2 = LatentDensity.load(p)
    np.testing.assert_allclose(d2.means, d.means)
    s = d2.sample(2000, galsim.BaseDeviate(1))
    assert abs(np.mean(s[:, 0] > 0) - 0.5) < 0.05 and abs(np.abs(s[:, 0]).mean() - 3) < 0.2
    np.testing.assert_array_equal(s, d2.sample(2000, galsim.BaseDeviate(1)))
    assert d2.log_prob([[3, 3]])[0] > d2.log_prob([[0, 0]])[0]
    assert "sklearn_version" in d2.meta
    with pytest.raises(galsim.GalSimValueError, match="not found"):
        LatentDensity.load(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(galsim.GalSimValueError):
        LatentDensity.load(tmp_path / "bad.npz")
    assert density_path("a/m.safetensors").name == "m_density.npz"


def test_density_conditioned_on_an_aux_value():
    # One correlated Gaussian (latent x, aux y; corr 0.8) and a second component far away in y.
    c1 = np.array([[1.0, 0.8], [0.8, 1.0]])
    c2 = np.array([[0.25, 0.0], [0.0, 0.25]])
    d = LatentDensity([0.5, 0.5], [[0.0, 0.0], [5.0, 10.0]], [c1, c2], {"aux": ["y"]})
    # Given y = 1: the first component, x ~ N(0.8, 1 - 0.64) (the closed form).
    x, aux = d.sample_given(galsim.BaseDeviate(5), y=np.full(20000, 1.0))
    assert np.all(aux["y"] == 1.0) and x.shape == (20000, 1)
    assert abs(x.mean() - 0.8) < 0.02 and abs(x.var() - 0.36) < 0.02
    # Given y = 10: the second component's x.
    x2, _ = d.sample_given(galsim.BaseDeviate(5), y=np.full(2000, 10.0))
    assert abs(x2.mean() - 5.0) < 0.05
    a, _ = d.sample_given(galsim.BaseDeviate(9), y=[1.0, 10.0])
    np.testing.assert_array_equal(a, d.sample_given(galsim.BaseDeviate(9), y=[1.0, 10.0])[0])
    # Overlapping components: the mean given y is the components' conditional means weighted
    # by how well each explains y (w_k N(y; m_k, s_kk)), the closed form.
    from scipy.stats import norm

    ca, cb = np.array([[1.0, 0.6], [0.6, 2.0]]), np.array([[0.5, -0.3], [-0.3, 1.0]])
    mix = LatentDensity([0.3, 0.7], [[0.0, 0.0], [2.0, 1.0]], [ca, cb], {"aux": ["y"]})
    y = 0.7
    wa, wb = 0.3 * norm.pdf(y, 0, 2.0**0.5), 0.7 * norm.pdf(y, 1.0, 1.0)
    mean = (wa * (0.6 / 2.0 * y) + wb * (2.0 - 0.3 * (y - 1.0))) / (wa + wb)
    xs, _ = mix.sample_given(galsim.BaseDeviate(11), y=np.full(40000, y))
    assert abs(xs.mean() - mean) < 0.015
    # Beyond the range the density was fitted on: drawn, with a warning.
    d.meta["aux_range"] = {"y": [-3.0, 12.0]}
    with pytest.warns(galsim.GalSimWarning, match="1 of 2 y values lie outside"):
        d.sample_given(galsim.BaseDeviate(1), y=[0.0, 20.0])
    with pytest.raises(galsim.GalSimValueError, match="beside the latents"):
        d.sample_given(galsim.BaseDeviate(1), z=[1.0])
    with pytest.raises(galsim.GalSimValueError, match="finite"):
        d.sample_given(galsim.BaseDeviate(1), y=[np.nan])
    # A magnitude histogram: draws in each bin in proportion to its count.
    assert d.magnitude_prior is None
    d.meta["magnitude_prior"] = {"edges": [20.0, 21.0, 22.0], "counts": [1, 3]}
    m = d.sample_magnitudes(8000, galsim.BaseDeviate(2))
    assert m.min() >= 20 and m.max() <= 22 and abs(np.mean(m > 21) - 0.75) < 0.02
    with pytest.raises(galsim.GalSimValueError, match="no magnitude"):
        LatentDensity([1.0], [[0.0]], [[[1.0]]]).sample_magnitudes(2, galsim.BaseDeviate(1))


def test_bad_inputs(tiny_file, tmp_path):
    m = VAEModel(tiny_file)
    with pytest.raises(galsim.GalSimValueError, match="64x64"):
        m.encode(np.zeros((2, 32, 32)))
    with pytest.raises(galsim.GalSimValueError, match="64x64"):
        m.encode(np.zeros((2, 3, 64, 64)))
    with pytest.raises(galsim.GalSimValueError, match="NaN"):
        m.encode(np.full((1, 64, 64), np.nan))
    with pytest.raises(galsim.GalSimValueError, match="8 values"):
        m.decode(np.zeros((2, 5)))
    with pytest.raises(galsim.GalSimValueError, match="NaN"):
        m.decode(np.full(8, np.inf))
    with pytest.raises(galsim.GalSimValueError, match="not found"):
        VAEModel(tmp_path / "none.safetensors")
    with pytest.raises(galsim.GalSimValueError, match="positive integer"):
        m.sample_latents(-1, 1, sampling="prior")
    with pytest.raises(galsim.GalSimValueError, match="positive integer"):
        m.sample_latents(0, 1, sampling="prior")
    with pytest.raises(TypeError, match="integer"):
        m.sample_latents(2.5, 1, sampling="prior")
    # One rule for rng everywhere: a string is a TypeError, here and in from_attributes.
    with pytest.raises(TypeError, match="BaseDeviate"):
        m.sample_latents(2, "7", sampling="prior")


def test_stale_density_and_attribute_files_are_refused(tmp_path):
    # A density fitted to other weights, left beside a model: refused when used, naming both.
    import shutil

    from galsim_vae import default_model_path

    other = tmp_path / "other.safetensors"
    torch.manual_seed(2)
    save_vae(other, build_vae("compact"), pixel_scale=0.03, loss="beta", loss_param=0.01)
    shutil.copy(density_path(default_model_path()), density_path(other))
    m = VAEModel(other)
    with pytest.raises(galsim.GalSimValueError, match="fitted to another model"):
        m.sample_latents(2, 1)
    with pytest.raises(galsim.GalSimValueError, match="other_density.npz"):
        _ = m.density
    assert VAEModel().density is not None  # the shipped one matches its weights


def _map_objective(m, z, norm, sig_n):
    d = m.decode(z)
    return 0.5 * (((d - norm) / sig_n[:, None, None]) ** 2).sum(axis=(1, 2)) + 0.5 * (z**2).sum(1)


def test_refined_latents_explain_the_stamps_better(sim_dataset, minmax_model):
    from galsim_vae.galaxy import VAEGalaxy
    from galsim_vae.pipeline.dataset import read_dataset
    from galsim_vae.stamp import border_noise, flux_normalize

    images, table, _, truths = read_dataset(sim_dataset)
    bright = np.argsort(-np.asarray(table["snr"], float))[:6]
    x = images[bright].astype(float)
    sig = np.asarray(table["noise_sigma"], float)[bright]
    m = VAEModel()  # the shipped flux model
    enc = m.encode(x)
    ref = m.encode(x, refine=25, noise_sigma=sig)
    np.testing.assert_array_equal(ref["sigma"], enc["sigma"])  # the encoder's widths stay
    np.testing.assert_allclose(ref["flux"], enc["flux"])
    # The posterior mode it looks for: every stamp's objective is lower than at the encoder's
    # mean (its best latent is kept, so none can end above where it started).
    norm, flux = flux_normalize(x)
    sig_n = sig * 64 / flux
    before = _map_objective(m, enc["mu"], norm, sig_n)
    after = _map_objective(m, ref["mu"], norm, sig_n)
    assert np.all(after < before - 1e-3 * np.abs(before))
    # ... and the chi2 against the stamp falls, as against the noiseless truth.
    chi2 = [((m.decode_flux(e["mu"], flux=flux) - x) ** 2).sum((1, 2)) for e in (enc, ref)]
    assert np.median(chi2[1] / chi2[0]) < 0.99
    # Each stamp is refined on its own: the batch it sits in does not matter.
    m2 = VAEModel(batch_size=2)
    np.testing.assert_allclose(m2.refine_latents(enc["mu"], x, sig, steps=25), ref["mu"], atol=1e-4)
    # Without a sigma, the border blocks' median sigma is used (the table's is their smallest).
    assert np.all((border_noise(x) >= 0.9 * sig) & (border_noise(x) < 1.8 * sig))
    assert np.all(np.isfinite(m.encode(x[:2], refine=3)["mu"]))
    # A refined galaxy from an image.
    g = VAEGalaxy.from_image(galsim.Image(x[0], scale=0.03), m, refine=10)
    assert np.all(np.isfinite(g.latent))
    # Bad inputs.
    with pytest.raises(galsim.GalSimRangeError):
        m.encode(x, refine=-1)
    with pytest.raises(galsim.GalSimIncompatibleValuesError):
        m.refine_latents(enc["mu"][:2], x)
    with pytest.raises(galsim.GalSimValueError):
        m.refine_latents(enc["mu"], x, -1.0)
    with pytest.raises(galsim.GalSimValueError):  # min-max models have no noise likelihood
        minmax_model.encode(x, refine=5)
