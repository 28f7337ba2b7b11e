import importlib

import galsim
import numpy as np
import pytest

sim_mod = importlib.import_module("galsim_vae.pipeline.simulator")


def test_same_seed_same_set_any_nproc(data_dir):
    a, _, ra, _, ta = sim_mod.simulate(6, seed=11, data_dir=data_dir, nproc=1, progress=False)
    b, _, rb, _, tb = sim_mod.simulate(6, seed=11, data_dir=data_dir, nproc=2, progress=False)
    c = sim_mod.simulate(6, seed=12, data_dir=data_dir, nproc=1, progress=False).images
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ta, tb)
    assert ra == rb
    assert not np.array_equal(a, c)
    # Extending a set reproduces its tail.
    d = sim_mod.simulate(3, seed=11, data_dir=data_dir, nproc=1, progress=False, start=3)
    np.testing.assert_array_equal(a[3:], d.images)


def test_simulated_rows_are_consistent(data_dir):
    images, psfs, rows, sim, truths = sim_mod.simulate(
        20, seed=3, data_dir=data_dir, nproc=1, progress=False
    )
    assert images.shape == (20, 64, 64) and images.dtype == np.float32
    np.testing.assert_allclose(psfs.sum(axis=(1, 2)), 1, atol=0.03)
    for img, r in zip(images, rows, strict=False):
        assert 0 < r["flux_fraction"] <= 1.0 + 1e-6
        assert 0 <= r["bulge_fraction"] <= 1
        assert r["hlr"] > 0 and 0 <= r["psf_index"] < len(psfs)
        assert r["flux"] == pytest.approx(float(img.sum()), rel=1e-5)
        # Stamp flux = fraction * total (plus a companion's light), up to the noise summed over
        # the stamp.
        if r["companion_row"] < 0:
            assert abs(r["flux"] - r["flux_fraction"] * r["flux_total"]) < 8 * 64 * np.sqrt(
                r["noise_variance"]
            )
    # The truth is the same galaxy without noise: its flux is the true flux in the stamp (with a
    # companion's light on top where there is one), and the stamp minus its truth is noise of the
    # row's variance.
    fluxes = np.array([r["flux_fraction"] * r["flux_total"] for r in rows])
    alone = np.array([r["companion_row"] < 0 for r in rows])
    assert alone.any() and not alone.all()
    np.testing.assert_allclose(truths.sum(axis=(1, 2))[alone], fluxes[alone], rtol=1e-4)
    assert np.all(truths.sum(axis=(1, 2))[~alone] > fluxes[~alone])
    ratio = (images - truths).var(axis=(1, 2)) / np.array([r["noise_variance"] for r in rows])
    assert 0.8 < np.median(ratio) < 1.2


@pytest.fixture(scope="module")
def fit_set(data_dir):
    return sim_mod.simulate(
        40, seed=5, data_dir=data_dir, nproc=1, progress=False, scale_mode="fit"
    )


def test_fit_mode_scales_each_galaxy_to_fit(fit_set):
    images, psfs, rows, sim, truths = fit_set
    scale = np.array([r["pixel_scale"] for r in rows])
    frac = np.array([r["flux_fraction"] for r in rows])
    hlr = np.array([r["hlr"] for r in rows])
    # Native where the galaxy fits, coarser where it does not; never finer.
    assert scale.min() == pytest.approx(0.03) and scale.max() > 0.06
    for r, s in zip(rows, scale, strict=True):
        assert s == pytest.approx(sim.stamp_scale(r))
    # Large galaxies are kept whole: the median galaxy keeps 99% of its light in the stamp,
    # and the size in pixels no longer grows with the size in arcsec.
    assert np.median(frac) > 0.99 and np.percentile(frac, 10) > 0.9
    big = hlr > np.median(hlr)
    assert np.all(scale[big] >= np.median(scale[~big]))
    # One PSF per stamp, at the stamp's scale: narrower in pixels where the pixels are larger.
    assert psfs.shape == (40, sim_mod.FIT_PSF_SIZE, sim_mod.FIT_PSF_SIZE)
    np.testing.assert_allclose(psfs.sum(axis=(1, 2)), 1, atol=0.03)
    assert [r["psf_index"] for r in rows] == list(range(40))
    y, x = np.mgrid[:32, :32] - 16.0
    width = [np.sqrt((p * (x**2 + y**2)).sum() / p.sum()) for p in psfs]  # pixels
    assert np.corrcoef(width, scale)[0, 1] < -0.8
    own = np.array([r["flux_total"] * f for r, f in zip(rows, frac)])
    alone = np.array([r["companion_row"] < 0 for r in rows])  # a companion's light adds
    np.testing.assert_allclose(truths.sum(axis=(1, 2))[alone], own[alone], rtol=1e-4)
    assert np.all(truths.sum(axis=(1, 2))[~alone] > own[~alone])


