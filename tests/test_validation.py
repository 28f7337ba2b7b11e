import json

import galsim
import numpy as np
import pytest
from astropy.io import fits

from galsim_vae.cli import main
from galsim_vae.studies.validation import (
    STATISTICS,
    hsm_statistics,
    morphology_statistics,
    validate,
)


def _sersic_stamps(n, hlr=0.15):
    psf = galsim.Gaussian(fwhm=0.1)
    return np.array(
        [
            galsim.Convolve(galsim.Sersic(n=n, half_light_radius=hlr, flux=10), psf)
            .drawImage(nx=64, ny=64, scale=0.03, use_true_center=False)
            .array
        ]
    )


def test_concentration_rises_with_sersic_index():
    rng = np.random.default_rng(0)
    c, g = [], []
    for n in (0.5, 1.0, 4.0):
        img = _sersic_stamps(n) + rng.normal(0, 1e-3, (1, 64, 64))
        s = morphology_statistics(img, 1e-3)
        c.append(s["concentration"][0])
        g.append(s["gini"][0])
    assert c[0] < c[1] < c[2] and g[0] < g[1] < g[2]
    # An untruncated exponential disk has C = 2.7 (Conselice 2003); the PSF and the noise-limited
    # segmentation lower it a little. A de Vaucouleurs profile is far more concentrated, but its
    # wings fall below the noise inside a 1.92" stamp, so its C here is well below the ideal 5.2.
    assert 2.3 < c[1] < 2.9 and c[2] > 3.0


def test_hsm_statistics_known_shape():
    img = (
        galsim.Gaussian(sigma=0.1)
        .shear(e1=0.3)
        .drawImage(nx=64, ny=64, scale=0.03, method="no_pixel")
    )
    s = hsm_statistics([img.array])
    assert s["hsm_e"][0] == pytest.approx(0.3, abs=0.01)
    assert s["hsm_sigma"][0] == pytest.approx(0.1, rel=0.02)
    assert np.isnan(hsm_statistics([np.zeros((64, 64))])["hsm_sigma"][0])


POPULATIONS = {
    "vae_recon",
    "vae_density",
    "vae_density_unselected",
    "vae_prior",
    "vae_attributes",
    "sersic",
}


@pytest.fixture(scope="module")
def report(real_dataset, tmp_path_factory):
    """validate() on the first 5 real galaxies passing the cuts (4 per sampled population, seed
    3), with a loss summary."""
    out = tmp_path_factory.mktemp("validate")
    summary = out / "summary.json"
    summary.write_text(
        json.dumps(
            {
                "beta": {
                    "n_latents_snr_gt_1": 50,
                    "max_latent_snr": 8.0,
                    "median_chi2_per_pixel": 2.5,
                }
            }
        )
    )
    res = validate(real_dataset, out, max_real=5, n_samples=4, seed=3, loss_summary=summary)
    return res, out


def test_validate_report(report):
    from test_cli import figure_rgb

    res, out = report
    md = (out / "validation.md").read_text()
    assert "| beta | 50 | 8 | 2.5 |" in md
    figure_rgb(out / "validation_statistics.png")
    # The pictures: real, reconstruction, samples and Sersic rows, linked from the report.
    rgb = figure_rgb(out / "validation_galaxies.png")
    assert rgb.shape[0] > 300 and "validation_galaxies.png" in md
    saved = json.loads((out / "validation.json").read_text())
    assert saved["n_real"] == res["n_real"] == 5 and saved["n_samples"] == 4
    # The shipped model has a latent density and attribute models: every population is there.
    dist = res["wasserstein_to_real"]
    assert set(dist) == POPULATIONS and set(res["medians"]) == POPULATIONS | {"real"}
    for name in dist:
        assert set(dist[name]) == set(STATISTICS)
        assert all(d >= 0 for d in dist[name].values() if np.isfinite(d)), name
    # Reconstructions and Sersic fits of the same galaxies: every statistic measured.
    assert np.isfinite(list(dist["vae_recon"].values())).all()
    assert np.isfinite(list(dist["sersic"].values())).all()
    # The wins are the statistics on which a population is closer to the real one than Sersic.
    wins = res["statistics_closer_than_sersic"]
    assert set(wins) == POPULATIONS - {"sersic"}
    for name, w in wins.items():
        assert w == sum(dist[name][k] < dist["sersic"][k] for k in STATISTICS), name
        assert f"- {name}: {w}" in md
    assert saved["statistics_closer_than_sersic"] == wins
    assert saved["wasserstein_to_real"]["vae_recon"] == pytest.approx(dist["vae_recon"])
    floor = res["wasserstein_sampling_floor"]
    assert set(floor) == set(STATISTICS) and all(v > 0 for v in floor.values())
    # The density samples went through the real galaxies' cuts: the summary adds up.
    sel = res["density_selection"]
    assert sel["n_filled"] + sel["n_unfilled"] == 4 and sel["first_draw"]["n"] == 4
    assert 0 <= sel["fraction_passing_first_draw"] <= 1
    assert 0 < sel["real_fraction_passing_near_these_magnitudes"] <= 1
    # The flux-in-stamp cut only for the pairs whose real postage stamp was larger than the
    # stamp (a smaller one passes it by construction): the report gives their share, computed
    # here from the real dataset's own column.
    t = fits.getdata(res["real_dataset"], "CATALOG")
    larger = np.asarray(t["original_size"])[np.asarray(t["passes"], dtype=bool)][:5] > 64
    assert sel["flux_cut"] == "pairs"
    assert sel["pairs_with_flux_cut"] in [k / 4 for k in range(5)]
    assert (sel["pairs_with_flux_cut"] > 0) <= larger.any()
    first = sel["first_draw"]
    assert first["below_min_flux_fraction_cut"] <= first["below_min_flux_fraction"] <= 4
    assert "the flux in the stamp only where the paired real galaxy's own" in md
    assert "sampling floor |" in md


