import json

import numpy as np
import pytest

from galsim_vae.cli import main
from galsim_vae.errors import GalSimValueError
from galsim_vae.studies.analysis import chi2_per_pixel, evaluate, latent_snr, rotate_stamps


def test_latent_snr_eq6():
    mu = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    sigma = np.array([[1.0, 0.5], [1.0, 0.5], [2.0, 0.5]])
    np.testing.assert_allclose(latent_snr(mu, sigma), [np.std([0, 2, 4]) / (4 / 3), 0.0])
    with pytest.raises(GalSimValueError):
        latent_snr(mu[:1], sigma[:1])


def test_chi2_per_pixel():
    a = np.zeros((2, 4, 4))
    b = np.ones((2, 4, 4))
    np.testing.assert_allclose(chi2_per_pixel(b, a, [1.0, 2.0]), [1.0, 0.25])


def test_rotate_stamps_about_centre():
    x = np.zeros((1, 64, 64))
    x[0, 32, 32] = 1
    x[0, 32, 40] = 1
    r = rotate_stamps(x, 90.0)
    assert r[0, 32, 32] == pytest.approx(1, abs=1e-3)
    assert r[0, 40, 32] == pytest.approx(1, abs=1e-3)


def write_real_subset(real_dataset, path, n):
    """A dataset of the first ``n`` real galaxies passing the cuts, with their PSFs."""
    from galsim_vae.pipeline.dataset import read_dataset, write_dataset
    from galsim_vae.pipeline.metrics import QualityCuts

    images, table, psfs, _ = read_dataset(real_dataset)
    idx = np.flatnonzero(table["passes"])[:n]
    t = table[idx]
    t.remove_columns(["passes", "split"])
    sub_psfs = psfs[np.asarray(t["psf_index"])]
    t["psf_index"] = np.arange(n)
    out = write_dataset(path, images[idx], t, psfs=sub_psfs, cuts=QualityCuts(), valid=0, test=0)
    assert out["passes"].all() and len(out) == n
    return path


SERSIC_KEYS = {
    "sersic_median_chi2_per_pixel",
    "sersic_median_chi2_per_pixel_bright_half",
    "vae_better_than_sersic_fraction_bright_half",
    "sersic_chi2_per_pixel",
}


def test_evaluate_writes_figures_and_numbers(real_dataset, tmp_path):
    from test_cli import figure_rgb, tile_grid

    from galsim_vae.pipeline.dataset import read_dataset

    res = evaluate("default", real_dataset, tmp_path, split="passes", n_show=4)
    for f in (
        "latent_snr.png",
        "average_galaxy.png",
        "latent_histograms.png",
        "rotation_denoising.png",
    ):
        figure_rgb(tmp_path / f)
    # Input, reconstruction and residual rows for n_show galaxies; 6 latents x 7 steps.
    assert tile_grid(tmp_path / "reconstructions.png") == (3, 4)
    assert tile_grid(tmp_path / "traversals.png") == (6, 7)
    saved = json.loads((tmp_path / "evaluate.json").read_text())
    _, table, _, _ = read_dataset(real_dataset)
    passes = np.asarray(table["passes"])
    assert saved["n"] == res["n"] == passes.sum() > 10
    assert saved["ident"] == [int(i) for i in table["ident"][passes]]
    assert len(saved["chi2_per_pixel"]) == res["n"]
    assert saved["median_chi2_per_pixel"] == pytest.approx(np.median(saved["chi2_per_pixel"]))
    assert 0.5 < res["median_chi2_per_pixel"] < 20
    assert len(res["latent_snr_sorted"]) == 64
    assert np.all(np.diff(res["latent_snr_sorted"]) <= 0)
    assert all(0 < v < 1 for v in res["denoising_noise_passed"])
    assert not SERSIC_KEYS & set(saved) and not (tmp_path / "chi2_vae_vs_sersic.png").exists()


@pytest.fixture(scope="module")
def real_subset(real_dataset, tmp_path_factory):
    return write_real_subset(real_dataset, tmp_path_factory.mktemp("sub") / "sub.fits", 4)


