import pickle

import galsim
import numpy as np
import pytest

import galsim_vae
from galsim_vae import VAEGalaxy, get_model, reconvolve
from galsim_vae.galaxy import GUARD_BATCH


@pytest.fixture(scope="module")
def model():
    return get_model()


@pytest.fixture(scope="module")
def gal(model):
    return VAEGalaxy.sample(1, galsim.BaseDeviate(11), model)[0]


def test_flux_convention_and_override(gal, monkeypatch):
    assert gal.flux == pytest.approx(gal.stamp.array.sum(), rel=1e-6)
    # withFlux and withGSParams keep the decoded stamp: with the decoder out of reach, the copies
    # still draw, and draw the same light.
    ref = gal.drawImage(nx=32, ny=32, scale=0.05)

    def no_decoding(self, latents):
        raise AssertionError("decoded a second time")

    with monkeypatch.context() as mp:
        mp.setattr(galsim_vae.VAEModel, "decode", no_decoding)
        scaled = gal.withFlux(2 * gal.flux).drawImage(nx=32, ny=32, scale=0.05)
        other = gal.withGSParams(folding_threshold=1e-2).drawImage(nx=32, ny=32, scale=0.05)
    np.testing.assert_allclose(scaled.array, 2 * ref.array, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(other.array, ref.array, rtol=1e-3, atol=1e-6 * ref.array.max())
    g2 = VAEGalaxy(gal.latent, flux=123.0)
    assert g2.flux == pytest.approx(123.0)
    assert isinstance(gal.withFlux(5.0), VAEGalaxy) and gal.withFlux(5.0).flux == pytest.approx(5)
    img = g2.drawImage(nx=200, ny=200, scale=0.03)
    assert img.array.sum() == pytest.approx(123.0, rel=2e-3)


def test_stamp_is_reproduced_at_model_scale(gal):
    # Drawn without a pixel at the model's scale, centred like the training stamps, the object
    # gives back the decoded stamp: the stamp's pixel (32, 32) is the profile origin.
    sc = gal.pixel_scale  # a flux model's galaxy has its own (its size)
    assert gal.stamp.scale == sc
    img = gal.drawImage(nx=64, ny=64, scale=sc, method="no_pixel", use_true_center=False)
    np.testing.assert_allclose(img.array, gal.stamp.array, atol=1e-6 * gal.stamp.array.max())


def test_centroid_at_origin(model):
    # The centroid of the drawn object, measured from the origin, equals the decoded stamp's
    # centroid measured from pixel (32, 32), within 0.02 pixels (no half-pixel offset).
    for g in VAEGalaxy.sample(5, galsim.BaseDeviate(4), model):
        s = g.stamp.array
        y, x = np.mgrid[:64, :64]
        c_stamp = np.array([(s * x).sum(), (s * y).sum()]) / s.sum() - 32
        img = g.drawImage(nx=101, ny=101, scale=g.pixel_scale, method="no_pixel")
        c_img = np.array(
            [
                (img.array * np.mgrid[:101, :101][1]).sum() / img.array.sum() - 50,
                (img.array * np.mgrid[:101, :101][0]).sum() / img.array.sum() - 50,
            ]
        )
        np.testing.assert_allclose(c_img, c_stamp, atol=0.02)
        np.testing.assert_allclose(g.centroid.x / g.pixel_scale, c_stamp[0], atol=0.02)


def test_transformations_and_draw_methods(gal):
    obj = gal.shear(g1=0.2, g2=-0.1).rotate(30 * galsim.degrees).dilate(1.2).shift(0.1, 0.0)
    psf = galsim.Moffat(beta=3, fwhm=0.7)
    conv = galsim.Convolve(obj, psf)
    ref = conv.drawImage(nx=128, ny=128, scale=0.2)  # the whole stamp, at its own scale
    assert ref.array.sum() == pytest.approx(gal.flux, rel=5e-3)
    # Shear changes the shape as GalSim's shear does.
    sc = gal.pixel_scale
    e0 = galsim.hsm.FindAdaptiveMom(gal.drawImage(nx=128, ny=128, scale=sc)).observed_shape
    e1 = galsim.hsm.FindAdaptiveMom(
        gal.shear(g1=0.3).drawImage(nx=128, ny=128, scale=sc)
    ).observed_shape
    assert e1.g1 - e0.g1 > 0.15
    for method in ("auto", "fft", "real_space", "no_pixel"):
        img = gal.drawImage(nx=96, ny=96, scale=sc, method=method)
        assert img.array.sum() == pytest.approx(gal.flux, rel=2e-3), method
    phot = gal.drawImage(
        nx=96, ny=96, scale=sc, method="phot", rng=galsim.BaseDeviate(1), n_photons=200000
    )
    # Photon shooting an image with negative pixels (decoder ringing: 8% of this galaxy's light)
    # through an interpolant with negative lobes does not keep the flux in GalSim either (here
    # 15% low): VAEGalaxy shoots as GalSim's own InterpolatedImage of its stamp does, and on a
    # stamp without negative pixels it keeps the flux.
    own = galsim.InterpolatedImage(gal.stamp, x_interpolant="quintic", use_true_center=False)
    ref_phot = own.drawImage(
        nx=96, ny=96, scale=sc, method="phot", rng=galsim.BaseDeviate(1), n_photons=200000
    )
    assert phot.array.sum() == pytest.approx(ref_phot.array.sum(), rel=0.02)
    pos = VAEGalaxy(gal.latent, _stamp=np.clip(gal._stamp, 0, None), flux=1.0, pixel_scale=sc)
    pos_phot = pos.drawImage(
        nx=96, ny=96, scale=sc, method="phot", rng=galsim.BaseDeviate(1), n_photons=200000
    )
    assert pos_phot.array.sum() == pytest.approx(1.0, rel=0.02)
    g2 = gal.withGSParams(folding_threshold=1e-2)
    assert g2.gsparams.folding_threshold == 1e-2 and g2 != gal
    assert g2 == gal.withGSParams(galsim.GSParams(folding_threshold=1e-2))


def test_equality_hash_repr_pickle(gal):
    same = VAEGalaxy(gal.latent, flux=gal.flux, pixel_scale=gal.pixel_scale)
    assert same == gal and hash(same) == hash(gal)
    assert VAEGalaxy(gal.latent, flux=2.0, pixel_scale=gal.pixel_scale) != gal
    assert VAEGalaxy(gal.latent, flux=gal.flux, pixel_scale=2 * gal.pixel_scale) != gal
    galsim.utilities.check_pickle(gal, irreprable=True)
    again = eval(repr(gal), {"galsim_vae": galsim_vae, "galsim": galsim})
    assert again == gal
    _ = gal.stamp  # caches are dropped when pickled
    state = gal.__getstate__()
    assert "_stamp" not in state and "stamp" not in state and "_profile" not in state
    assert pickle.loads(pickle.dumps(gal)).drawImage(nx=32, ny=32, scale=0.05) == gal.drawImage(
        nx=32, ny=32, scale=0.05
    )
    assert not any("torch" in type(v).__module__ for v in gal.__dict__.values())


def test_same_seed_same_pixels(model):
    a = VAEGalaxy.sample(3, galsim.BaseDeviate(99), model)
    b = VAEGalaxy.sample(3, 99, model)
    c = VAEGalaxy.sample(3, 100, model)
    assert a == b and a != c
    for s in ("prior", "density"):
        x = VAEGalaxy.sample(2, 5, model, sampling=s)[1].drawImage(nx=32, ny=32, scale=0.05)
        y = VAEGalaxy.sample(2, 5, model, sampling=s)[1].drawImage(nx=32, ny=32, scale=0.05)
        np.testing.assert_array_equal(x.array, y.array)


def test_from_image_round_trip(model, gal, minmax_model):
    img = galsim.Image(gal.stamp.array + 0.0, scale=gal.pixel_scale)
    rec = VAEGalaxy.from_image(img, model)
    assert len(rec.latent_sigma) == model.latent_dim
    # Re-encoding a decoded galaxy gives back (nearly) the same galaxy.
    assert rec.pixel_scale == gal.pixel_scale and rec.flux == pytest.approx(gal.flux, rel=1e-6)
    d = rec.drawImage(nx=64, ny=64, scale=gal.pixel_scale, method="no_pixel", use_true_center=False)
    resid = np.abs(d.array - gal.stamp.array).max() / gal.stamp.array.max()
    assert resid < 0.15
    # A min-max model has one scale: a stamp at another is refused.
    mm = sample_unguarded(1, 2, minmax_model)[0]
    with pytest.raises(galsim.GalSimValueError, match="scale"):
        VAEGalaxy.from_image(galsim.Image(mm.stamp.array, scale=0.1), minmax_model)


def test_from_image_takes_catalog_postage_stamps(model, btk_dir):
    # A RealGalaxyCatalog's postage stamps come in every size: a flux model redraws them onto its
    # stamp, at their own scale when they fit (padded with their noise), coarser when not.
    cat = galsim.RealGalaxyCatalog("real_galaxy_catalog_26_extension_example.fits", dir=btk_dir)
    sizes = [max(cat.getGalImage(k).array.shape) for k in range(cat.nobjects)]
    # The smallest stamp of a galaxy bright enough to encode (peak above 20 sigma): a stamp mostly
    # of padding noise around a faint galaxy has no flux to normalise by.
    bright = [
        k
        for k in range(cat.nobjects)
        if cat.getGalImage(k).array.max() > 20 * cat.variance[k] ** 0.5
    ]
    small, big = min(bright, key=lambda k: sizes[k]), int(np.argmax(sizes))
    assert sizes[small] < 64 < sizes[big]
    for k in (small, big):
        im = cat.getGalImage(k)
        g = VAEGalaxy.from_image(im, model, noise=cat.getNoise(k, rng=galsim.BaseDeviate(k)))
        expect = max(im.scale, im.scale * sizes[k] / 62)
        assert g.pixel_scale == pytest.approx(expect)
        # The galaxy keeps the image's flux (up to the noise the stamp adds or leaves out).
        assert g.flux == pytest.approx(im.array.sum(), rel=0.15)
        drawn = g.drawImage(nx=sizes[k], ny=sizes[k], scale=im.scale, method="no_pixel")
        assert np.corrcoef(drawn.array.ravel(), im.array.ravel())[0, 1] > 0.5
    # Without its noise the padding is white noise at the border's level: still a galaxy.
    assert VAEGalaxy.from_image(cat.getGalImage(small), model).flux > 0
    with pytest.raises(galsim.GalSimValueError, match="scale"):
        VAEGalaxy.from_image(cat.getGalImage(big).array, model)


def test_from_real_chooses_as_realgalaxy_does(model, btk_dir):
    from galsim_vae._utils import item_seed
    from galsim_vae.stamp import DEFAULT_SEED, image_stamp

    cat = galsim.RealGalaxyCatalog("real_galaxy_catalog_26_extension_example.fits", dir=btk_dir)
    k = 7
    by_index = VAEGalaxy.from_real(cat, index=k, model=model)
    by_id = VAEGalaxy.from_real(cat, id=cat.ident[k], model=model)
    assert by_index.index == by_id.index == k and by_id.ident == cat.ident[k]
    np.testing.assert_array_equal(by_index.latent, by_id.latent)
    # The row's stamp redrawn as from_image redraws it, padded with its noise seeded by the row.
    pad = galsim.BaseDeviate(item_seed(DEFAULT_SEED, k))
    arr, scale = image_stamp(cat.getGalImage(k), noise=cat.getNoise(k, rng=pad), rng=pad)
    direct = VAEGalaxy.from_image(galsim.Image(arr, scale=scale), model)
    np.testing.assert_array_equal(by_index.latent, direct.latent)
    assert by_index.flux == pytest.approx(arr.sum(), rel=1e-6) and by_index.pixel_scale == scale
    # random: the row RealGalaxy picks with the same rng.
    for seed in (3, 4, 5):
        r = VAEGalaxy.from_real(cat, random=True, rng=galsim.BaseDeviate(seed), model=model)
        assert r.index == galsim.RealGalaxy(cat, random=True, rng=galsim.BaseDeviate(seed)).index
    # As RealGalaxy, the catalog's PSF is divided out by default; for a stamp coarser than the
    # catalog's image, the resampling's pixel too.
    assert by_index.psf_mode == "deconvolve"
    coarse = max(range(cat.nobjects), key=lambda j: max(cat.getGalImage(j).array.shape))
    big = VAEGalaxy.from_real(cat, index=coarse, model=model)
    assert big.pixel_scale > cat.getGalImage(coarse).scale
    expect = galsim.Convolve(cat.getPSF(coarse), galsim.Pixel(big.pixel_scale))
    kw = dict(nx=48, ny=48, scale=0.03, method="no_pixel")
    np.testing.assert_allclose(
        big.original_psf.drawImage(**kw).array, expect.drawImage(**kw).array, atol=1e-7
    )
    assert VAEGalaxy.from_real(cat, index=k, model=model, psf_mode="keep").psf_mode == "keep"
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="Exactly one"):
        VAEGalaxy.from_real(cat, index=1, id=cat.ident[1], model=model)
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="Exactly one"):
        VAEGalaxy.from_real(cat, model=model)
    with pytest.raises(galsim.GalSimRangeError):
        VAEGalaxy.from_real(cat, index=cat.nobjects, model=model)
    with pytest.raises(TypeError, match="RealGalaxyCatalog"):
        VAEGalaxy.from_real("catalog.fits", index=0, model=model)


