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


def test_magnitude_key():
    from galsim_vae.studies.population import magnitudes

    g = _build({"type": "VAEGalaxy", "magnitude": 22.0}, seed=3)
    assert magnitudes(g.flux)[0] == pytest.approx(22.0)
    assert g == _build({"type": "VAEGalaxy", "magnitude": 22.0}, seed=3)
    r = _build({"type": "VAEGalaxy", "magnitude": {"type": "Random", "min": 20, "max": 23}})
    assert 20 <= magnitudes(r.flux)[0] <= 23


def test_redshift_key():
    from galsim_vae.density import REDSHIFT_NEIGHBOURS
    from galsim_vae.studies.population import magnitudes

    zcat, mcat = get_model().density.redshift_prior
    g = _build({"type": "VAEGalaxy", "redshift": 0.8}, seed=3)
    near = mcat[np.argsort(np.abs(zcat - 0.8), kind="stable")[:REDSHIFT_NEIGHBOURS]]
    assert np.abs(near - magnitudes(g.flux)[0]).min() < 1e-6
    assert g == _build({"type": "VAEGalaxy", "redshift": 0.8}, seed=3)
    with pytest.raises(galsim.GalSimConfigError, match="one of redshift, magnitude"):
        _build({"type": "VAEGalaxy", "redshift": 0.8, "magnitude": 22.0})
    with pytest.raises(galsim.GalSimConfigError, match="redshift goes with sampled"):
        _build(
            {"type": "VAEGalaxy", "redshift": 0.8, "hubble_type": "Sb", "half_light_radius": 0.3}
        )
    with pytest.raises(galsim.GalSimConfigValueError, match="VAEGalaxy redshift: too few"):
        _build({"type": "VAEGalaxy", "redshift": 4.0})


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
    # Randomly oriented by default (a rotation of the attribute model's x-aligned galaxy).
    assert isinstance(obj.original, VAEGalaxy) and obj.flux == pytest.approx(10.0)
    fixed = _build(dict(gal(), position_angle=0.0), seed=3)
    turned = _build(dict(gal(), position_angle={"type": "List", "items": [30.0]}), seed=3)
    assert isinstance(fixed, VAEGalaxy) and fixed.latent == obj.original.latent
    assert turned == fixed.rotate(30.0 * galsim.degrees)
    with pytest.raises(galsim.GalSimConfigError, match="position_angle goes with"):
        _build({"type": "VAEGalaxy", "sampling": "prior", "position_angle": 10.0})
    again = _build(gal(), seed=3)
    other = _build(gal(), seed=4)
    assert other != obj
    assert obj == again
    with pytest.raises(galsim.GalSimConfigError, match="Hubble type"):
        _build({"type": "VAEGalaxy", "hubble_type": "Sz", "half_light_radius": 0.3})
    with pytest.raises(galsim.GalSimConfigError, match="need hubble_type"):
        _build({"type": "VAEGalaxy", "half_light_radius": 0.3})
    # A catalog row with a size outside the model's range is clipped with a warning, not fatal;
    # out_of_range: raise stops the run instead.
    # One warning per process, not one per galaxy (a config run builds them one at a time).
    import warnings

    from galsim_vae import config as config_module

    config_module._WARNED.clear()
    with pytest.warns(galsim.GalSimWarning, match="1 of 1 half_light_radius"):
        assert _build(dict(gal(), half_light_radius=40.0), seed=3).flux == pytest.approx(10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _build(dict(gal(), half_light_radius=50.0), seed=4).flux == pytest.approx(10.0)
    with pytest.raises(galsim.GalSimConfigError, match="half_light_radius"):
        _build(dict(gal(), half_light_radius=40.0, out_of_range="raise"), seed=3)


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


def test_index_into_encoded_fits_table(tmp_path):
    """A latents table written by ``galsim-vae encode`` drives index-based galaxies."""
    from astropy.table import Table
    from test_cli import write_small_dataset

    from galsim_vae.cli import main

    ds = write_small_dataset(tmp_path / "d.fits", n=5)
    assert main(["encode", str(ds), "--out", str(tmp_path / "z.fits"), "--quiet"]) == 0
    mu = np.asarray(Table.read(tmp_path / "z.fits")["mu"])
    assert mu.shape == (5, 64)

    def config(index):
        return {
            "modules": ["galsim_vae"],
            "input": {"vae_model": {"latent_file": str(tmp_path / "z.fits")}},
            "gal": {"type": "VAEGalaxy", "index": index, "flux": 20.0},
            "image": {"random_seed": 1},
        }

    for index in (3, 1):
        obj = _build_config(config(index))
        assert isinstance(obj, VAEGalaxy)
        np.testing.assert_array_equal(obj.latent, mu[index])
    # The row keeps its stamp's pixel scale (the galaxy's size); flux= sets the flux.
    t = Table.read(tmp_path / "z.fits")
    assert obj.pixel_scale == t["pixel_scale"][1] == 0.03
    a = obj.drawImage(nx=40, ny=40, scale=0.03).array
    own = VAEGalaxy(mu[1], flux=20.0, pixel_scale=t["pixel_scale"][1])
    b = own.drawImage(nx=40, ny=40, scale=0.03).array
    np.testing.assert_allclose(a, b, atol=1e-7 * b.max())
    median = VAEGalaxy(mu[1], flux=20.0).drawImage(nx=40, ny=40, scale=0.03).array
    assert np.abs(a - median).max() > 1e-3 * b.max()  # the model's median scale differs
    with pytest.raises(galsim.GalSimConfigError, match="out of range"):
        _build_config(config(5))


def test_latent_file_with_a_flagged_row(tmp_path):
    from astropy.table import Table

    from galsim_vae.pipeline.encode import encode_stamps

    rng = np.random.default_rng(1)
    stamps = [
        galsim.Exponential(half_light_radius=0.2, flux=50).drawImage(nx=64, ny=64, scale=0.03).array
        + rng.normal(0, 0.02, (64, 64))
        for _ in range(3)
    ]
    stamps[1] = "OSError: missing file"  # encode flags the row and leaves NaN latents
    res = encode_stamps(stamps, scales=np.full(3, 0.03))
    assert list(res["flag"]) == [False, True, False]
    Table(res).write(tmp_path / "z.fits")
    config = {
        "modules": ["galsim_vae"],
        "input": {"vae_model": {"latent_file": str(tmp_path / "z.fits")}},
        "gal": {"type": "VAEGalaxy", "index": 1},
        "image": {"random_seed": 1},
    }
    # The flagged row is left out: index counts the rows kept, so index 1 is the table's row 2,
    # with the flux of the stamp it was encoded from.
    gal = _build_config(config)
    np.testing.assert_array_equal(gal.latent, res["mu"][2])
    from galsim_vae import VAEGalaxy

    own = VAEGalaxy.from_image(galsim.Image(stamps[2], scale=0.03))
    assert gal.flux == pytest.approx(own.flux, rel=1e-6) and gal.pixel_scale == 0.03
    config = {k: v for k, v in config.items() if k != "gal"}
    config["gal"] = {"type": "VAEGalaxy", "index": 2}
    config["input"] = {"vae_model": {"latent_file": str(tmp_path / "z.fits")}}
    with pytest.raises(galsim.GalSimConfigError, match="out of range"):
        _build_config(config)


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
        ({"type": "VAEGalaxy", "latent": ["a"] * 64}, "list of numbers"),
        ({"type": "VAEGalaxy", "latent": [[0.0] * 32] * 2}, "64 values"),
        ({"type": "VAEGalaxy", "latent": "$[0.0] * 10"}, "64 values"),
        ({"type": "VAEGalaxy", "latent": [0.0] * 64, "magnitude": 22}, "sampled galaxies"),
        ({"type": "VAEGalaxy", "magnitude": 22, "flux": 10.0}, "magnitude or flux"),
        ({"type": "VAEGalaxy", "magnitude": 22, "sampling": "prior"}, "needs a flux model"),
    ],
)
def test_bad_config(gal, match):
    with pytest.raises(galsim.GalSimConfigError, match=match):
        _build(gal)


