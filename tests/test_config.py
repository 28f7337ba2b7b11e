import shutil
import subprocess
from pathlib import Path

import galsim
import numpy as np
import pytest
from astropy.io import fits

import galsim_vae  # noqa: F401  (registers the config types)
from galsim_vae import VAEGalaxy, get_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GALSIM = shutil.which("galsim")


def _build(gal, seed=1):
    config = {
        "modules": ["galsim_vae"],
        "gal": gal,
        "image": {"random_seed": seed, "pixel_scale": 0.05},
    }
    return _build_config(config)


def _build_config(config):
    galsim.config.ImportModules(config)
    galsim.config.ProcessInput(config)
    galsim.config.SetupConfigImageNum(config, 0, 0)
    galsim.config.SetupConfigObjNum(config, 0)
    galsim.config.SetupConfigRNG(config)
    return galsim.config.BuildGSObject(config, "gal")[0]


def test_explicit_latent_and_transformations():
    z = get_model().sample_latents(1, 3)[0]
    obj = _build(
        {
            "type": "VAEGalaxy",
            "latent": z.tolist(),
            "flux": 50.0,
            "shear": {"type": "G1G2", "g1": 0.1, "g2": 0.05},
            "rotate": "30 deg",
            "magnify": 1.1,
            "shift": {"type": "XY", "x": 0.1, "y": 0},
        }
    )
    ref = (
        VAEGalaxy(z, flux=50.0)
        .rotate(30 * galsim.degrees)
        .shear(g1=0.1, g2=0.05)
        .lens(0, 0, 1.1)
        .shift(0.1, 0)
    )
    a = obj.drawImage(nx=48, ny=48, scale=0.05)
    b = ref.drawImage(nx=48, ny=48, scale=0.05)
    np.testing.assert_allclose(a.array, b.array, atol=1e-7 * b.array.max())
    assert obj.flux == pytest.approx(50.0 * 1.1)


def test_sampling_follows_random_seed():
    a = _build({"type": "VAEGalaxy", "sampling": "prior"}, seed=5)
    b = _build({"type": "VAEGalaxy", "sampling": "prior"}, seed=5)
    c = _build({"type": "VAEGalaxy"}, seed=6)
    assert a.latent == b.latent and a.latent != c.latent


def test_attribute_keys():
    def gal():  # a fresh dict each time: GalSim's config processing edits it in place
        return {
            "type": "VAEGalaxy",
            "hubble_type": "Sb",
            "half_light_radius": {"type": "Random", "min": 0.25, "max": 0.35},
            "axis_ratio": 0.6,
            "flux": 10.0,
        }

    obj = _build(gal(), seed=3)
    assert isinstance(obj, VAEGalaxy) and obj.flux == pytest.approx(10.0)
    again = _build(gal(), seed=3)
    other = _build(gal(), seed=4)
    assert other != obj
    assert obj == again
    with pytest.raises(galsim.GalSimConfigError, match="Hubble type"):
        _build({"type": "VAEGalaxy", "hubble_type": "Sz", "half_light_radius": 0.3})
    with pytest.raises(galsim.GalSimConfigError, match="need hubble_type"):
        _build({"type": "VAEGalaxy", "half_light_radius": 0.3})


def test_index_into_latent_file(tmp_path):
    z = get_model().sample_latents(4, 1)
    np.save(tmp_path / "z.npy", z)
    config = {
        "modules": ["galsim_vae"],
        "input": {"vae_model": {"latent_file": str(tmp_path / "z.npy")}},
        "gal": {"type": "VAEGalaxy", "index": 2},
        "image": {"random_seed": 1},
    }
    obj = _build_config(config)
    np.testing.assert_allclose(obj.latent, z[2])


@pytest.mark.parametrize(
    "gal,match",
    [
        ({"type": "VAEGalaxy", "latent": [0.0] * 3}, "64 values"),
        ({"type": "VAEGalaxy", "latent": [0.0] * 64, "sampling": "prior"}, "only one"),
        ({"type": "VAEGalaxy", "sampling": "uniform"}, "sampling"),
        ({"type": "VAEGalaxy", "psf_mode": "drop"}, "psf_mode"),
        ({"type": "VAEGalaxy", "colour": "red"}, "colour"),
        ({"type": "VAEGalaxy", "index": 0}, "latent_file"),
        ({"type": "VAEGalaxy", "latent": "zeros"}, "list"),
    ],
)
def test_bad_config(gal, match):
    with pytest.raises(galsim.GalSimConfigError, match=match):
        _build(gal)


def test_bad_model_file(tmp_path):
    config = {
        "modules": ["galsim_vae"],
        "input": {"vae_model": {"file_name": str(tmp_path / "none.safetensors")}},
        "gal": {"type": "VAEGalaxy"},
        "image": {"random_seed": 1},
    }
    galsim.config.ImportModules(config)
    with pytest.raises(galsim.GalSimConfigError, match="not found"):
        galsim.config.ProcessInput(config)


@pytest.mark.skipif(GALSIM is None, reason="the galsim executable is not on PATH")
@pytest.mark.parametrize("name", ["ground_field.yaml", "space_field.yaml"])
def test_examples_run_with_galsim_nproc_1_and_2(tmp_path, name):
    outs = []
    for nproc in (1, 2):
        out = f"out{nproc}.fits"
        subprocess.run(
            [
                GALSIM,
                "-v",
                "0",
                str(EXAMPLES / name),
                f"output.dir={tmp_path}",
                f"output.file_name={out}",
                f"image.nproc={nproc}",
            ],
            check=True,
            cwd=tmp_path,
        )
        outs.append(fits.getdata(tmp_path / out))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert outs[0].std() > 0 and np.isfinite(outs[0]).all()