def test_psf_modes(gal):
    dec = VAEGalaxy(gal.latent, psf_mode="deconvolve", flux=gal.flux, pixel_scale=gal.pixel_scale)
    wide = galsim.Gaussian(fwhm=0.6)
    img = reconvolve(dec, wide).drawImage(nx=40, ny=40, scale=0.2)
    keep = galsim.Convolve(gal, wide).drawImage(nx=40, ny=40, scale=0.2)
    assert img.array.sum() == pytest.approx(keep.array.sum(), rel=0.01)
    # Deconvolving the HST PSF makes the reconvolved galaxy slightly smaller.
    s_dec = galsim.hsm.FindAdaptiveMom(img).moments_sigma
    s_keep = galsim.hsm.FindAdaptiveMom(keep).moments_sigma
    assert s_dec < s_keep
    with pytest.raises(galsim.GalSimRangeError, match="narrower"):
        reconvolve(dec, galsim.Gaussian(fwhm=0.03))
    # A kept-PSF galaxy is convolved with anything.
    assert reconvolve(gal, galsim.Gaussian(fwhm=0.03)).flux == pytest.approx(gal.flux)


def test_reconvolve_checks_transformed_galaxies(gal):
    # Scenes pass reconvolve a galaxy already rotated, sheared and scaled: the check must see
    # through the transformations, with the original PSF transformed as the galaxy was.
    dec = VAEGalaxy(gal.latent, psf_mode="deconvolve")
    moved = dec.withFlux(50.0).rotate(20 * galsim.degrees).shear(g1=0.05).shift(0.1, 0.2)
    with pytest.raises(galsim.GalSimRangeError, match="narrower"):
        reconvolve(moved, galsim.Gaussian(fwhm=0.03))
    assert reconvolve(moved, galsim.Gaussian(fwhm=0.6)).flux == pytest.approx(50.0, rel=1e-3)
    # A 0.12" Gaussian (HSM sigma 0.051") is wider than the HST PSF (0.031"); magnified 4 times
    # the galaxy's PSF is twice as wide (0.062"), and the same target is narrower than it.
    near = galsim.Gaussian(fwhm=0.12)
    reconvolve(dec, near)
    with pytest.raises(galsim.GalSimRangeError, match="narrower"):
        reconvolve(dec.magnify(4.0), near)