def test_latent_as_an_expression():
    fixed = _build({"type": "VAEGalaxy", "latent": [0.1] * 64})
    for latent in ("$[0.1] * 64", {"type": "Eval", "str": "np.full(64, 0.1)"}):
        np.testing.assert_array_equal(_build({"type": "VAEGalaxy", "latent": latent}), fixed)


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


def _yaml_image(tmp_path, text, name="c.yaml"):
    (tmp_path / name).write_text(text)
    config = galsim.config.ReadConfig(str(tmp_path / name))[0]
    return galsim.config.BuildImage(config)


def test_deconvolve_psf_mode_in_yaml(tmp_path):
    z = get_model().sample_latents(1, 11)[0]
    psf = galsim.Gaussian(fwhm=0.5)

    def yaml(mode):
        return f"""
modules: [galsim_vae]
psf: {{type: Gaussian, fwhm: 0.5}}
gal:
    type: VAEGalaxy
    latent: {z.tolist()}
    flux: 100.0
    psf_mode: {mode}
image:
    type: Single
    size: 128
    pixel_scale: 0.05
    random_seed: 1
"""

    dec = _yaml_image(tmp_path, yaml("deconvolve"))
    keep = _yaml_image(tmp_path, yaml("keep"))
    assert dec.array.shape == (128, 128)  # 6.4": the galaxy's whole stamp
    assert dec.array.sum() == pytest.approx(100.0, rel=0.02)
    assert keep.array.sum() == pytest.approx(100.0, rel=0.02)
    ref = galsim.Convolve(VAEGalaxy(z, flux=100.0, psf_mode="deconvolve"), psf).drawImage(
        nx=128, ny=128, scale=0.05
    )
    np.testing.assert_allclose(dec.array, ref.array, atol=1e-6 * ref.array.max())
    # The HST PSF divided out: the galaxy is smaller than with the HST PSF kept in.
    s_dec = dec.FindAdaptiveMom().moments_sigma
    s_keep = keep.FindAdaptiveMom().moments_sigma
    assert s_dec < s_keep
    assert np.abs(dec.array - keep.array).max() > 0.01 * keep.array.max()