def test_fit_mode_noise_is_resampled_like_real_stamps(fit_set):
    # Resampled onto k times larger pixels the stamp keeps its flux, so a pixel sums k^2 native
    # pixels: white noise would grow k times, the COSMOS noise (positively correlated between
    # neighbours) more; the galaxy's light per pixel grows k^2 times. As a real postage stamp
    # redrawn onto a coarser grid (stamps.real_stamp): the same code path.
    images, _, rows, _, truths = fit_set
    k = np.array([r["pixel_scale"] for r in rows]) / 0.03
    per_var = (images - truths).std(axis=(1, 2)) / np.sqrt([r["noise_variance"] for r in rows])
    native = k < 1.01
    assert native.any() and (k > 2).any()
    assert np.median(per_var[native]) == pytest.approx(1.0, rel=0.2)
    growth = per_var[~native] / k[~native]
    assert np.all(growth > 0.9) and np.median(growth) < 4
    assert np.corrcoef(per_var, k)[0, 1] > 0.8


def test_smooth_morphology_draws_the_v2_galaxies(data_dir):
    smooth = sim_mod.COSMOSLikeSimulator(data_dir, morphology="smooth")
    structured = sim_mod.COSMOSLikeSimulator(data_dir)
    same = 0
    for i in range(20):
        a, b = smooth.stamp(i, 9), structured.stamp(i, 9)
        assert "arm_m" not in a["row"] and "arm_m" in b["row"]
        assert a["row"]["flux_true"] == b["row"]["flux_true"]
        assert a["row"]["psf_index"] == b["row"]["psf_index"]
        if b["row"]["late_type_redraw"]:  # a faint galaxy made a disk galaxy of its flux
            assert b["row"]["bulge_fraction"] < sim_mod.STRUCTURE["max_bulge_fraction"]
            assert a["row"]["dimming_mag"] > 0
            continue
        # The structure is drawn after the smooth parameters: the same bulge and disk underneath.
        for k in ("bulge_fraction", "disk_hlr", "disk_q", "bulge_hlr", "bulge_beta"):
            assert a["row"][k] == b["row"][k]
        same += 1
    assert 5 < same < 20
    with pytest.raises(ValueError, match="morphology"):
        sim_mod.COSMOSLikeSimulator(data_dir, morphology="spiral")