def test_bad_inputs(model, gal, minmax_model):
    with pytest.raises(galsim.GalSimValueError, match="64 values"):
        VAEGalaxy(np.zeros(10))
    with pytest.raises(galsim.GalSimValueError, match="NaN"):
        VAEGalaxy(np.full(64, np.nan))
    with pytest.raises(galsim.GalSimValueError, match="NaN"):
        VAEGalaxy([np.inf] + [0.0] * 63)
    # Latents far outside the latent space (float32 overflows at 3e38, absurd fluxes long
    # before): refused, like a (2, 32) array that is not one latent.
    for big in (1e39, 1e6, 101.0):
        with pytest.raises(galsim.GalSimRangeError, match="latent"):
            VAEGalaxy(np.full(64, big))
    with pytest.raises(galsim.GalSimRangeError, match="latent"):
        model.decode(np.full((1, 64), -1e6))
    VAEGalaxy(np.full(64, 99.0))  # the limit is 100
    with pytest.raises(galsim.GalSimValueError, match="one sequence"):
        VAEGalaxy(np.zeros((2, 32)))
    with pytest.raises(TypeError):
        VAEGalaxy("latent")
    with pytest.raises(TypeError):
        VAEGalaxy(1.0)
    with pytest.raises(TypeError):
        VAEGalaxy(np.zeros(64), model=3)
    with pytest.raises(galsim.GalSimValueError, match="psf_mode"):
        VAEGalaxy(np.zeros(64), psf_mode="remove")
    with pytest.raises(galsim.GalSimIncompatibleValuesError):
        VAEGalaxy(np.zeros(64), original_psf=galsim.Gaussian(fwhm=0.1))
    mm = minmax_model
    with pytest.raises(galsim.GalSimIncompatibleValuesError):
        VAEGalaxy(np.zeros(mm.latent_dim), mm, norm_min=0.0)
    with pytest.raises(galsim.GalSimRangeError):
        VAEGalaxy(np.zeros(mm.latent_dim), mm, norm_min=1.0, norm_max=0.5)
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="flux="):
        VAEGalaxy(np.zeros(64), norm_min=0.0, norm_max=1.0)  # the shipped flux model
    with pytest.raises(galsim.GalSimValueError, match="not found"):
        VAEGalaxy(np.zeros(64), model="/nonexistent/model.safetensors")
    with pytest.raises(galsim.GalSimValueError, match="sampling"):
        VAEGalaxy.sample(2, 1, sampling="uniform")
    with pytest.raises(TypeError, match="BaseDeviate"):
        VAEGalaxy.sample(2, rng="seed")
    with pytest.raises(TypeError, match="BaseDeviate"):
        VAEGalaxy.from_attributes("Sb", 0.2, rng="seed")


