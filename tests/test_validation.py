import json

import galsim
import numpy as np
import pytest

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


def test_validate_report(real_dataset, tmp_path):
    summary = tmp_path / "summary.json"
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
    res = validate(real_dataset, tmp_path, max_real=8, n_samples=8, loss_summary=summary)
    assert "| beta | 50 |" in (tmp_path / "validation.md").read_text()
    for f in ("validation.md", "validation.json", "validation_statistics.png"):
        assert (tmp_path / f).is_file()
    assert set(res["wasserstein_to_real"]["sersic"]) == set(STATISTICS)
    assert json.loads((tmp_path / "validation.json").read_text())["n_real"] == 8
    assert all(0 <= w <= len(STATISTICS) for w in res["statistics_closer_than_sersic"].values())


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
