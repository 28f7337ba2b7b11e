import galsim
import numpy as np
import pytest

from galsim_vae import VAEGalaxy, get_model
from galsim_vae.attributes import (
    HUBBLE_TYPES,
    AttributeModel,
    bt_to_ttype,
    fit_attribute_model,
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


def test_bad_types():
    with pytest.raises(galsim.GalSimValueError, match="Unknown Hubble type"):
        ttype("Sz")
    with pytest.raises(galsim.GalSimRangeError, match="T-type"):
        ttype(12)


@pytest.fixture(scope="module")
def fitted(sim_dataset, tmp_path_factory):
    am, rep = fit_attribute_model(
        sim_dataset, None, max_rows=160, n_per=3, report_dir=tmp_path_factory.mktemp("attr")
    )
    return am, rep


def test_fit_save_load_and_estimate(fitted, tmp_path):
    am, rep = fitted
    p = am.save(tmp_path / "a.npz")
    am2 = AttributeModel.load(p)
    z = am2.sample(np.zeros(4), np.full(4, 0.2), np.full(4, 0.6), galsim.BaseDeviate(1))
    assert z.shape == (4, 64)
    np.testing.assert_array_equal(
        z, am.sample(np.zeros(4), np.full(4, 0.2), np.full(4, 0.6), galsim.BaseDeviate(1))
    )
    assert not np.allclose(z[0], z[1])  # a distribution, not only a mean
    est = am2.estimate(z)
    assert set(est) == {"hubble_type", "half_light_radius", "axis_ratio"}
    assert np.all(est["half_light_radius"] > 0)
    assert "sklearn_version" in am2.meta
    for k in ("inverse_hlr_scatter", "size_measured_median", "sersic_n_by_type"):
        assert k in rep
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
        ["E", "Sc"], [0.2, 0.3], 0.6, position_angle=[0, 45], rng=galsim.BaseDeviate(5), model=m
    )
    assert len(batch) == 2
    again = VAEGalaxy.from_attributes(
        ["E", "Sc"], [0.2, 0.3], 0.6, position_angle=[0, 45], rng=galsim.BaseDeviate(5), model=m
    )
    assert batch == again
    est = m.estimate_attributes(np.array(batch[1].original.latent))
    assert est["half_light_radius"].shape == (1,)
    with pytest.raises(galsim.GalSimValueError, match="Hubble type"):
        VAEGalaxy.from_attributes("Sx", 0.3, model=m)
    with pytest.raises(galsim.GalSimRangeError, match="half_light_radius"):
        VAEGalaxy.from_attributes("Sb", 30.0, model=m)
    assert len(HUBBLE_TYPES) == 7