def test_sky_of_decoded_stamps(minmax_model, sim_dataset):
    from galsim_vae.pipeline.dataset import read_dataset

    model = minmax_model

    def border(a):
        return np.median(np.concatenate([a[:4].ravel(), a[-4:].ravel(), a[:, :4].ravel()]))

    images, table, _, _ = read_dataset(sim_dataset)
    # With its own stamp's constants nothing is subtracted: the galaxy is the model's
    # reconstruction of the stamp, outskirts and all.
    ok = np.flatnonzero(np.asarray(table["passes"], dtype=bool))[:20]
    g0 = VAEGalaxy.from_image(images[ok[0]], model)
    np.testing.assert_allclose(g0.stamp.array, model.reconstruct(images[ok[0]])[0], rtol=1e-6)
    # With the median constants the decoded sky is not zero (the raw decoding has a pedestal);
    # the galaxy removes it: the border of its stamp is near zero, its shape is the raw one.
    span = model.norm_max - model.norm_min
    raw_borders = []
    for i in ok[:8]:
        z = VAEGalaxy.from_image(images[i], model).latent
        g = VAEGalaxy(z, model)
        raw = model.decode_flux(np.array(z))[0]
        raw_borders.append(abs(border(raw)))
        d = raw - g.stamp.array  # a constant: the sky, nothing else ...
        np.testing.assert_allclose(d, d.mean(), atol=1e-9 * span)
        # ... the sky the attribute file's predictor gives this latent (how well this tiny
        # model's predictor knows it is not the point here).
        pred = model.attributes.decoded_sky(np.array(z)[None])[0]
        sky = model.norm_min + pred * span
        assert d.mean() == pytest.approx(sky, rel=1e-5, abs=1e-9 * span)
    assert max(raw_borders) > 0.01 * span  # there was a sky to remove


def test_sky_without_an_attribute_file(minmax_model, tmp_path):
    model = minmax_model
    # A model with no attribute file beside it: the border median is removed instead.
    import shutil

    p = tmp_path / "bare.safetensors"
    shutil.copy(model.file_name, p)
    bare = galsim_vae.get_model(str(p))
    z = sample_unguarded(1, 3, model)[0].latent
    g = VAEGalaxy(z, bare)
    a = g.stamp.array
    b = np.concatenate([a[:4].ravel(), a[-4:].ravel(), a[4:-4, :4].ravel(), a[4:-4, -4:].ravel()])
    assert abs(np.median(b)) < 1e-12
    raw = bare.decode_flux(np.array(z))[0]
    rb = np.concatenate(
        [raw[:4].ravel(), raw[-4:].ravel(), raw[4:-4, :4].ravel(), raw[4:-4, -4:].ravel()]
    )
    assert abs(np.median(rb)) > 1e-3 * (bare.norm_max - bare.norm_min)  # there was a sky
    np.testing.assert_allclose(raw - a, np.median(rb), rtol=1e-9)  # ... and only it went


@pytest.fixture(scope="module")
def flux_model(sim_dataset, tmp_path_factory):
    """A tiny flux-representation model (gauss loss) with a joint latent/scale/flux density."""
    from galsim_vae.cli import main

    d = tmp_path_factory.mktemp("flux")
    argv = ["train", str(sim_dataset), "--out", str(d), "--preset", "tiny", "--loss", "gauss"]
    argv += ["--epochs", "8", "--batch-size", "16", "--lr", "3e-3", "--quiet", "--seed", "1"]
    assert main(argv) == 0
    f = d / "best.safetensors"
    assert main(["fit-density", str(sim_dataset), "--model", str(f), "--components", "2"]) == 0
    return get_model(str(f))


def test_flux_model_galaxies_take_flux_and_scale(flux_model):
    m = flux_model
    assert m.representation == "flux" and m.density.aux_names
    z = m.sample_latents(1, 3)[0]
    g = VAEGalaxy(z, m, flux=5.0, pixel_scale=0.06)
    assert g.flux == pytest.approx(5.0) and g.stamp.scale == 0.06
    assert g.stamp.array.sum() == pytest.approx(5.0)
    # The pixel scale is the size: the same latent at twice the scale is twice as large.
    small = VAEGalaxy(z, m, flux=5.0, pixel_scale=0.03)
    kw = dict(nx=64, ny=64, method="no_pixel", use_true_center=False)
    a, b = g.drawImage(scale=0.06, **kw).array, small.drawImage(scale=0.03, **kw).array
    np.testing.assert_allclose(a, b, atol=1e-6 * np.abs(b).max())  # same pixels, twice the size
    np.testing.assert_allclose(a, g.stamp.array, atol=1e-6 * np.abs(b).max())
    assert g != small and "pixel_scale=0.06" in repr(g)
    assert eval(repr(g), {"galsim_vae": galsim_vae, "galsim": galsim}) == g
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="flux="):
        VAEGalaxy(z, m, norm_min=0.0, norm_max=1.0)
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="zero sky"):
        m.sky_free_constants(z[None])
    with pytest.raises(galsim.GalSimValueError, match="attribute file"):
        VAEGalaxy.from_attributes("Sb", 0.2, model=m)  # none fitted for this one
    with pytest.raises(galsim.GalSimRangeError, match="pixel_scale"):
        VAEGalaxy(z, m, pixel_scale=0.0)


