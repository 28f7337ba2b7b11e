"""Population numbers of sampled galaxies against COSMOS (galsim_vae.studies.population)."""

import json

import galsim
import numpy as np
import pytest
from astropy.io import fits

from galsim_vae import VAEGalaxy, get_model
from galsim_vae.stamp import border_pixels
from galsim_vae.studies import population as pop


def _stamp(pedestal_fraction, *, flux=100.0, hlr=0.15, size=64):
    """A Gaussian galaxy (nothing in the border) in a stamp, plus a constant sky of
    ``pedestal_fraction`` of its flux spread over the stamp; the sky / (stamp sum) to measure."""
    img = galsim.Gaussian(half_light_radius=hlr, flux=flux).drawImage(
        nx=size, ny=size, scale=0.03, method="no_pixel", use_true_center=False
    )
    sky = pedestal_fraction * flux
    img += sky / size**2
    return img, sky / img.array.sum()


def test_magnitudes_use_the_cosmos_zeropoint():
    np.testing.assert_allclose(pop.magnitudes([1.0, 10.0, 100.0]), [25.94, 23.44, 20.94])
    m = pop.magnitudes([0.0, -3.0, 1.0])
    assert np.isnan(m[0]) and np.isnan(m[1]) and m[2] == pytest.approx(25.94)


def test_sky_pedestals_report_a_known_pedestal():
    img, expected = _stamp(0.05)
    r = pop.sky_pedestals([img])
    # One galaxy: every percentile is its own sky / flux.
    assert r["sky_over_flux_percentiles"]["p50"] == pytest.approx(expected, rel=1e-6)
    assert r["sky_percentiles"]["p50"] == pytest.approx(5.0, rel=1e-6)
    # 0%, 5%, -15% and 40% pedestals, and a galaxy under a sky so negative its flux is < 0.
    imgs = [_stamp(f)[0] for f in (0.0, 0.05, -0.15, 0.4, -1.5)]
    r = pop.sky_pedestals(imgs)
    assert r["n"] == 5 and r["n_nonpositive_flux"] == 1
    assert r["frac_negative_flux"] == pytest.approx(0.2)
    # Beyond 2%: all but the clean one; 10%: -15%, 40% and the negative one; 25%: 40%, negative.
    assert r["frac_beyond_2pct"] == pytest.approx(0.8)
    assert r["frac_beyond_10pct"] == pytest.approx(0.6)
    assert r["frac_beyond_25pct"] == pytest.approx(0.4)
    json.dumps(r, allow_nan=False)


def test_sky_pedestals_of_shipped_galaxies_match_their_stamps():
    m = get_model()
    gals = VAEGalaxy.sample(20, galsim.BaseDeviate(3), m)
    r = pop.sky_pedestals(gals)
    direct = [np.median(border_pixels(g.stamp.array)) * g.stamp.array.size / g.flux for g in gals]
    assert r["sky_over_flux_percentiles"]["p50"] == pytest.approx(np.median(direct), rel=1e-9)
    assert r["frac_beyond_2pct"] == pytest.approx(np.mean(np.abs(direct) > 0.02))


def test_bad_inputs():
    img, _ = _stamp(0.0)
    with pytest.raises(galsim.GalSimValueError, match="No galaxies"):
        pop.sky_pedestals([])
    with pytest.raises(TypeError, match="sequence of galaxies"):
        pop.sky_pedestals(img)
    with pytest.raises(TypeError, match="stamp"):
        pop.sky_pedestals([np.zeros((8, 8))])
    with pytest.raises(TypeError, match="galsim.Image"):
        pop.stamp_hlr(np.zeros((8, 8)))
    with pytest.raises(TypeError, match="GSObjects"):
        pop.great3_resolution([img])
    g = [galsim.Gaussian(sigma=0.1)]
    with pytest.raises(TypeError, match="psf"):
        pop.great3_resolution(g, psf="Moffat")
    with pytest.raises(galsim.GalSimValueError, match="scale"):
        pop.great3_resolution(g, scale=-0.2)
    with pytest.raises(galsim.GalSimValueError, match="Real data folder"):
        pop.magnitude_distribution(g, "/nonexistent")
    with pytest.raises(TypeError, match="seed"):
        pop.population_report(n=2, seed="1")
    with pytest.raises(galsim.GalSimValueError, match="n must be"):
        pop.population_report(n=0)