def test_validate_cli(report, real_dataset, tmp_path, capsys):
    """The command on a dataset of the same 5 galaxies gives the library's numbers."""
    from test_analysis import write_real_subset

    res, _ = report
    sub = write_real_subset(real_dataset, tmp_path / "sub.fits", 5)
    out = tmp_path / "v"
    assert main(["validate", str(sub), "--out", str(out), "--n-samples", "4", "--seed", "3"]) == 0
    assert (
        json.loads(capsys.readouterr().out.split("wrote")[0])
        == (res["statistics_closer_than_sersic"])
    )
    md = (out / "validation.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| statistic |"))
    assert set(header.strip("| ").split(" | ")[1:]) == POPULATIONS | {"sampling floor"}
    assert "5 held-out stamps of `sub.fits`" in md
    assert "comparison of its losses" not in md  # no --loss-summary
    saved = json.loads((out / "validation.json").read_text())
    assert saved["n_real"] == 5 and saved["n_samples"] == 4
    for name in POPULATIONS:
        assert saved["wasserstein_to_real"][name] == pytest.approx(
            res["wasserstein_to_real"][name], nan_ok=True
        ), name


def test_validate_cli_errors(tmp_path, real_dataset):
    assert main(["validate", str(tmp_path / "none.fits"), "--out", str(tmp_path)]) == 2
    # A missing loss summary is reported, not ignored.
    assert (
        main(
            [
                "validate",
                str(real_dataset),
                "--out",
                str(tmp_path),
                "--loss-summary",
                str(tmp_path / "none.json"),
            ]
        )
        == 2
    )


@pytest.fixture(scope="module")
def fixed_sims(tmp_path_factory):
    """Simulated stamps drawn and cut as the real dataset is (fixed 0.03"/px, default cuts)."""
    out = tmp_path_factory.mktemp("fixed") / "sims.fits"
    argv = ["simulate", "--n", "300", "--seed", "4", "--out", str(out), "--quiet", "--nproc", "2"]
    assert main([*argv, "--valid", "0", "--test", "0", "--no-truth"]) == 0
    return out


