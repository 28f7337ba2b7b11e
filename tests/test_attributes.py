import warnings

import galsim
import numpy as np
import pytest

from galsim_vae import AttributeModel, VAEGalaxy, get_model
from galsim_vae.attributes import (
    HUBBLE_TYPES,
    bt_to_ttype,
    simulated_ttype,
    ttype,
    ttype_to_bt,
)


def test_simien_de_vaucouleurs_relation():
    assert ttype_to_bt(-5) == pytest.approx(1.0)
    # Delta m at T = 3 (x = 8): 0.324*8 - 0.054*64 + 0.0047*512 = 1.5424 mag
    assert ttype_to_bt(3) == pytest.approx(10 ** (-0.4 * 1.5424), rel=1e-6)
    t = np.linspace(-5, 10, 31)
    np.testing.assert_allclose(bt_to_ttype(ttype_to_bt(t)), t, atol=0.02)
    assert np.all(np.diff(ttype_to_bt(t)) < 0)
    assert ttype("sb") == 3.0 and ttype("Irr") == 10.0 and ttype(2) == 2.0
    # Every class name maps to the T-type of its bulge-to-total ratio, in Hubble order.
    assert [ttype(k) for k in ("E", "S0", "Sa", "Sb", "Sc", "Sd", "Irr")] == sorted(
        HUBBLE_TYPES.values()
    )


def test_simulated_ttype_reads_knots_past_sd():
    bt = np.array([1.0, 0.24, 0.05, 0.02, 0.01, 0.0, 0.0, 0.0])
    kf = np.array([0.1, 0.1, 0.1, 0.0, 0.0, 0.0, 0.15, 0.3])
    t = simulated_ttype(bt, kf, 0.3)
    # Bulge fraction down to Sd (B/T 0.020): knots do not matter there.
    np.testing.assert_allclose(t[:3], bt_to_ttype(bt[:3]))
    np.testing.assert_allclose(simulated_ttype(bt[:3], np.zeros(3), 0.3), t[:3])
    # Past Sd (B/T 0.020, T = 7 either way) the bulge no longer counts: smooth disks are Sd, the
    # clumpiest Irr.
    np.testing.assert_allclose(t[3:], [7.0, 7.0, 7.0, 8.5, 10.0], atol=0.02)
    assert np.all(np.diff(t[:5]) >= 0)
    with pytest.raises(galsim.GalSimRangeError, match="max_knot_fraction"):
        simulated_ttype(bt, kf, 0.0)


def test_bad_types():
    with pytest.raises(galsim.GalSimValueError, match="Unknown Hubble type"):
        ttype("Sz")
    with pytest.raises(galsim.GalSimRangeError, match="T-type"):
        ttype(12)


def _toy_model(n=2000, seed=1):
    """Training pairs whose latent 0 is 10 log10(hlr) and latent 1 T / 5; early types are small."""
    r = np.random.default_rng(seed)
    t = r.uniform(-5, 10, n)
    logh = r.normal(-1.1 + 0.04 * t, 0.15)
    q = r.uniform(0.2, 1.0, n)
    z = r.normal(scale=0.05, size=(n, 8))
    z[:, 0], z[:, 1] = 10 * logh, t / 5
    # The normalised sky of each toy stamp: carried by latent 2.
    sky = 0.1 + 0.5 * z[:, 2]
    return AttributeModel.fit(z, t, 10**logh, q, inverse_latents=z, sky=sky), z, t, 10**logh


def test_forward_model_is_a_conditional_distribution_on_size():
    am, z_train, _, h = _toy_model()
    rng = galsim.BaseDeviate(2)
    for req in np.percentile(h, [5, 50, 95]):
        z = am.sample(np.full(200, 3.0), np.full(200, req), np.full(200, 0.6), rng)
        # Latent 0 carries log10(hlr): its median must follow the request, edges included (at
        # the 5th percentile the neighbours lie above the request: +3% to +5% over ten seeds).
        assert 10 ** (np.median(z[:, 0]) / 10) == pytest.approx(req, rel=0.06)
        assert np.std(z[:, 2]) > 0.02  # the other latents vary: many galaxies, not one
    # The inverse perceptron reads size back from latent 0 (and not from the noise latents).
    est = am.estimate(z_train[:200])
    ratio = est["half_light_radius"] / h[:200]
    assert abs(np.median(ratio) - 1) < 0.05 and np.std(np.log(ratio)) < 0.1
    assert np.sqrt(np.mean((est["hubble_type"] - z_train[:200, 1] * 5) ** 2)) < 1.0