def test_stamp_hlr_recovers_a_known_profile():
    for hlr in (0.2, 0.3, 0.5):
        img = galsim.Exponential(half_light_radius=hlr).drawImage(
            nx=256, ny=256, scale=0.03, method="no_pixel", use_true_center=False
        )
        # calculateHLR answers in pixel radii: within a tenth of a 0.03" pixel here.
        assert pop.stamp_hlr(img) == pytest.approx(hlr, abs=0.003)
    # A galaxy off the stamp's centre is measured about the centre, as VAEGalaxy does.
    off = galsim.Exponential(half_light_radius=0.2).drawImage(
        nx=256, ny=256, scale=0.03, method="no_pixel", use_true_center=False, offset=(10, 0)
    )
    assert pop.stamp_hlr(off) > 0.3
    # The same measurement as a VAEGalaxy's own half_light_radius.
    g = VAEGalaxy.sample(1, 7, get_model())[0]
    assert pop.stamp_hlr(g.stamp) == g.half_light_radius


def test_old_fit_catalog_is_upgraded_as_galsim_did(data_dir):
    # The example catalog holds both the raw fits and the derived columns GalSim reads: deriving
    # them from the raw fits must give the catalog's own.
    t = np.array(fits.getdata(data_dir / pop._EXAMPLE_DIR / f"{pop._EXAMPLE_FILE[:-5]}_fits.fits"))
    recs = pop._upgrade_old_fits(t)
    np.testing.assert_array_equal([r["use_bulgefit"] for r in recs], t["use_bulgefit"])
    np.testing.assert_array_equal([r["viable_sersic"] for r in recs], t["viable_sersic"])
    np.testing.assert_allclose([r["hlr"] for r in recs], t["hlr"], rtol=1e-9)
    # GalSim 1.x rounded the n=1 and n=4 flux factors (1.901, 3.607); these are exact.
    np.testing.assert_allclose([r["flux"] for r in recs], t["flux"], rtol=1e-3)


def test_cosmos_reference_is_physical(data_dir):
    ref = pop.cosmos_reference(data_dir)
    par = pop.cosmos_parametric(data_dir)
    n500 = np.sum(ref["source"] == "500")
    assert np.sum(ref["source"] == "example") == 96 and 480 <= n500 <= 500
    assert len(par["profiles"]) == len(ref["hlr"]) == n500 + 96
    # COSMOS F814W<23.5 galaxies seen by HST: median half-light radius a few tenths of an arcsec.
    assert 0.3 < np.median(ref["hlr"]) < 0.5 and 0.5 < np.percentile(ref["hlr"], 90) < 1.0
    assert np.all(ref["hlr"] > 0.03)
    # Inside a 64-pixel stamp the big ones are cut: smaller, never larger (to a pixel).
    assert np.all(ref["hlr_stamp"] <= ref["hlr"] + 0.031)
    assert np.percentile(ref["hlr_stamp"], 90) < np.percentile(ref["hlr"], 90) - 0.1
    # The parametric fluxes (counts/s) give the catalog's magnitudes through the zeropoint.
    dm = pop.magnitudes([p.flux for p in par["profiles"]]) - par["mag"]
    assert abs(np.median(dm)) < 0.15 and np.percentile(np.abs(dm), 90) < 0.5


def test_size_distribution_of_known_galaxies(data_dir):
    ref = pop.cosmos_reference(data_dir)
    hlr = 0.25
    gals = [
        galsim.Exponential(half_light_radius=hlr).drawImage(
            nx=64, ny=64, scale=0.03, method="no_pixel", use_true_center=False
        )
    ] * 3
    r = pop.size_distribution(gals, data_dir)
    assert r["sampled_median"] == pytest.approx(hlr, abs=0.01)
    assert r["cosmos_median"] == pytest.approx(np.median(ref["hlr"]))
    assert r["median_ratio"] == pytest.approx(r["sampled_median"] / r["cosmos_median"])
    assert r["p90_ratio"] == pytest.approx(r["sampled_p90"] / r["cosmos_p90"])
    assert r["n_sampled"] == 3 and r["n_cosmos"] == len(ref["hlr"]) and r["stamp_pixels"] == 64
    assert r["cosmos_median_by_source"]["example"] > r["cosmos_median_by_source"]["500"]