def sample_unguarded(*args, **kwargs):
    """VAEGalaxy.sample without the sampling guard: the tiny models trained for the tests
    decode every latent with a floor beyond it, so their samples are taken as they come."""
    return VAEGalaxy.sample(*args, max_border_sky=None, max_negative_light=None, **kwargs)


def test_flux_model_samples_carry_sizes_and_fluxes(flux_model, sim_dataset):
    from galsim_vae.pipeline.dataset import read_dataset

    _, table, _, _ = read_dataset(sim_dataset)
    gals = sample_unguarded(300, galsim.BaseDeviate(8), flux_model, magnitude="training")
    flux = np.array([g.flux for g in gals])
    scale = np.array([g.stamp.scale for g in gals])
    # Drawn jointly from the density: fluxes spread like the training set's (log median within
    # 0.15 dex), not one median flux for all.
    assert abs(np.median(np.log10(flux)) - np.median(np.log10(table["flux"]))) < 0.15
    assert np.std(np.log10(flux)) > 0.3
    # sim_dataset has one pixel scale: no size is drawn, every galaxy gets it.
    assert np.all(scale == flux_model.pixel_scale)
    again = sample_unguarded(300, galsim.BaseDeviate(8), flux_model, magnitude="training")
    assert [g.flux for g in again] == list(flux)
    # from_image keeps the stamp's flux and scale.
    img = gals[0].drawImage(nx=64, ny=64, scale=0.05, method="no_pixel", use_true_center=False)
    back = VAEGalaxy.from_image(img, flux_model)
    assert back.flux == pytest.approx(img.array.sum(), rel=1e-6) and back.stamp.scale == 0.05


def test_samples_at_a_redshift(flux_model):
    from galsim_vae.density import REDSHIFT_NEIGHBOURS
    from galsim_vae.studies.population import magnitudes, redshift_prior

    m = flux_model
    zcat, mcat = m.density.redshift_prior
    # fit-density stored the COSMOS fit catalog's redshifts and magnitudes (its rows at least as
    # faint as the training set's brightest galaxy).
    from galsim_vae.studies.population import ZEROPOINT

    ref = redshift_prior()
    brightest = ZEROPOINT - 2.5 * m.density.meta["aux_range"]["log10_flux"][1]
    keep = np.asarray(ref["mag"]) >= brightest
    np.testing.assert_array_equal(zcat, np.asarray(ref["zphot"])[keep])
    # Each galaxy gets the magnitude of one of the COSMOS galaxies nearest in redshift, and
    # they are spread over those neighbours.
    mag = magnitudes([g.flux for g in sample_unguarded(60, 3, m, redshift=0.7)])
    near = mcat[np.argsort(np.abs(zcat - 0.7), kind="stable")[:REDSHIFT_NEIGHBOURS]]
    assert all(np.abs(near - x).min() < 1e-6 for x in mag)
    assert len(np.unique(np.round(mag, 4))) >= 8
    # One redshift per galaxy, in order; seeded.
    per = sample_unguarded(2, 4, m, redshift=[0.3, 1.2])
    for g, z in zip(per, (0.3, 1.2)):
        ring = mcat[np.argsort(np.abs(zcat - z), kind="stable")[:REDSHIFT_NEIGHBOURS]]
        assert np.abs(ring - magnitudes(g.flux)[0]).min() < 1e-6
    assert sample_unguarded(2, 4, m, redshift=[0.3, 1.2]) == per
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="not two"):
        sample_unguarded(3, 3, m, redshift=0.5, magnitude=22.0)
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="not two"):
        sample_unguarded(3, 3, m, redshift=0.5, flux=10.0)
    with pytest.raises(galsim.GalSimValueError, match="one redshift or 3"):
        sample_unguarded(3, 3, m, redshift=[0.5, 0.6])
    with pytest.raises(galsim.GalSimRangeError, match="too few COSMOS galaxies"):
        sample_unguarded(3, 3, m, redshift=4.0)
    with pytest.raises(galsim.GalSimRangeError, match="finite and positive"):
        sample_unguarded(3, 3, m, redshift=-0.2)
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="flux cuts"):
        sample_unguarded(3, 3, m, redshift=0.5, max_flux=60.0)
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="sampling='density'"):
        sample_unguarded(3, 3, m, redshift=0.5, sampling="prior")


def test_shipped_samples_at_low_redshift_are_brighter_and_larger():
    from galsim_vae.studies.population import magnitudes

    near = VAEGalaxy.sample(150, galsim.BaseDeviate(31), redshift=0.3)
    far = VAEGalaxy.sample(150, galsim.BaseDeviate(31), redshift=1.4)
    m_near, m_far = (np.median(magnitudes([g.flux for g in s])) for s in (near, far))
    r_near, r_far = (np.median([g.half_light_radius for g in s]) for s in (near, far))
    # COSMOS F814W<23.5 galaxies at z ~ 0.3 are ~1 magnitude brighter than at z ~ 1.4 (and
    # their flux radii ~1.2 times larger), and the model's galaxies are larger given the
    # brighter magnitudes: 22.2 against 23.3, 0.37" against 0.31" when this was written.
    assert m_near < m_far - 0.5
    assert r_near > 1.1 * r_far