@pytest.mark.skipif(GALSIM is None, reason="the galsim executable is not on PATH")
@pytest.mark.parametrize(
    "name,tiles",
    [
        ("ground_field.yaml", None),  # the whole image
        # space_field: with a vae_model input and deconvolved galaxies (slow to draw): its first
        # two tiles against the library's build of those two tiles.
        ("space_field.yaml", (2, 1)),
    ],
)
def test_examples_run_with_galsim(tmp_path, name, tiles):
    """One run of the executable per example, on two processes, against the library's build
    of the same config in this one process."""
    subprocess.run(
        [
            GALSIM,
            "-v",
            "0",
            str(EXAMPLES / name),
            f"output.dir={tmp_path}",
            "output.file_name=out.fits",
            "image.nproc=2",
        ],
        check=True,
        cwd=tmp_path,
    )
    out = fits.getdata(tmp_path / "out.fits")
    assert out.std() > 0 and np.isfinite(out).all()
    config = galsim.config.ReadConfig(str(EXAMPLES / name))[0]
    config["image"]["nproc"] = 1
    if tiles is not None:
        config["image"]["nx_tiles"], config["image"]["ny_tiles"] = tiles
    ref = galsim.config.BuildImage(config).array
    assert out.shape[0] >= ref.shape[0] and out.shape[1] >= ref.shape[1]
    np.testing.assert_array_equal(out[: ref.shape[0], : ref.shape[1]], ref)


@pytest.mark.skipif(GALSIM is None, reason="the galsim executable is not on PATH")
def test_demo10_port_changes_only_the_galaxy_block(tmp_path, btk_dir):
    """GalSim's demo10 with VAEGalaxy for RealGalaxy, run by the executable on 2 x 2 tiles of
    2-galaxy rings on two processes. GalSim's example catalog is not here: the run reads the
    btk100 catalog and five of its galaxies (the overrides the file's header gives)."""
    cat = galsim.RealGalaxyCatalog("real_galaxy_catalog_26_extension_example.fits", dir=btk_dir)
    ids = [int(cat.ident[k]) for k in (3, 11, 25, 42, 77)]
    subprocess.run(
        [
            GALSIM,
            "-v",
            "0",
            str(EXAMPLES / "demo10.yaml"),
            f"output.dir={tmp_path}",
            f"input.real_catalog.dir={btk_dir}",
            "input.real_catalog.file_name=real_galaxy_catalog_26_extension_example.fits",
            f"gal.id.items={ids}",
            "image.nx_tiles=2",
            "image.ny_tiles=2",
            "stamp.num=2",
            "image.nproc=2",  # GalSim hands each process a proxy of the catalog
        ],
        check=True,
        cwd=tmp_path,
    )
    with fits.open(tmp_path / "power_spectrum.fits") as hdus:
        image, psfs, truth = hdus[0].data, hdus[1].data, hdus[2].data
    assert image.shape == (96, 96) and psfs.shape == (96, 96)
    # The truth columns that read the galaxy block (gal.id, the built galaxy's index).
    assert list(truth["cosmos_id"]) == [str(i) for i in (ids[0], ids[0], ids[1], ids[1])]
    assert [cat.ident[k] for k in truth["cosmos_index"]] == list(truth["cosmos_id"])
    # Each tile holds a galaxy above the noise (signal_to_noise 100 on a 1e6 sky).
    for ty in range(2):
        for tx in range(2):
            tile = image[48 * ty : 48 * (ty + 1), 48 * tx : 48 * (tx + 1)]
            assert tile[16:32, 16:32].sum() > 5 * tile.std() * 16