def test_ks_distance_of_the_catalog(data_dir):
    cat = pop.magnitude_catalog(data_dir)
    m = np.random.default_rng(1).choice(cat, 2000, replace=False)

    def gals(mags):
        return [galsim.Gaussian(sigma=0.1, flux=10 ** (-0.4 * (x - pop.ZEROPOINT))) for x in mags]

    same = pop.magnitude_distribution(gals(m), data_dir)
    assert same["ks_distance"] < 0.04 and same["ks_distance_all"] < 0.04
    assert same["sampled_median"] == pytest.approx(np.median(cat), abs=0.05)
    assert same["frac_sampled_fainter_than_catalog"] == 0
    # A distribution of another shape is far from the catalog over the shared range ...
    med = np.median(m)
    narrow = pop.magnitude_distribution(gals(med + 0.3 * (m - med)), data_dir)
    assert narrow["ks_distance"] > 0.25
    # ... a shift of the whole catalog hardly shows inside the shared range (the counts rise
    # almost exponentially), but does over all magnitudes and in the fraction left outside.
    shifted = pop.magnitude_distribution(gals(m + 1.0), data_dir)
    assert shifted["ks_distance_all"] > 0.3 and shifted["ks_distance"] < 0.1
    assert shifted["frac_sampled_fainter_than_catalog"] > 0.3
    assert shifted["shared_range"][1] == pytest.approx(cat.max())


def test_great3_resolution_of_point_like_and_huge_galaxies(data_dir):
    points = [galsim.Gaussian(sigma=s) for s in (0.005, 0.01, 0.03)]
    huge = [galsim.Exponential(half_light_radius=h) for h in (1.5, 2.0)]
    rp = pop.great3_resolution(points, data_dir, 1)
    rh = pop.great3_resolution(huge, data_dir, 1)
    assert rp["n_sampled"] == 3 and rp["sampled_frac_resolved"] == 0
    assert rp["sampled_median_resolution"] < 0.05
    assert rh["sampled_frac_resolved"] == 1 and rh["sampled_median_resolution"] > 0.9
    # The COSMOS galaxies: most but not all resolved under 0.65" seeing.
    assert 0.6 < rp["cosmos_frac_resolved"] < 0.95
    assert rp["difference_points"] == pytest.approx(-100 * rp["cosmos_frac_resolved"])
    # Galaxies of one flux: no magnitude matching, and the result says so.
    assert rp["magnitude_range"] is None and "one flux" in rp["magnitude_note"]
    # Galaxies with fluxes of their own: both samples cut to the same magnitude range.
    bright = [galsim.Gaussian(sigma=0.3, flux=10 ** (-0.4 * (m - 25.94))) for m in (21.0, 22.0)]
    rb = pop.great3_resolution(bright, data_dir, 1)
    lo, hi = rb["magnitude_range"]
    assert 21.0 <= lo < 21.1 and 21.9 < hi <= 22.0
    assert rb["n_cosmos"] < rp["n_cosmos"]


