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


def test_evaluate_writes_figures_and_numbers(real_dataset, tmp_path):
    res = evaluate("default", real_dataset, tmp_path, split="passes", n_show=4)
    for f in (
        "reconstructions.png",
        "latent_snr.png",
        "traversals.png",
        "average_galaxy.png",
        "latent_histograms.png",
        "rotation_denoising.png",
        "evaluate.json",
    ):
        assert (tmp_path / f).is_file(), f
    saved = json.loads((tmp_path / "evaluate.json").read_text())
    assert saved["n"] == res["n"] > 10
    assert 0.5 < res["median_chi2_per_pixel"] < 20
    assert len(res["latent_snr_sorted"]) == 64
    assert all(0 < v < 1 for v in res["denoising_noise_passed"])


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