def test_sky_predictor_follows_the_sky_of_the_training_stamps():
    am, z, t, h = _toy_model()
    # The toy stamps' normalised sky is carried by latent 2 (0.1 + 0.5 z2): the sky perceptron
    # must predict it from the latents, not return a constant.
    pred = am.decoded_sky(z[:300])
    truth = 0.1 + 0.5 * z[:300, 2]
    assert np.std(pred - truth) < 0.3 * np.std(truth)
    assert np.corrcoef(pred, truth)[0, 1] > 0.9
    no_sky = AttributeModel.fit(z[:500], t[:500], h[:500], np.linspace(0.2, 1.0, 500))
    assert no_sky.decoded_sky(z[:3]) is None


def test_request_outside_the_training_attributes_warns():
    am, *_ = _toy_model()
    # Ellipticals are small in the toy training set: a large one is outside it.
    with pytest.warns(galsim.GalSimWarning, match="outside the training galaxies"):
        am.sample([-5.0], [0.4], [0.6], galsim.BaseDeviate(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        am.sample([-5.0], [0.05], [0.6], galsim.BaseDeviate(3))


def test_old_or_foreign_files_are_refused(tmp_path):
    p = tmp_path / "old.npz"
    np.savez(p, meta=np.array("{}"), latents=np.zeros((3, 2)), attrs=np.zeros((3, 3)))
    with pytest.raises(galsim.GalSimValueError, match="lacks"):
        AttributeModel.load(p)
    (tmp_path / "junk.npz").write_text("not an npz")
    with pytest.raises(galsim.GalSimValueError, match="Not a attribute model"):
        AttributeModel.load(tmp_path / "junk.npz")


def test_check_ranges():
    am, _, _, h = _toy_model()
    lo, hi = am.a["hlr_range"]
    np.testing.assert_allclose([lo, hi], np.percentile(h, [1, 99]))
    am.check(0.5 * (lo + hi), 0.5)
    am.check([lo, hi], [0.05, 1.0])  # the limits themselves are inside
    with pytest.raises(galsim.GalSimRangeError, match="half_light_radius"):
        am.check(1.01 * hi, 0.5)
    with pytest.raises(galsim.GalSimRangeError, match="half_light_radius"):
        am.check(0.99 * lo, 0.5)
    with pytest.raises(galsim.GalSimRangeError, match="half_light_radius"):
        am.check(np.nan, 0.5)
    with pytest.raises(galsim.GalSimRangeError, match="axis_ratio"):
        am.check(0.5 * (lo + hi), 1.5)
    with pytest.raises(galsim.GalSimRangeError, match="axis_ratio"):
        am.check(0.5 * (lo + hi), 0.0)


def test_save_load_round_trip(tmp_path):
    am, *_ = _toy_model()
    p = am.save(tmp_path / "a.npz")
    am2 = AttributeModel.load(p)
    args = (np.zeros(4), np.full(4, 0.08), np.full(4, 0.6))
    z = am2.sample(*args, galsim.BaseDeviate(1))
    # Same draws from the saved (float32) model as from the fitted one.
    np.testing.assert_allclose(z, am.sample(*args, galsim.BaseDeviate(1)), rtol=1e-3, atol=1e-3)
    assert not np.allclose(z[0], z[1])  # a distribution, not only a mean
    np.testing.assert_allclose(
        am2.estimate(z)["half_light_radius"], am.estimate(z)["half_light_radius"], rtol=1e-3
    )
    assert am2.meta["sklearn_version"] == am.meta["sklearn_version"]
    with pytest.raises(galsim.GalSimValueError, match="not found"):
        AttributeModel.load(tmp_path / "none.npz")


def test_from_attributes_with_shipped_model():
    m = get_model()
    g = VAEGalaxy.from_attributes("Sb", 0.3, rng=3, model=m, flux=100.0)
    assert isinstance(g, galsim.GSObject) and g.flux == pytest.approx(100.0)
    batch = VAEGalaxy.from_attributes(
        ["E", "Sc"], [0.1, 0.25], 0.6, position_angle=[0, 45], rng=galsim.BaseDeviate(5), model=m
    )
    assert len(batch) == 2
    again = VAEGalaxy.from_attributes(
        ["E", "Sc"], [0.1, 0.25], 0.6, position_angle=[0, 45], rng=galsim.BaseDeviate(5), model=m
    )
    assert batch == again
    sc = batch[1].original.pixel_scale  # the shipped flux model's galaxies have their own
    est = m.estimate_attributes(np.array(batch[1].original.latent), sc)
    assert est["half_light_radius"].shape == (1,)
    assert est["half_light_radius"][0] == pytest.approx(0.25, rel=0.3)
    with pytest.raises(galsim.GalSimValueError, match="Hubble type"):
        VAEGalaxy.from_attributes("Sx", 0.3, model=m)
    with pytest.raises(galsim.GalSimValueError, match="needs half_light_radius"):
        VAEGalaxy.from_attributes("Sb", None, model=m)
    with pytest.raises(galsim.GalSimValueError, match="needs hubble_type"):
        VAEGalaxy.from_attributes(None, 0.2, model=m)
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="one per galaxy"):
        VAEGalaxy.from_attributes(["E", "Sb"], [0.1, 0.2, 0.3], model=m)
    # Sizes outside the model's range: clipped with one warning naming the count (a catalog
    # run goes on), or refused on request; a non-finite size is always refused.
    lo, hi = m.attributes.a["hlr_range"]
    with pytest.warns(galsim.GalSimWarning, match="2 of 3 half_light_radius") as w:
        big = VAEGalaxy.from_attributes("Sb", [30.0, 0.3, 1e-4], rng=5, model=m, flux=1.0)
    assert len([x for x in w if "half_light_radius" in str(x.message)]) == 1
    at_edge = VAEGalaxy.from_attributes("Sb", [hi, 0.3, lo], rng=5, model=m, flux=1.0)
    assert big == at_edge
    with pytest.raises(galsim.GalSimRangeError, match="half_light_radius"):
        VAEGalaxy.from_attributes("Sb", 30.0, model=m, out_of_range="raise")
    for bad in (np.inf, 0.0, -0.2):  # not a size: refused, never clipped
        with pytest.raises(galsim.GalSimRangeError, match="half_light_radius"):
            VAEGalaxy.from_attributes("Sb", bad, model=m)
    with pytest.raises(galsim.GalSimValueError, match="out_of_range"):
        VAEGalaxy.from_attributes("Sb", 0.3, model=m, out_of_range="ignore")
    # A tiny, edge-on irregular is outside the training attributes: it warns. (A large
    # elliptical no longer does: the flux model stretches the largest ones it has; and since the
    # deep simulator's flat faint disks, axis ratio 0.1 at 0.06" no longer does either.)
    with pytest.warns(galsim.GalSimWarning, match="outside the training galaxies"):
        VAEGalaxy.from_attributes("Irr", 0.059, 0.05, rng=1, model=m)


def _mean_shear(gals):
    e = []
    for g in gals:
        img = g.drawImage(nx=64, ny=64, scale=0.03)
        s = galsim.hsm.FindAdaptiveMom(img, strict=False)
        if s.moments_status == 0:
            e.append((s.observed_shape.g1, s.observed_shape.g2))
    e = np.array(e)
    return e.mean(axis=0), e.std(axis=0) / np.sqrt(len(e))


def test_attribute_galaxies_have_random_orientations():
    m = get_model()
    n = 300
    args = (["Sb"] * n, np.full(n, 0.2), np.full(n, 0.5))
    aligned = VAEGalaxy.from_attributes(*args, position_angle=0.0, rng=4, model=m)
    (g1, _), err = _mean_shear(aligned)
    assert g1 > 10 * err[0]  # along x, as the attribute model makes them
    free = VAEGalaxy.from_attributes(*args, rng=4, model=m)
    mean, err = _mean_shear(free)
    assert np.all(np.abs(mean) < 4 * err) and np.all(np.abs(mean) < 0.03)
    # Same seed, same galaxies; the orientations come after the latents, which are unchanged.
    again = VAEGalaxy.from_attributes(*args, rng=4, model=m)
    assert again == free
    assert [g.original.latent for g in free] == [g.latent for g in aligned]
    with pytest.raises(galsim.GalSimValueError, match="position_angle"):
        VAEGalaxy.from_attributes("Sb", 0.2, position_angle=np.nan, model=m)


def _toy_scale_model(n=2000, seed=4):
    """Pairs of a flux model: large galaxies drawn at coarser scales, the latent carries the
    size in pixels (latent 0 = 10 log10 hlr_pix), each stamp has its own flux."""
    r = np.random.default_rng(seed)
    t = r.uniform(-5, 10, n)
    h = 10 ** r.normal(-0.6, 0.3, n)
    q = r.uniform(0.2, 1.0, n)
    scale = np.maximum(0.03, h / 6.0)  # galaxies above 0.18" are 6 pixels, like "fit" mode
    z = r.normal(scale=0.05, size=(n, 8))
    z[:, 0], z[:, 1] = 10 * np.log10(h / scale), t / 5
    flux = 10 ** r.uniform(1, 3, n)
    am = AttributeModel.fit(z, t, h, q, inverse_latents=z, pixel_scale=scale, flux=flux)
    return am, z, h, scale, flux


def test_scale_model_sizes_come_from_pixel_scales_and_latents():
    am, z_train, h, scale, flux = _toy_scale_model()
    assert am.scale_model and not _toy_model(500)[0].scale_model
    rng = galsim.BaseDeviate(5)
    lo, hi = am.a["hlr_range"]
    # Twice the largest training sizes is inside the range: stretched scales, no warning.
    assert hi == pytest.approx(2 * np.percentile(h, 99))
    for req in (0.9 * np.percentile(h, 2), np.median(h), np.percentile(h, 90), 0.95 * hi):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pop = am.sample_population(np.full(100, 3.0), np.full(100, req), np.full(100, 0.6), rng)
        size = pop["pixel_scale"] * 10 ** (pop["latent"][:, 0] / 10)
        assert np.median(size) == pytest.approx(req, rel=0.05)
        assert np.all(pop["pixel_scale"] >= 0.03 - 1e-12)
        # The size is the stretched scale's, not an extrapolated latent's: sizes in pixels stay
        # those of the training galaxies.
        assert np.median(pop["latent"][:, 0]) <= np.percentile(z_train[:, 0], 99.5)
        # Fluxes are the training galaxies' (the neighbours'), not one median value.
        assert np.all(np.isin(pop["flux"], flux)) and len(np.unique(pop["flux"])) > 10
    # sample() gives the latents of the same draw.
    a = am.sample([3.0], [0.3], [0.6], galsim.BaseDeviate(7))
    b = am.sample_population([3.0], [0.3], [0.6], galsim.BaseDeviate(7))["latent"]
    np.testing.assert_array_equal(a, b)
    # The inverse model needs the stamps' scales, and reads the size back with them.
    with pytest.raises(galsim.GalSimValueError, match="pixel_scale"):
        am.estimate(z_train[:10])
    est = am.estimate(z_train[:300], scale[:300])
    ratio = est["half_light_radius"] / h[:300]
    assert abs(np.median(ratio) - 1) < 0.05 and np.std(np.log(ratio)) < 0.1
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="flux"):
        AttributeModel.fit(z_train, np.zeros(len(h)), h, np.full(len(h), 0.5), flux=flux)


def test_scale_model_round_trips_through_its_file(tmp_path):
    am, *_ = _toy_scale_model(500)
    back = AttributeModel.load(am.save(tmp_path / "a.npz"))
    assert back.scale_model
    a = am.sample_population([1.0, 5.0], [0.2, 0.5], [0.5, 0.7], galsim.BaseDeviate(3))
    b = back.sample_population([1.0, 5.0], [0.2, 0.5], [0.5, 0.7], galsim.BaseDeviate(3))
    np.testing.assert_allclose(b["pixel_scale"], a["pixel_scale"], rtol=1e-5)
    np.testing.assert_allclose(b["latent"], a["latent"], rtol=1e-4, atol=1e-5)