def test_samples_at_cosmos_and_given_magnitudes(flux_model, minmax_model):
    from scipy.stats import ks_2samp

    from galsim_vae.studies.population import ZEROPOINT, magnitude_catalog, magnitudes

    m = flux_model
    # By default the magnitudes are those of the COSMOS F814W<23.5 catalog (fit-density stored
    # its histogram), not the training set's; only as bright as the training set's brightest.
    edges, counts = m.density.magnitude_prior
    brightest = ZEROPOINT - 2.5 * m.density.meta["aux_range"]["log10_flux"][1]
    assert edges[0] == pytest.approx(brightest)
    cat = magnitude_catalog()
    left_out = m.density.meta["magnitude_prior"]["n_left_out"]
    assert left_out == np.sum(cat < brightest) and counts.sum() + left_out == len(cat)
    cat = cat[cat >= brightest]
    assert edges[-1] >= cat.max()
    mag = magnitudes([g.flux for g in sample_unguarded(1000, galsim.BaseDeviate(2), m)])
    assert ks_2samp(mag, cat).statistic < 0.1
    train = magnitudes([g.flux for g in sample_unguarded(1000, 2, m, magnitude="training")])
    assert ks_2samp(train, cat).statistic > 2 * ks_2samp(mag, cat).statistic
    # One magnitude for all, or one per galaxy (in order).
    one = sample_unguarded(4, 3, m, magnitude=21.0)
    np.testing.assert_allclose([g.flux for g in one], 10 ** ((ZEROPOINT - 21.0) / 2.5))
    per = sample_unguarded(3, 3, m, magnitude=[24.0, 20.0, 22.5])
    np.testing.assert_allclose(magnitudes([g.flux for g in per]), [24.0, 20.0, 22.5])
    assert sample_unguarded(3, 3, m, magnitude=[24.0, 20.0, 22.5]) == per  # seeded
    # A magnitude outside the density's range warns once, in magnitudes.
    with pytest.warns(galsim.GalSimWarning, match=r"1 of 2 magnitudes lie outside the F814W") as w:
        sample_unguarded(2, 3, m, magnitude=[-5.0, 22.0])
    assert len(w) == 1 and "log10" not in str(w[0].message)
    # The latents are drawn given the magnitude: bright and faint galaxies differ as the
    # training set's do (here: in size, the pixel scale is fixed, so in their latents).
    zb = m.sample_population(300, 4, magnitude=20.0)["latent"]
    zf = m.sample_population(300, 4, magnitude=25.0)["latent"]
    assert np.abs(zb.mean(0) - zf.mean(0)).max() > 5 * zb.std(0).max() / 300**0.5
    # With cuts, each rejected galaxy is redrawn at its own magnitude: the order holds.
    hlr = [g.half_light_radius for g in per]
    cut = sample_unguarded(3, 5, m, magnitude=[24.0, 20.0, 22.5], min_hlr=float(np.median(hlr)))
    np.testing.assert_allclose(magnitudes([g.flux for g in cut]), [24.0, 20.0, 22.5])
    assert min(g.half_light_radius for g in cut) >= np.median(hlr)
    assert sample_unguarded(3, 5, m, magnitude="cosmos") == sample_unguarded(3, 5, m)
    with pytest.raises(galsim.GalSimValueError, match="one magnitude or 3"):
        sample_unguarded(3, 3, m, magnitude=[20.0, 21.0])
    with pytest.raises(galsim.GalSimValueError, match="Unknown magnitude"):
        sample_unguarded(3, 3, m, magnitude="bright")
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="magnitude or flux"):
        sample_unguarded(3, 3, m, magnitude=21.0, flux=10.0)
    with pytest.raises(galsim.GalSimRangeError, match="outside the flux cuts"):
        sample_unguarded(3, 3, m, magnitude=25.0, min_flux=1e6)
    with pytest.raises(galsim.GalSimRangeError, match="finite"):
        sample_unguarded(3, 3, m, magnitude=np.nan)
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="magnitude="):
        sample_unguarded(3, 3, minmax_model, magnitude=21.0)
    with pytest.raises(galsim.GalSimRangeError, match="at the given magnitudes"):
        sample_unguarded(3, 3, m, magnitude=25.0, min_hlr=50.0)


def test_half_light_radius_and_size_cuts(model, minmax_model):
    g = VAEGalaxy.sample(1, 5, model)[0]
    assert 0.03 < g.half_light_radius < 1.0
    # Cuts at the plain sample's quartiles (the model's own size distribution).
    plain = [x.half_light_radius for x in VAEGalaxy.sample(64, galsim.BaseDeviate(3), model)]
    lo, hi = np.percentile(plain, [25, 75])
    big = VAEGalaxy.sample(8, galsim.BaseDeviate(4), model, min_hlr=hi)
    small = VAEGalaxy.sample(8, galsim.BaseDeviate(4), model, max_hlr=lo)
    assert len(big) == len(small) == 8
    assert min(x.half_light_radius for x in big) >= hi
    assert max(x.half_light_radius for x in small) <= lo
    # Without cuts the first draw is the plain sample: same seed, same galaxies.
    assert VAEGalaxy.sample(3, 9, model) == VAEGalaxy.sample(3, 9, model, min_hlr=0.0)
    with pytest.raises(galsim.GalSimRangeError, match="pass the cuts"):
        VAEGalaxy.sample(2, 1, model, min_hlr=50.0)
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="flux cuts"):
        VAEGalaxy.sample(2, 1, minmax_model, min_flux=1.0)


