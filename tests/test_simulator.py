import importlib

import galsim
import numpy as np
import pytest

sim_mod = importlib.import_module("galsim_vae.pipeline.simulator")


def test_same_seed_same_set_any_nproc(data_dir):
    a, _, ra, _ = sim_mod.simulate(6, seed=11, data_dir=data_dir, nproc=1, progress=False)
    b, _, rb, _ = sim_mod.simulate(6, seed=11, data_dir=data_dir, nproc=2, progress=False)
    c, _, _, _ = sim_mod.simulate(6, seed=12, data_dir=data_dir, nproc=1, progress=False)
    np.testing.assert_array_equal(a, b)
    assert ra == rb
    assert not np.array_equal(a, c)
    # Extending a set reproduces its tail.
    d, _, _, _ = sim_mod.simulate(3, seed=11, data_dir=data_dir, nproc=1, progress=False, start=3)
    np.testing.assert_array_equal(a[3:], d)


def test_simulated_rows_are_consistent(data_dir):
    images, psfs, rows, sim = sim_mod.simulate(
        20, seed=3, data_dir=data_dir, nproc=1, progress=False
    )
    assert images.shape == (20, 64, 64) and images.dtype == np.float32
    np.testing.assert_allclose(psfs.sum(axis=(1, 2)), 1, atol=0.03)
    for img, r in zip(images, rows, strict=False):
        assert 0 < r["flux_fraction"] <= 1.0 + 1e-6
        assert 0 <= r["bulge_fraction"] <= 1
        assert r["hlr"] > 0 and 0 <= r["psf_index"] < len(psfs)
        assert r["flux"] == pytest.approx(float(img.sum()), rel=1e-5)
        # Stamp flux = fraction * total, up to the noise summed over the stamp.
        assert abs(r["flux"] - r["flux_fraction"] * r["flux_total"]) < 8 * 64 * np.sqrt(
            r["noise_variance"]
        )


def test_bulge_disk_hlr():
    assert sim_mod.bulge_disk_hlr(0.0, 0.2, 0.5) == pytest.approx(0.5, rel=1e-5)
    assert sim_mod.bulge_disk_hlr(1.0, 0.2, 0.5) == pytest.approx(0.2, rel=1e-5)
    # Compare with GalSim on a circular mixture.
    prof = galsim.Add(
        galsim.DeVaucouleurs(half_light_radius=0.2, flux=0.3),
        galsim.Exponential(half_light_radius=0.5, flux=0.7),
    )
    img = prof.drawImage(nx=800, ny=800, scale=0.01, method="no_pixel")
    assert sim_mod.bulge_disk_hlr(0.3, 0.2, 0.5) == pytest.approx(
        img.calculateHLR(flux=1.0), rel=0.01
    )


def test_bad_inputs(tmp_path, data_dir):
    with pytest.raises(galsim.GalSimValueError, match="not found"):
        sim_mod.COSMOSLikeSimulator(data_dir=tmp_path / "nothing")
    with pytest.raises(galsim.GalSimValueError, match="positive integer"):
        sim_mod.simulate(0, data_dir=data_dir)
    with pytest.raises(galsim.GalSimRangeError, match="max_knot_fraction"):
        sim_mod.COSMOSLikeSimulator(data_dir, max_knot_fraction=1.5)
    with pytest.raises(galsim.GalSimRangeError, match="stamp_size"):
        sim_mod.COSMOSLikeSimulator(data_dir, stamp_size=100)