def test_deep_morphology_flattens_and_clumps_faint_disks(data_dir):
    structured = sim_mod.COSMOSLikeSimulator(data_dir)
    deep = sim_mod.COSMOSLikeSimulator(data_dir, morphology="deep")
    cfg = deep.config()
    assert cfg["morphology"] == "deep" and cfg["deep_shape_slope"] < 0
    assert 23.0 < cfg["deep_pivot_mag"] < 23.5
    faint, q_struct, q_deep, mags = 0, [], [], []
    for i in range(300):
        a = structured.draw_params(galsim.UniformDeviate(1000 + i))
        b = deep.draw_params(galsim.UniformDeviate(1000 + i))
        # Drawn last: everything else is the structured galaxy of the same seed.
        assert b["flux_true"] == a["flux_true"] and b["psf_index"] == a["psf_index"]
        mag = 25.94 - 2.5 * np.log10(b["flux_true"])
        disky = a["bulge_fraction"] < sim_mod.STRUCTURE["max_bulge_fraction"]
        assert b["faint_disk_shape"] == int(disky and mag > sim_mod.DEEP["faint_mag"])
        if not b["faint_disk_shape"]:
            for k in ("disk_q", "bulge_fraction", "n_clumps", "clump_light"):
                assert b[k] == a[k]
            assert b["faint_clumps"] == 0
            continue
        faint += 1
        q_struct.append(a["disk_q"])
        q_deep.append(b["disk_q"])
        mags.append(mag)
        assert b["bulge_fraction"] < sim_mod.STRUCTURE["max_bulge_fraction"]
        assert sim_mod.DEEP["min_disk_q"] <= b["disk_q"] <= 1
        if b["faint_clumps"]:
            lo, hi = sim_mod.DEEP["faint_clumps"]
            assert lo <= b["n_clumps"] <= hi
            lo, hi = sim_mod.DEEP["faint_clump_light"]
            assert lo * b["n_clumps"] <= b["clump_light"] <= hi * b["n_clumps"]
    assert faint > 50
    # Faint disks are flatter than the dimmed bright ones they replace, the faintest flattest.
    assert np.median(q_deep) < np.median(q_struct) - 0.03
    mags, q_deep = np.array(mags), np.array(q_deep)
    assert np.median(q_deep[mags > 24.5]) < np.median(q_deep[mags < 24])
    # The trend: a quantile's axis ratio shrinks with magnitude past the pivot, not before.
    shapes = deep._faint
    p = cfg["deep_pivot_mag"]
    assert shapes.draw(0.5, p + 1)[0] < shapes.draw(0.5, p)[0] == shapes.draw(0.5, p - 1)[0]
    assert shapes.draw(0.5, p + 50)[0] == sim_mod.DEEP["min_disk_q"]
    # The stamps draw: a deep set's galaxy is a galaxy.
    s = deep.stamp(0, 7)
    assert s["image"].shape == (64, 64) and np.isfinite(s["image"]).all()


def test_faint_size_slope_shrinks_only_galaxies_past_the_pivot(data_dir):
    plain = sim_mod.COSMOSLikeSimulator(data_dir, morphology="deep")
    slope = 0.076
    calibrated = sim_mod.COSMOSLikeSimulator(data_dir, morphology="deep", faint_size_slope=slope)
    assert plain.config()["faint_size_slope"] == 0
    assert calibrated.config()["faint_size_slope"] == slope
    past = 0
    for i in range(300):
        a = plain.draw_params(galsim.UniformDeviate(2000 + i))
        b = calibrated.draw_params(galsim.UniformDeviate(2000 + i))
        # No random draw of its own: everything but the sizes is the same galaxy.
        assert {k: v for k, v in a.items() if not k.endswith("hlr")} == {
            k: v for k, v in b.items() if not k.endswith("hlr")
        }
        mag = 25.94 - 2.5 * np.log10(a["flux_true"])
        factor = 10 ** (-slope * max(mag - sim_mod.FAINT_SIZE_PIVOT, 0.0))
        past += mag > sim_mod.FAINT_SIZE_PIVOT
        # Late-type redraws take their sizes from the same scale: shrunk alike.
        for k in ("disk_hlr", "bulge_hlr"):
            assert b[k] == pytest.approx(factor * a[k], rel=1e-12), (k, mag)
    assert past > 30
    for bad in (-0.1, float("nan"), 2.0):
        with pytest.raises(ValueError, match="faint_size_slope"):
            sim_mod.COSMOSLikeSimulator(data_dir, faint_size_slope=bad)