def test_half_light_radius_of_a_known_profile(minmax_model, monkeypatch):
    model = minmax_model
    truth = galsim.Exponential(half_light_radius=0.2)
    arr = truth.drawImage(nx=64, ny=64, scale=0.03, method="no_pixel", use_true_center=False).array
    # A decoder that returns a known profile: the property measures what is decoded.
    monkeypatch.setattr(galsim_vae.VAEModel, "decode", lambda self, z: arr[None] / arr.max())
    g = VAEGalaxy(np.zeros(model.latent_dim), model, norm_min=0.0, norm_max=arr.max())
    assert g.half_light_radius == pytest.approx(0.2, rel=0.05)


def test_flux_model_edges(flux_model, model):
    m = flux_model
    z = m.sample_latents(1, 5)[0]
    g = VAEGalaxy(z, m, flux=5.0, pixel_scale=0.05)
    _ = g.stamp
    h = g.withFlux(1000.0)
    assert h.stamp.array.sum() == pytest.approx(1000.0) and h.flux == pytest.approx(1000.0)
    with pytest.raises(galsim.GalSimValueError, match="finite"):
        g.withFlux(np.nan)
    # The size of a galaxy is never guessed: an array has no scale.
    with pytest.raises(galsim.GalSimValueError, match="scale"):
        VAEGalaxy.from_image(g.stamp.array, m)
    assert VAEGalaxy.from_image(g.stamp.array, m, pixel_scale=0.05).stamp.scale == 0.05
    # Flux cuts need sampled fluxes; the caller's pixel_scale wins over the sampled one.
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="flux cuts"):
        sample_unguarded(2, 1, m, sampling="prior", min_flux=1.0)
    assert {x.stamp.scale for x in sample_unguarded(3, 1, m, pixel_scale=0.07)} == {0.07}
    with pytest.raises(galsim.GalSimValueError, match="finite"):
        VAEGalaxy.sample(1, 1, model)[0].withFlux(np.inf)


def test_deconvolved_psf_follows_the_stamp_scale(gal):
    # A galaxy resampled onto 0.09" pixels carries that pixel in its stamp: deconvolve mode
    # divides it out with the HST PSF, so the original PSF is wider than the HST PSF alone.
    from galsim_vae.psf import psf_sigma

    fine = VAEGalaxy(gal.latent, psf_mode="deconvolve", pixel_scale=0.03)
    coarse = VAEGalaxy(gal.latent, psf_mode="deconvolve", pixel_scale=0.09)
    assert fine.original_psf == galsim_vae.hst_f814w_psf()
    assert psf_sigma(coarse.original_psf) > 1.3 * psf_sigma(fine.original_psf)


def test_sample_never_returns_undrawable_galaxies(model, monkeypatch):
    # A flux model's latent that decodes to no positive flux cannot be drawn at any flux: sample
    # draws another in its place, and half_light_radius is NaN rather than an error.
    real, calls = galsim_vae.VAEModel.decode, []

    def decode(self, z):
        d = real(self, z)
        if not calls:
            d[0] = -d[0]  # the first round's first galaxy decodes to negative flux
        calls.append(len(z))
        return d

    monkeypatch.setattr(galsim_vae.VAEModel, "decode", decode)
    gals = VAEGalaxy.sample(4, 5, model, max_negative_light=None)
    assert len(gals) == 4 and len(calls) == 2  # a second round replaced the one
    assert all(np.isfinite(g.half_light_radius) and g.flux > 0 for g in gals)
    z = model.sample_latents(1, 2)[0]
    bad = VAEGalaxy(z, model, _stamp=-real(model, z[None])[0], flux=1.0, pixel_scale=0.05)
    assert np.isnan(bad.half_light_radius)
    with pytest.raises(galsim.GalSimValueError, match="no positive flux"):
        _ = bad.stamp


def test_sample_redraws_galaxies_with_a_sky_floor(model, monkeypatch):
    # A decoded stamp whose border holds more than max_border_sky of its flux (a mottled floor)
    # is drawn again, by sample and by the config's random galaxies alike, at its own pixel scale
    # and flux (a new latent from the density conditioned on both); None keeps it.
    real, calls = galsim_vae.VAEModel.decode, []

    def decode(self, z):
        d = real(self, z)
        if not calls:  # the first round's first galaxy gets a floor of half its flux
            d[0] = d[0] + 0.5 * d[0].sum() / d[0].size
        calls.append(len(z))
        return d

    monkeypatch.setattr(galsim_vae.VAEModel, "decode", decode)
    off = {"max_negative_light": None}  # the other test of the guard, apart (below)
    gals = VAEGalaxy.sample(4, 5, model, **off)
    assert len(gals) == 4 and calls == [4, galsim_vae.galaxy.GUARD_BATCH]  # redrawn in place
    assert all(abs(g.border_sky) <= galsim_vae.galaxy.MAX_BORDER_SKY for g in gals)
    calls.clear()
    raw = VAEGalaxy.sample(4, 5, model, max_border_sky=None, **off)
    assert len(calls) == 1 and raw[0].border_sky > 0.3
    assert [g.latent for g in raw[1:]] == [g.latent for g in gals[1:]]
    assert gals[0].latent != raw[0].latent
    assert gals[0].pixel_scale == raw[0].pixel_scale and gals[0].flux == raw[0].flux
    calls.clear()
    loose = VAEGalaxy.sample(4, 5, model, max_border_sky=0.6, **off)
    assert len(calls) == 1 and loose[0].latent == raw[0].latent
    with pytest.raises(galsim.GalSimRangeError, match="max_border_sky"):
        VAEGalaxy.sample(1, 5, model, max_border_sky=0)
    # The config path: one galaxy at a time from the object's rng, the floored one redrawn.
    calls.clear()
    cfg = {
        "gal": {"type": "VAEGalaxy", "max_negative_light": 0},
        "input": {"vae_model": {"file_name": model.file_name}},
        "rng": galsim.BaseDeviate(5),
    }
    galsim.config.ProcessInput(cfg)
    gal, _ = galsim.config.BuildGSObject(cfg, "gal")
    assert len(calls) == 2 and abs(gal.border_sky) <= galsim_vae.galaxy.MAX_BORDER_SKY
    # max_border_sky: 0 turns the guard off in a config (None does in Python): the floored galaxy
    # is kept; it goes with sampled galaxies only.
    calls.clear()
    cfg["gal"] = {"type": "VAEGalaxy", "max_border_sky": 0, "max_negative_light": 0}
    cfg["rng"] = galsim.BaseDeviate(5)
    gal, _ = galsim.config.BuildGSObject(cfg, "gal")
    assert len(calls) == 1 and gal.border_sky > 0.3
    for key in ("max_border_sky", "max_negative_light"):
        cfg["gal"] = {"type": "VAEGalaxy", key: 0.2, "latent": [0.0] * 64}
        with pytest.raises(galsim.GalSimConfigError, match=f"{key} goes with sampled"):
            galsim.config.BuildGSObject(cfg, "gal")
    # A model whose every sample has a floor: the error says it is the guard, and how to lift it.
    monkeypatch.setattr(
        galsim_vae.VAEModel, "decode", lambda self, z: (d := real(self, z)) + d.mean() * 2
    )
    with pytest.raises(galsim.GalSimRangeError, match="max_border_sky=0.25 .*pass None"):
        VAEGalaxy.sample(2, 5, model)