def test_evaluate_cli_with_sersic(real_subset, tmp_path, capsys):
    from test_cli import figure_rgb

    from galsim_vae.pipeline.dataset import read_dataset

    out = tmp_path / "ev"
    argv = ["evaluate", "default", str(real_subset), "--out", str(out), "--split", "passes"]
    assert main([*argv, "--sersic", "--n-show", "3", "--refine", "20"]) == 0
    res = json.loads((out / "evaluate.json").read_text())
    printed = json.loads(capsys.readouterr().out)  # the scalars, printed as JSON
    assert printed == {k: v for k, v in res.items() if not isinstance(v, (list, dict))}
    assert SERSIC_KEYS <= set(res) and res["n"] == 4 and res["split"] == "passes"
    for k in ("median_chi2_per_pixel", "sersic_median_chi2_per_pixel"):
        assert np.isfinite(res[k]) and res[k] > 0
    vae = np.array(res["chi2_per_pixel"])
    ser = np.array(res["sersic_chi2_per_pixel"])
    assert len(vae) == len(ser) == 4 and np.all(np.isfinite(ser)) and np.all(ser > 0)
    assert res["sersic_median_chi2_per_pixel"] == pytest.approx(np.median(ser))
    # The bright half is the stamps at or above the median SNR.
    snr = np.asarray(read_dataset(real_subset)[1]["snr"], dtype=float)
    bright = snr >= np.median(snr)
    frac = res["vae_better_than_sersic_fraction_bright_half"]
    assert 0 <= frac <= 1
    assert frac == pytest.approx(np.mean(vae[bright] <= ser[bright]))
    assert res["sersic_median_chi2_per_pixel_bright_half"] == pytest.approx(np.median(ser[bright]))
    figure_rgb(out / "chi2_vae_vs_sersic.png")
    # --refine: the posterior modes' reconstructions beside the encoder's, closer to the stamps.
    ref = np.array(res["refined_chi2_per_pixel"])
    assert res["refine_steps"] == 20 and len(ref) == 4 and res["refined_latent_shift_median"] > 0
    assert np.median(ref) < np.median(vae) and res["refined_median_chi2_per_pixel"] == (
        pytest.approx(np.median(ref))
    )
    assert res["refined_better_than_sersic_fraction_bright_half"] == pytest.approx(
        np.mean(ref[bright] <= ser[bright])
    )
    # Without --sersic and --refine: neither's numbers, the same VAE numbers.
    assert main([*argv, "--out", str(tmp_path / "plain")]) == 0
    plain = json.loads((tmp_path / "plain" / "evaluate.json").read_text())
    assert not SERSIC_KEYS & set(plain) and "refined_chi2_per_pixel" not in plain
    np.testing.assert_allclose(plain["chi2_per_pixel"], vae)


def test_evaluate_cli_bad_split(real_dataset, tmp_path, capsys):
    assert (
        main(
            [
                "evaluate",
                "default",
                str(real_dataset),
                "--out",
                str(tmp_path),
                "--split",
                "nonsense",
            ]
        )
        == 2
    )


def test_evaluate_reports_the_floor_and_the_distance_to_the_truth(sim_dataset, tmp_path):
    from test_cli import tile_grid

    # A simulated dataset keeps each stamp's noiseless truth: the floor (the truth against its
    # noisy stamp) and the reconstructions' distance to the truth itself are reported, for the
    # encoder's latents and for the refined ones.
    res = evaluate("default", sim_dataset, tmp_path, split="test", n_show=4, refine=5)
    floor = res["floor_median_chi2_per_pixel_bright_half"]
    chi2 = res["median_chi2_per_pixel_bright_half"]
    assert 0.5 < floor < chi2 and res["vae_over_floor_bright_half"] == pytest.approx(
        chi2 / floor - 1
    )
    for pre in ("", "refined_"):
        d = res[f"{pre}median_chi2_to_truth_bright_half"]
        # With noise independent of the truth, chi2 against the stamp ~ floor + distance to truth.
        c = res[f"{pre}median_chi2_per_pixel_bright_half"]
        assert 0 < d < c and abs(c - (floor + d)) < 0.3 * c
    assert res["refined_over_floor_bright_half"] < res["vae_over_floor_bright_half"]
    # Input, then each reconstruction and its residual: 5 rows of n_show galaxies.
    assert tile_grid(tmp_path / "reconstructions_refined.png") == (5, 4)
