import warnings

import galsim
import numpy as np
import pytest

from galsim_vae import VAEGalaxy, get_model, hst_f814w_psf
from galsim_vae.attributes import (
    HUBBLE_TYPES,
    AttributeModel,
    bt_to_ttype,
    fit_attribute_model,
    measure_sersic,
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


def test_measure_sersic_recovers_a_known_profile():
    psf = hst_f814w_psf()
    truth = [(0.25, 1.0, 0.5, 30.0), (0.15, 3.0, 0.8, 120.0)]
    stamps = []
    for hlr, n, q, pa in truth:
        gal = galsim.Sersic(n=n, half_light_radius=hlr, flux=50.0)
        gal = gal.shear(q=q, beta=pa * galsim.degrees)
        img = galsim.Convolve(gal, psf).drawImage(nx=64, ny=64, scale=0.03, method="no_pixel")
        stamps.append(img.array)
    got = measure_sersic(np.array(stamps))
    for i, (hlr, n, q, pa) in enumerate(truth):
        assert got["half_light_radius"][i] == pytest.approx(hlr, rel=0.05)
        assert got["sersic_n"][i] == pytest.approx(n, rel=0.15)
        assert got["axis_ratio"][i] == pytest.approx(q, abs=0.05)
        assert got["position_angle"][i] == pytest.approx(pa, abs=3.0)
    with pytest.raises(galsim.GalSimValueError, match="N, S, S"):
        measure_sersic(np.zeros((64, 64)))


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
        # Latent 0 carries log10(hlr): its median must follow the request, edges included.
        assert 10 ** (np.median(z[:, 0]) / 10) == pytest.approx(req, rel=0.05)
        assert np.std(z[:, 2]) > 0.02  # the other latents vary: many galaxies, not one
    # The inverse perceptron reads size back from latent 0 (and not from the noise latents).
    est = am.estimate(z_train[:200])
    ratio = est["half_light_radius"] / h[:200]
    assert abs(np.median(ratio) - 1) < 0.05 and np.std(np.log(ratio)) < 0.1
    assert np.sqrt(np.mean((est["hubble_type"] - z_train[:200, 1] * 5) ** 2)) < 1.0


def test_sample_with_norm_puts_the_predicted_sky_at_zero():
    am, *_ = _toy_model()
    z, lo, hi = am.sample_with_norm(
        np.zeros(50), np.full(50, 0.1), np.full(50, 0.6), galsim.BaseDeviate(4), -0.01, 0.1
    )
    assert lo.shape == hi.shape == (50,)
    np.testing.assert_allclose(hi - lo, 0.11)  # the flux scale is kept
    # In flux units the sky of a decoded stamp is lo + sky_normalised * (hi - lo): zero.
    np.testing.assert_allclose(lo + (0.1 + 0.5 * z[:, 2]) * (hi - lo), 0.0, atol=0.11 * 0.02)


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
    with pytest.raises(galsim.GalSimValueError, match="refit"):
        AttributeModel.load(p)
    (tmp_path / "junk.npz").write_text("not an npz")
    with pytest.raises(galsim.GalSimValueError, match="Not an attribute model"):
        AttributeModel.load(tmp_path / "junk.npz")


def test_training_measurements_resume_after_interruption(tmp_path, monkeypatch):
    import galsim_vae.attributes as attributes

    calls = []

    def fake_measure(stamps, **kwargs):
        calls.append(len(stamps))
        v = stamps.sum(axis=(1, 2)).astype(float)
        return {k: v for k in ("half_light_radius", "sersic_n", "axis_ratio", "position_angle")}

    monkeypatch.setattr(attributes, "measure_sersic", fake_measure)
    x = np.arange(5 * 4).reshape(5, 2, 2).astype(float)
    ident = np.array(["a", "b", "c", "d", "e"])
    path = tmp_path / "measurements.npz"
    first = attributes._measure_resumable(x[:3], ident[:3], path, block=2)  # "interrupted"
    assert calls == [2, 1] and len(first["sersic_n"]) == 3
    calls.clear()
    out = attributes._measure_resumable(x, ident, path, block=2)
    assert calls == [2]  # only the two stamps not yet measured
    np.testing.assert_array_equal(out["sersic_n"], x.sum(axis=(1, 2)))
    calls.clear()
    attributes._measure_resumable(x, np.array(list("vwxyz")), path, block=2)  # other rows
    assert calls == [2, 2, 1]


@pytest.fixture(scope="module")
def fitted(sim_dataset, tmp_path_factory):
    am, rep = fit_attribute_model(
        sim_dataset, None, max_rows=100, n_per=3, k=8, report_dir=tmp_path_factory.mktemp("attr")
    )
    return am, rep


def test_fit_save_load_and_estimate(fitted, tmp_path):
    am, rep = fitted
    p = am.save(tmp_path / "a.npz")
    am2 = AttributeModel.load(p)
    z = am2.sample(np.zeros(4), np.full(4, 0.2), np.full(4, 0.6), galsim.BaseDeviate(1))
    assert z.shape == (4, 64)
    # Same draws from the saved (float32) model as from the fitted one.
    np.testing.assert_allclose(
        z,
        am.sample(np.zeros(4), np.full(4, 0.2), np.full(4, 0.6), galsim.BaseDeviate(1)),
        rtol=1e-3,
        atol=1e-3,
    )
    assert not np.allclose(z[0], z[1])  # a distribution, not only a mean
    est = am2.estimate(z)
    assert set(est) == {"hubble_type", "half_light_radius", "axis_ratio"}
    assert np.all(est["half_light_radius"] > 0)
    assert "sklearn_version" in am2.meta
    for k in ("inverse_hlr_scatter", "size_measured_median", "sersic_n_by_type"):
        assert k in rep
    assert len(rep["size_measured_median"]) == len(rep["size_requested"]) == 6
    assert all(v > 0 for v in rep["size_measured_median"])
    with pytest.raises(galsim.GalSimValueError, match="not found"):
        AttributeModel.load(tmp_path / "none.npz")


def test_check_ranges(fitted):
    am, _ = fitted
    lo, hi = am.a["hlr_range"]
    am.check(0.5 * (lo + hi), 0.5)
    with pytest.raises(galsim.GalSimRangeError, match="half_light_radius"):
        am.check(10 * hi, 0.5)
    with pytest.raises(galsim.GalSimRangeError, match="axis_ratio"):
        am.check(0.5 * (lo + hi), 1.5)


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
    est = m.estimate_attributes(np.array(batch[1].original.latent))
    assert est["half_light_radius"].shape == (1,)
    with pytest.raises(galsim.GalSimValueError, match="Hubble type"):
        VAEGalaxy.from_attributes("Sx", 0.3, model=m)
    with pytest.raises(galsim.GalSimValueError, match="needs half_light_radius"):
        VAEGalaxy.from_attributes("Sb", None, model=m)
    with pytest.raises(galsim.GalSimValueError, match="needs hubble_type"):
        VAEGalaxy.from_attributes(None, 0.2, model=m)
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="one per galaxy"):
        VAEGalaxy.from_attributes(["E", "Sb"], [0.1, 0.2, 0.3], model=m)
    with pytest.raises(galsim.GalSimRangeError, match="half_light_radius"):
        VAEGalaxy.from_attributes("Sb", 30.0, model=m)
    # The simulated ellipticals are small: a 0.38" one is outside the training attributes.
    with pytest.warns(galsim.GalSimWarning, match="outside the training galaxies"):
        VAEGalaxy.from_attributes("E", 0.38, rng=1, model=m)
    assert len(HUBBLE_TYPES) == 7