def test_sample_redraws_galaxies_with_negative_light(model, monkeypatch):
    # A decoded stamp whose negative pixels sum to more than max_negative_light of its flux is
    # drawn again at its own pixel scale and flux; the shipped model's samples that sample
    # returns have none beyond it, and their sizes and magnitudes are those the density drew.
    off = {"max_border_sky": None, "max_negative_light": None}
    raw = VAEGalaxy.sample(60, 8, model, **off)
    neg = np.array([g.negative_light for g in raw])
    a = np.asarray(raw[0].stamp.array)
    assert neg[0] == pytest.approx(-np.clip(a, None, 0).sum() / a.sum())
    bad = np.flatnonzero(neg > galsim_vae.galaxy.MAX_NEGATIVE_LIGHT)
    assert 0 < len(bad) < 30  # the shipped model: about one sample in eight
    gals = VAEGalaxy.sample(60, 8, model, max_border_sky=None)
    assert all(g.negative_light <= galsim_vae.galaxy.MAX_NEGATIVE_LIGHT for g in gals)
    # The others are returned as they were; the refused ones redrawn in place (a new latent at
    # the same pixel scale and flux) unless all GUARD_REDRAWS latents failed, when a new galaxy
    # takes its place at the end.
    kept = [tuple(g.latent) for g in gals]
    assert all(tuple(raw[i].latent) in kept for i in range(60) if i not in bad)
    assert not any(tuple(raw[i].latent) in kept for i in bad)
    pairs = {(raw[i].pixel_scale, raw[i].flux) for i in bad}
    in_place = [g for g in gals if (g.pixel_scale, g.flux) in pairs]
    assert len(bad) - 2 <= len(in_place) <= len(bad)
    with pytest.raises(galsim.GalSimRangeError, match="max_negative_light"):
        VAEGalaxy.sample(1, 5, model, max_negative_light=-1)
    # The density is conditioned on each refused galaxy's own pixel scale and flux.
    asked, given = [], galsim_vae.LatentDensity.sample_given

    def spy(self, rng, **kw):
        if "log10_pixel_scale" in kw:  # the guard's redraws (the first draws give a flux only)
            asked.extend(zip(kw["log10_pixel_scale"], kw["log10_flux"]))
        return given(self, rng, **kw)

    monkeypatch.setattr(galsim_vae.LatentDensity, "sample_given", spy)
    VAEGalaxy.sample(60, 8, model, max_border_sky=None)
    want = {(np.log10(raw[i].pixel_scale), np.log10(raw[i].flux)) for i in bad}
    assert {(float(a), float(b)) for a, b in asked[: len(bad) * GUARD_BATCH]} == {
        (float(a), float(b)) for a, b in want
    }
    monkeypatch.undo()
    # One flux or pixel scale for all: an array would not follow the redrawn galaxies.
    with pytest.raises(galsim.GalSimValueError, match="one flux"):
        VAEGalaxy.sample(2, 5, model, flux=[1.0, 2.0])
    # A decoder whose first galaxy carries a dark hole of half its flux: redrawn once.
    real, calls = galsim_vae.VAEModel.decode, []

    def decode(self, z):
        d = real(self, z)
        if not calls:
            d[0, :8, :8] -= 0.5 * d[0].sum() / 64
        calls.append(len(z))
        return d

    monkeypatch.setattr(galsim_vae.VAEModel, "decode", decode)
    first = VAEGalaxy.sample(1, 9, model, max_border_sky=None)[0]
    assert calls[:2] == [1, GUARD_BATCH]
    assert first.negative_light <= galsim_vae.galaxy.MAX_NEGATIVE_LIGHT


_FORK_SCRIPT = """
import multiprocessing as mp
import galsim_vae

def work(i):
    g = galsim_vae.VAEGalaxy.sample(1, i)[0]
    return float(g.drawImage(nx=32, ny=32, scale=0.05).array.sum())

if __name__ == "__main__":
    here = [work(i) for i in range(1, 4)]  # the parent runs the model (and GalSim OpenMP) first
    with mp.get_context("fork").Pool(2) as pool:
        there = pool.map_async(work, range(1, 4)).get(timeout=60)
    assert there == here, (there, here)
    print("ok")
"""


def test_drawing_in_a_forked_pool_does_not_hang(tmp_path):
    # A fork-started worker of a process that has run the model used to hang forever in torch's
    # or GalSim's OpenMP pool; the children now run on one thread and give the parent's pixels.
    import subprocess
    import sys

    script = tmp_path / "fork.py"
    script.write_text(_FORK_SCRIPT)
    r = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