def test_spiral_disk_keeps_flux_and_profile_and_winds():
    hlr, gsp = 0.3, galsim.GSParams()
    flat = sim_mod._spiral_disk(hlr, 2.0, 2, 20.0, 0.0, 0.0, gsp)
    arms = sim_mod._spiral_disk(hlr, 2.0, 3, 20.0, 0.6, 0.0, gsp)
    kw = dict(nx=128, ny=128, scale=0.01, method="no_pixel")
    f, s = flat.drawImage(**kw).array, arms.drawImage(**kw).array
    exp = galsim.Exponential(half_light_radius=hlr, flux=2.0).drawImage(**kw).array
    # Without arms: the exponential disk; with them the same flux and radial profile...
    np.testing.assert_allclose(f, exp, atol=0.05 * exp.max())  # the cusp, sampled at h/6
    assert s.sum() == pytest.approx(f.sum(), rel=1e-3)
    y, x = np.indices(s.shape) - 63.5
    ring = (np.hypot(x, y) > 15) & (np.hypot(x, y) < 40)
    assert s[ring].sum() == pytest.approx(f[ring].sum(), rel=0.02)
    # ... but three arms: the ring's light varies with angle, and a 120-degree turn maps the
    # image onto itself far better than a 60-degree one.
    assert (s[ring] / f[ring]).std() > 0.25  # amplitude 0.6: 0.42 for a pure cosine
    t = np.arctan2(y, x)
    sector = ring & (np.abs(t) < 0.3)
    turned = ring & (np.abs(np.angle(np.exp(1j * (t - 2 * np.pi / 3)))) < 0.3)
    half = ring & (np.abs(np.angle(np.exp(1j * (t - np.pi / 3)))) < 0.3)
    assert abs(s[sector].sum() - s[turned].sum()) < 0.2 * abs(s[sector].sum() - s[half].sum())


def test_structured_set_has_each_structure_at_its_rate(data_dir):
    sim = sim_mod.COSMOSLikeSimulator(data_dir)
    ud = galsim.UniformDeviate(3)
    ps = [sim.draw_params(ud) for _ in range(3000)]
    disky = np.array([p["bulge_fraction"] < sim_mod.STRUCTURE["max_bulge_fraction"] for p in ps])
    S = sim_mod.STRUCTURE
    rate = {
        "spiral_fraction": np.mean([p["arm_m"] > 0 for p, d in zip(ps, disky) if d]),
        "bar_fraction": np.mean([p["bar_light"] > 0 for p, d in zip(ps, disky) if d]),
        "clumpy_fraction": np.mean(
            [p["n_clumps"] > 0 for p, d in zip(ps, disky) if d and p["dimming_mag"] == 0]
        ),
        "companion_fraction": np.mean([p["companion_row"] >= 0 for p in ps]),
    }
    for k, v in rate.items():
        assert v == pytest.approx(S[k], abs=0.04), k
    # Bulge-dominated galaxies get no disk structure.
    assert not any(
        p["arm_m"] or p["bar_light"] or p["n_clumps"] for p, d in zip(ps, disky) if not d
    )
    # Faint galaxies are late types: the faintest third are nearly all disk galaxies.
    dim = np.array([p["dimming_mag"] for p in ps])
    assert disky[dim > 2 / 3 * sim.max_dimming].mean() > 0.9 > disky[dim == 0].mean()
    a1 = np.array([p["lopsided_a1"] for p, d in zip(ps, disky) if d])
    assert np.mean(a1) == pytest.approx(S["lopsided_mean_a1"], rel=0.15)


def test_companion_light_is_not_the_galaxys(data_dir):
    sim = sim_mod.COSMOSLikeSimulator(data_dir, scale_mode="fit")
    ud = galsim.UniformDeviate(1)
    for _ in range(400):
        p = sim.draw_params(ud)
        if p["companion_row"] >= 0 and p["companion_ratio"] > 0.1:
            break
    else:
        pytest.fail("no companion drawn")
    psf = sim._psf_objs[p["psf_index"]]
    scale = sim.stamp_scale(p)
    rng = galsim.BaseDeviate(5)
    clean, own = sim._draw_clean(p, psf, rng, 96, scale)
    alone = dict(p, companion_row=-1)
    clean2, own2 = sim._draw_clean(alone, psf, galsim.BaseDeviate(5), 96, scale)
    # The galaxy's own light is the same with or without its companion; the stamp holds more.
    np.testing.assert_allclose(own.array, own2.array, atol=1e-6 * own2.array.max())
    extra = clean.array.sum() - own.array.sum()
    assert extra == pytest.approx(p["companion_ratio"] * p["flux_true"], rel=0.1)
    # The companion sits at its separation from the centre.
    d = clean.array - own.array
    y, x = np.unravel_index(np.argmax(d), d.shape)
    sep = p["companion_separation"] * (sim.stamp_size / 2 - 1) * scale
    assert np.hypot(x - 48, y - 48) * scale == pytest.approx(sep, abs=2 * scale)