def test_population_report_on_the_shipped_model(data_dir, tmp_path):
    out = tmp_path / "pop"
    r = pop.population_report(n=40, seed=3, data_dir=data_dir, out_dir=out)
    assert (out / "population.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((out / "population.json").read_text())
    assert on_disk == json.loads(json.dumps(r))
    json.dumps(r, allow_nan=False)
    # The numbers agree with each other and with the functions run on the same galaxies.
    s, z, mg, g3, t = r["sky"], r["size"], r["magnitude"], r["great3"], r["targets"]
    assert s["n"] == 40 and r["meta"]["representation"] == get_model().representation
    assert s["frac_beyond_2pct"] >= s["frac_beyond_10pct"] >= s["frac_beyond_25pct"]
    assert z["median_ratio"] == pytest.approx(z["sampled_median"] / z["cosmos_median"])
    assert z["n_sampled"] + z["n_excluded"] == 40
    assert mg["n_sampled"] + mg["n_nonpositive_flux"] == 40
    assert t["sky_pedestal"]["frac_beyond_2pct"] == s["frac_beyond_2pct"]
    # Negative light: a stamp's negative pixels over its flux, on the same (unguarded) galaxies.
    nl = r["negative_light"]
    same = VAEGalaxy.sample(
        40, galsim.BaseDeviate(3), get_model(), max_border_sky=None, max_negative_light=None
    )
    neg = np.array([-np.clip(g.stamp.array, None, 0).sum() / g.stamp.array.sum() for g in same])
    # The model itself is measured; the sampling guard's share is reported beside it, with the
    # galaxies VAEGalaxy.sample returns measured alike: none beyond either limit.
    gd = r["guard"]
    assert gd["max_border_sky"] == 0.25 and gd["max_negative_light"] == 0.1
    assert gd["frac_refused_border_sky"] == s["frac_beyond_25pct"]
    assert gd["frac_refused_negative_light"] == pytest.approx(np.mean(neg > 0.1))
    assert gd["frac_refused"] >= max(gd["frac_refused_border_sky"], nl["frac_beyond_10pct"])
    got = gd["returned"]
    assert got["sky"]["n"] == 40 and got["sky"]["frac_beyond_25pct"] == 0
    assert got["negative_light"]["frac_beyond_10pct"] == 0
    assert got["size"]["n_sampled"] == 40
    assert nl["frac_beyond_10pct"] == pytest.approx(np.mean(neg > 0.1))
    assert nl["frac_beyond_5pct"] >= nl["frac_beyond_10pct"] >= nl["frac_beyond_25pct"]
    assert nl["percentiles"]["p50"] == pytest.approx(np.median(neg))
    # Sizes are judged like for like: the sampled galaxies within the COSMOS magnitude limit.
    assert z["mag_limit"] == pytest.approx(23.5, abs=0.01)
    assert z["n_sampled_within_mag_limit"] <= z["n_sampled"]
    mr, pr = z["median_ratio_within_mag_limit"], z["p90_ratio_within_mag_limit"]
    assert mr == pytest.approx(z["sampled_median_within_mag_limit"] / z["cosmos_median"])
    assert t["size"]["pass"] == (abs(mr - 1) <= 0.1 and abs(pr - 1) <= 0.15)
    assert t["size"]["median_ratio_all"] == z["median_ratio"]
    assert t["magnitude"]["pass"] == (mg["ks_distance"] < 0.1)
    # Where the magnitudes come from is said; with the COSMOS histogram, the density's own
    # magnitudes are measured beside them.
    cosmos = get_model().density.magnitude_prior is not None
    assert r["meta"]["magnitudes"] == ("cosmos" if cosmos else "training")
    assert ("magnitude_training" in r) == cosmos
    if cosmos:
        assert r["magnitude_training"]["n_sampled"] == 40
    assert t["great3_resolution"]["difference_points"] == pytest.approx(
        100 * (g3["sampled_frac_resolved"] - g3["cosmos_frac_resolved"])
    )
    assert pop.sky_pedestals(same) == s  # the report measures the model unguarded
    alone = pop.size_distribution(same, data_dir)  # without magnitudes: no matched numbers
    assert alone == {k: v for k, v in z.items() if k in alone}
    assert "mag_limit" not in alone
    assert pop.magnitude_distribution(same, data_dir) == mg
    # The shipped model is the "before": its decoded stamps keep a sky pedestal.
    assert not t["sky_pedestal"]["pass"]
    # Same seed, same numbers; an existing output is not replaced without overwrite.
    with pytest.raises(galsim.GalSimValueError, match="output exists"):
        pop.population_report(n=40, seed=3, data_dir=data_dir, out_dir=out)
    again = pop.population_report(n=40, seed=3, data_dir=data_dir, out_dir=out, overwrite=True)
    assert again == r


def test_population_report_of_a_model_the_guard_refuses(data_dir, monkeypatch):
    # A decoder whose every stamp carries a floor: the report still measures the model, and its
    # guard section says that sample returns nothing rather than failing.
    import galsim_vae

    real = galsim_vae.VAEModel.decode
    monkeypatch.setattr(
        galsim_vae.VAEModel, "decode", lambda self, z: (d := real(self, z)) + 2 * d.mean()
    )
    r = pop.population_report(n=20, seed=3, data_dir=data_dir)
    assert r["sky"]["n"] == 20 and r["guard"]["frac_refused_border_sky"] == 1.0
    assert r["guard"]["returned"] is None and "max_border_sky" in r["guard"]["error"]


def test_population_command(data_dir, tmp_path, capsys):
    from galsim_vae.cli import main

    argv = ["population", "--n", "12", "--seed", "2", "--out", str(tmp_path)]
    argv += ["--data-dir", str(data_dir)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    written = json.loads((tmp_path / "population.json").read_text())
    assert written["meta"]["n"] == 12 and set(printed) == set(pop.TARGETS)
    assert printed == written["targets"]
    assert main(argv) == 2  # refuses to replace its output
    assert "overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