@pytest.mark.skipif(GALSIM is None, reason="the galsim executable is not on PATH")
def test_demo6_port_runs_through_the_executable(tmp_path, btk_dir):
    """GalSim's demo6 with VAEGalaxy for RealGalaxy, run by the executable on the btk100 catalog
    (its multi-document file takes no command-line override of the input, so the catalog's place
    and the number of images are substituted in a copy), beside the same file with RealGalaxy."""
    text = (EXAMPLES / "demo6.yaml").read_text()
    for old, new in [
        ("        dir: data", f"        dir: {btk_dir}"),
        ("real_galaxy_catalog_23.5_example.fits", "real_galaxy_catalog_26_extension_example.fits"),
        ("    nimages: 100", "    nimages: 4"),
        ("    dir: output_yaml", f"    dir: {tmp_path}"),
    ]:
        assert old in text
        text = text.replace(old, new)
    cubes = {}
    for name, body in [
        ("vae", text),
        ("real", text.replace("type: VAEGalaxy", "type: RealGalaxy")),
    ]:
        cfg = tmp_path / f"demo6_{name}.yaml"
        cfg.write_text(body.replace("cube_real.fits", f"cube_{name}.fits"))
        subprocess.run([GALSIM, "-v", "0", str(cfg)], check=True, cwd=tmp_path)
        cubes[name] = fits.getdata(tmp_path / f"cube_{name}.fits").astype(float)
    assert (tmp_path / "psf_real.fits").exists()
    vae, real = cubes["vae"], cubes["real"]
    assert vae.shape == real.shape and vae.shape[0] == 4
    # The galaxy block's flux (1e5, magnified by 1.082) on the 0.16"/px sky of 1e6 per arcsec^2,
    # as RealGalaxy gives it; the galaxies themselves are the model's, not the catalog images.
    sky = 1.0e6 * 0.16**2
    flux = lambda c: c.sum(axis=(1, 2)) - sky * c[0].size  # noqa: E731
    np.testing.assert_allclose(flux(vae), flux(real), rtol=0.05)
    assert np.all(np.abs(flux(vae) / (1.0e5 * 1.082) - 1) < 0.25)
    assert not np.allclose(vae, real, atol=5 * sky**0.5)


@pytest.mark.skipif(GALSIM is None, reason="the galsim executable is not on PATH")
def test_demo11_port_runs_through_the_executable(tmp_path, data_dir):
    """GalSim's demo11 with VAEGalaxy for COSMOSGalaxy, run by the executable on a 256 x 256
    field of 6 galaxies on two processes. Its SDSS PSF image and tabulated power spectrum are
    not here: a Moffat PSF and an analytic spectrum stand in; the COSMOS example catalog (the
    input GalSim's block reads, left as it is) is the shared data's."""
    subprocess.run(
        [
            GALSIM,
            "-v",
            "0",
            str(EXAMPLES / "demo11.yaml"),
            f"output.dir={tmp_path}",
            "psf={'type': 'Moffat', 'beta': 3, 'fwhm': 0.9}",
            f"input.cosmos_catalog.dir={data_dir / 'cosmos_23.5_example'}",
            "input.power_spectrum.e_power_function=1.e-14*k**1.5",
            "image.size=256",
            "eval_variables.fimage_size=256",
            "image.nobjects=6",
            "image.nproc=2",
        ],
        check=True,
        cwd=tmp_path,
    )
    with fits.open(tmp_path / "tabulated_power_spectrum.fits.fz") as hdus:
        image = hdus[1].data.astype(float)  # Rice-compressed: the image is the first extension
    assert image.shape == (256, 256)
    # The noise is the config's Gaussian variance and nothing else: the galaxies carry no noise
    # of their own for symmetrize to add to.
    sigma = 1.4826 * np.median(np.abs(image - np.median(image)))
    assert sigma == pytest.approx(5.0e4**0.5, rel=0.1)
    # The galaxies, at COSMOS F814W<23.5 fluxes scaled to a 4 m telescope and 300 s, stand out
    # of it: several separate groups of pixels above 5 sigma.
    from scipy import ndimage

    _, n_sources = ndimage.label(image > 5 * sigma)
    assert n_sources >= 3