def test_compare_simulator(real_dataset, fixed_sims, sim_dataset, tmp_path, capsys):
    from galsim_vae.pipeline.dataset import read_dataset
    from galsim_vae.studies.validation import STATISTICS, compare_simulator

    # A set drawn or cut otherwise than the real one would bias the matching: refused.
    with pytest.raises(galsim.GalSimValueError, match="scale mode"):
        compare_simulator(real_dataset, sim_dataset, tmp_path / "y", per_real=1)
    sim_dataset = fixed_sims
    out = tmp_path / "sim"
    res = compare_simulator(real_dataset, sim_dataset, out, per_real=1, seed=3)
    n_real = int(read_dataset(real_dataset)[1]["passes"].sum())
    assert res["n_real"] == n_real and res["n_simulated"] == n_real
    assert res["pixel_scale"] == pytest.approx(0.03)
    assert set(res["wasserstein_sim_to_real"]) == set(STATISTICS)
    assert set(res["wasserstein_sersic_to_real"]) == set(STATISTICS)
    closer = [
        k
        for k in STATISTICS
        if res["wasserstein_sim_to_real"][k] < res["wasserstein_sersic_to_real"][k]
    ]
    assert res["closer_than_sersic"] == closer and res["statistics_closer_than_sersic"] == len(
        closer
    )
    assert "morphology=structured" in res["simulator"]
    assert all(v >= 0 for v in res["wasserstein_real_half_to_half"].values())
    floor = res["wasserstein_sampling_floor"]
    assert set(floor) == set(STATISTICS) and all(v > 0 for v in floor.values())
    assert res["sersic_below_sampling_floor"] == [
        k for k in STATISTICS if res["wasserstein_sersic_to_real"][k] < floor[k]
    ]
    assert json.loads((out / "simulator.json").read_text()) == json.loads(json.dumps(res))
    assert "sampling floor" in (out / "simulator.md").read_text()
    assert (out / "simulator_statistics.png").read_bytes()[:4] == b"\x89PNG"
    # Matching works: the simulated stamps' median SNR is the real one's, closer than the pool's.
    _, st, _, _ = read_dataset(sim_dataset)
    pool = np.median(np.asarray(st["snr"])[np.asarray(st["passes"], dtype=bool)])
    real, sim = res["median_snr"]["real"], res["median_snr"]["simulated"]
    assert abs(np.log(sim / real)) < abs(np.log(pool / real))
    # Not enough simulated stamps for the matching: a clear error, nothing half-written.
    with pytest.raises(galsim.GalSimValueError, match="simulated stamps"):
        compare_simulator(real_dataset, sim_dataset, tmp_path / "x", per_real=1000)
    assert not (tmp_path / "x").exists()
    # The command passes its arguments through (the comparison itself is measured above, and
    # costs minutes: not run twice), and refuses to write over the report without --overwrite.
    import galsim_vae.cli.study as study

    calls = []

    def spy(*args, **kw):
        calls.append((args, kw))
        return res

    argv = ["validate", str(real_dataset), "--simulated", str(sim_dataset), "--out", str(out)]
    argv += ["--per-real", "1", "--seed", "3"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(study, "compare_simulator", spy)
        assert main(argv) == 2 and not calls  # the folder holds the report above
        capsys.readouterr()
        assert main([*argv, "--overwrite"]) == 0 and "simulator.md" in capsys.readouterr().out
    assert calls == [((str(real_dataset), str(sim_dataset), str(out)), {"per_real": 1, "seed": 3})]


def test_sampling_floor_is_the_distance_of_draws_from_one_distribution():
    from scipy.stats import wasserstein_distance

    from galsim_vae.studies.validation import sampling_floor

    rng = np.random.default_rng(1)
    v = rng.normal(size=400)
    f = sampling_floor(v, 50, 200, seed=2)
    # Two fresh samples of the normal distribution the values come from are about this far
    # apart; a shifted sample is much farther; more draws come closer.
    fresh = np.mean(
        [wasserstein_distance(rng.normal(size=50), rng.normal(size=200)) for _ in range(200)]
    )
    assert f == pytest.approx(fresh, rel=0.25)
    assert wasserstein_distance(rng.normal(size=50) + 0.5, v) > 2 * f
    assert sampling_floor(v, 400, 400, seed=2) < f
    assert sampling_floor(np.r_[v, np.nan], 50, 200, seed=2) == pytest.approx(f, rel=0.1)
    assert np.isnan(sampling_floor([1.0, np.nan], 5, 5))


def test_samples_pass_the_real_cuts_only_when_they_would_as_real_stamps():
    # The selection of validate's density samples: the dataset's own metrics on the noisy
    # stamp, the flux fraction from the noiseless one.
    from galsim_vae.pipeline.metrics import QualityCuts
    from galsim_vae.studies.validation import _passing

    psf = galsim.Gaussian(fwhm=0.1)
    kw = dict(nx=64, ny=64, scale=0.03, use_true_center=False)
    gals = [
        galsim.Exponential(half_light_radius=0.12, flux=50.0),  # bright and compact: passes
        galsim.Exponential(half_light_radius=0.12, flux=0.5),  # lost in the noise
        galsim.Exponential(half_light_radius=1.5, flux=500.0),  # too large for the stamp
    ]
    clean = np.array([galsim.Convolve(g, psf).drawImage(**kw).array for g in gals])
    noisy = clean + np.random.default_rng(1).normal(0, 0.01, clean.shape)
    ok, measured = _passing(noisy, clean, [g.flux for g in gals], QualityCuts())
    assert ok.tolist() == [True, False, False]
    assert measured["snr"][1] < 8 and measured["flux_fraction"][2] < 0.95
    # Without the flux-in-stamp cut (validate's samples), a galaxy whose wings leave the stamp
    # passes when it passes the rest.
    wide = galsim.Convolve(galsim.Exponential(half_light_radius=0.5, flux=500.0), psf)
    clean = wide.drawImage(**kw).array[None]
    noisy = clean + np.random.default_rng(2).normal(0, 0.01, clean.shape)
    ok, measured = _passing(noisy, clean, [500.0], QualityCuts())
    assert not ok[0] and measured["flux_fraction"][0] < 0.95
    assert _passing(noisy, clean, [500.0], QualityCuts(min_flux_fraction=0.0))[0].tolist() == [True]


def test_selected_samples_stay_with_their_pairs(monkeypatch):
    # The bookkeeping of validate's selection, on stubs whose stamps carry the index of the real
    # galaxy they are paired with: every sample drawn at its pair's magnitude, given its pair's
    # noise and flux, redrawn until it passes, and returned in its pair's slot.
    from galsim_vae.pipeline.metrics import QualityCuts
    from galsim_vae.studies import validation as v

    pair = np.array([0, 1, 2, 1, 0, 2, 0])
    sig = np.array([10.0, 20.0, 30.0])
    flux = np.array([100.0, 10.0, 1.0])
    rounds = []

    class Model:
        def sample_population(self, n, rng, *, sampling, magnitude):
            assert sampling == "density"
            return {"latent": np.asarray(magnitude)[:, None], "pixel_scale": np.ones(n)}

    def decode(z, idx, ps):
        rounds.append(list(idx))
        np.testing.assert_allclose(z[:, 0], v.magnitudes(flux[idx]))  # drawn at its magnitude
        ok = ~((idx == 2) & (len(rounds) == 1))  # pair 2's first draws cannot be drawn
        guard_ok = ~((idx[ok] == 1) & (len(rounds) == 1))  # pair 1's: refused by the guard
        return np.array([np.full((64, 64), float(i)) for i in idx[ok]]), ok, guard_ok

    def noisy(imgs, idx):
        assert np.all(imgs[:, 0, 0] == idx)
        return imgs + 1000.0

    def passing(noisy_imgs, clean, fl, cuts):
        idx = (noisy_imgs[:, 0, 0] - 1000).astype(int)
        np.testing.assert_allclose(fl, flux[idx])
        n = len(idx)
        table = {
            # pair 0 fails the SNR cut in its first two rounds; pair 2 never has its flux
            "snr": np.where((idx == 0) & (len(rounds) <= 2), 1.0, 20.0),
            "width_pix": np.full(n, 3.0),
            "nonuniformity": np.full(n, 5.0),
            "flux_fraction": np.where(idx == 2, 0.5, 1.0),
        }
        return cuts.passes(table), table

    monkeypatch.setattr(v, "_passing", passing)
    first_pop = Model().sample_population(
        len(pair), None, sampling="density", magnitude=v.magnitudes(flux[pair])
    )
    every = np.ones(3, dtype=bool)  # the flux-in-stamp cut for every pair
    first, (imgs, sigmas), sel = v._selected_samples(
        Model(), pair, sig, flux, QualityCuts(), every, decode, noisy, None, first_pop
    )
    # The first draws, cuts and guard aside: every drawable one, with its pair's noise sigma.
    drawn = pair[pair != 2]
    assert np.all(first[0][:, 0, 0] - 1000 == drawn) and np.all(first[1] == sig[drawn])
    assert sel["first_draw"]["undrawable"] == 2 and sel["first_draw"]["redrawn_by_guard"] == 2
    assert sel["first_draw"]["below_min_snr"] == 3 and sel["first_draw"]["passing"] == 0
    # Pair 2 never passes: its slots stay empty; the others are filled in their slots' order.
    kept = pair[pair != 2]
    assert sel["n_filled"] == 5 and sel["n_unfilled"] == 2
    assert np.all(imgs[:, 0, 0] - 1000 == kept) and np.all(sigmas == sig[kept])
    assert rounds[1] == [0, 1, 2, 1, 0, 2, 0] and rounds[2] == [0, 2, 0, 2, 0]
    assert len(rounds) == v.SELECTION_ROUNDS
    assert sel["median_magnitude_filled"] < sel["median_magnitude_paired"]
    # Without the flux-in-stamp cut for pair 2 (a real galaxy whose postage stamp fitted the
    # stamp), its samples pass once they can be drawn.
    rounds.clear()
    _, (imgs, _), sel = v._selected_samples(
        Model(),
        pair,
        sig,
        flux,
        QualityCuts(),
        np.array([True, True, False]),
        decode,
        noisy,
        None,
        first_pop,
    )
    assert sel["n_unfilled"] == 0 and np.all(imgs[:, 0, 0] - 1000 == pair)