def test_real_catalog_route_in_config(btk_dir):
    # index (without a latent file) runs over the catalog's rows, a Sequence wrapping round as
    # for RealGalaxy; random picks RealGalaxy's row; other ways of choosing are refused.
    cat_file = "real_galaxy_catalog_26_extension_example.fits"

    def build(gal, n=1):
        config = {
            "modules": ["galsim_vae"],
            "input": {"real_catalog": {"dir": str(btk_dir), "file_name": cat_file}},
            "gal": gal,
            "image": {"random_seed": 5},
        }
        galsim.config.ImportModules(config)
        galsim.config.ProcessInput(config)
        out = []
        for k in range(n):
            galsim.config.SetupConfigObjNum(config, k)
            galsim.config.SetupConfigRNG(config)  # the object's rng, from image.random_seed
            out.append(galsim.config.BuildGSObject(config, "gal")[0])
        return out, config

    gals, config = build({"type": "VAEGalaxy", "index": {"type": "Sequence"}}, 3)
    assert [g.index for g in gals] == [0, 1, 2]
    assert config["gal"]["index"]["last"] == 99  # SetDefaultIndex: the catalog's 100 rows
    # random: False is allowed beside another way of choosing, as for RealGalaxy.
    assert build({"type": "VAEGalaxy", "index": 4, "random": False})[0][0].index == 4
    assert build({"type": "VAEGalaxy", "sampling": "density", "random": False})[0][0].flux > 0
    vae = build({"type": "VAEGalaxy", "random": True})[0][0]
    assert vae.index == build({"type": "RealGalaxy", "random": True})[0][0].index
    # refine: the real galaxy's latent moved to its posterior mode, its flux and size kept.
    plain = build({"type": "VAEGalaxy", "index": 7})[0][0]
    refined = build({"type": "VAEGalaxy", "index": 7, "refine": 5})[0][0]
    assert refined.index == 7 and refined.flux == pytest.approx(plain.flux)
    assert refined.pixel_scale == plain.pixel_scale
    assert not np.allclose(refined.latent, plain.latent)
    bad_keys = (
        {"sampling": "density", "refine": 5},
        {"id": "x", "index": 3},
        {"index": 3, "hubble_type": "Sb"},
        {"index": 3, "axis_ratio": 0.5},
        {"random": True, "index": 3},
    )
    for bad in bad_keys:
        with pytest.raises(galsim.GalSimConfigError):
            build({"type": "VAEGalaxy", **bad})
    with pytest.raises(galsim.GalSimConfigError, match="ID not found"):
        build({"type": "VAEGalaxy", "id": "not-an-id"})


def test_index_sequence_and_random_run_over_the_latent_file(tmp_path):
    z = get_model().sample_latents(3, 2)
    np.save(tmp_path / "z.npy", z)

    def latents(index, n):
        config = {
            "modules": ["galsim_vae"],
            "input": {"vae_model": {"latent_file": str(tmp_path / "z.npy")}},
            "gal": {"type": "VAEGalaxy", "index": index},
            "image": {"random_seed": 1},
        }
        galsim.config.ImportModules(config)
        galsim.config.ProcessInput(config)
        out = []
        for k in range(n):
            galsim.config.SetupConfigImageNum(config, 0, 0)
            galsim.config.SetupConfigObjNum(config, k)
            galsim.config.SetupConfigRNG(config)
            out.append(galsim.config.BuildGSObject(config, "gal")[0].latent)
        return out

    # A Sequence with no limits wraps at the number of latents, as GalSim's catalog types do.
    seq = latents({"type": "Sequence"}, 7)
    assert seq == [tuple(z[k % 3]) for k in range(7)]
    # A Random index without min/max stays inside the file.
    rnd = latents({"type": "Random"}, 12)
    assert set(rnd) <= {tuple(r) for r in z} and len(set(rnd)) > 1


def test_object_keys_follow_galsim_conventions_and_are_documented():
    # As GalSim's own types: the keys are class attributes of the GSObject, and docs/yaml.md
    # (the YAML reference) names every one of them.
    from galsim_vae import VAEGalaxy

    assert VAEGalaxy._req_params == {} and VAEGalaxy._single_params == []
    assert VAEGalaxy._takes_rng
    doc = (Path(__file__).resolve().parent.parent / "docs" / "yaml.md").read_text()
    keys = [*VAEGalaxy._opt_params, "latent"]
    missing = [k for k in keys if f"`{k}`" not in doc and f"`{k}:" not in doc]
    assert not missing, missing
    # A key that is not one of them is refused, as GalSim refuses it.
    config = {
        "modules": ["galsim_vae"],
        "gal": {"type": "VAEGalaxy", "sampling": "density", "colour": 3},
        "image": {"random_seed": 1},
    }
    galsim.config.ImportModules(config)
    with pytest.raises(galsim.GalSimConfigError, match="colour"):
        galsim.config.BuildGSObject(config, "gal")
