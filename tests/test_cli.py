import subprocess
import sys

import numpy as np
import pytest

from galsim_vae.cli import main
from galsim_vae.pipeline.dataset import read_dataset


def test_dataset_command_writes_every_column_and_figure(real_dataset):
    images, table, psfs, hdr = read_dataset(real_dataset)
    assert images.shape == (100, 64, 64) and psfs.shape == (100, 64, 64)
    for col in (
        "ident",
        "source",
        "pixel_scale",
        "flux",
        "flux_fraction",
        "noise_sigma",
        "snr",
        "width_pix",
        "width_arcsec",
        "nonuniformity",
        "norm_min",
        "norm_max",
        "passes",
        "split",
        "psf_index",
    ):
        assert col in table.colnames, col
    assert 10 < table["passes"].sum() < 100
    assert real_dataset.with_suffix(".png").stat().st_size > 10_000
    np.testing.assert_allclose(table["norm_max"], images.max(axis=(1, 2)), rtol=1e-6)


def test_simulate_command(tmp_path, data_dir, real_dataset):
    out = tmp_path / "sim.fits"
    assert (
        main(
            [
                "simulate",
                "--n",
                "24",
                "--out",
                str(out),
                "--seed",
                "2",
                "--quiet",
                "--data-dir",
                str(data_dir),
                "--nproc",
                "1",
                "--min-snr",
                "0",
                "--min-flux-fraction",
                "0",
                "--compare",
                str(real_dataset),
            ]
        )
        == 0
    )
    assert (tmp_path / "sim_vs_real.png").exists() and (tmp_path / "sim.png").exists()
    assert read_dataset(out)[0].shape == (24, 64, 64)


def test_cli_errors_are_clean(tmp_path, capsys):
    assert main(["dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "x.fits")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "x.fits").exists()
    with pytest.raises(SystemExit):
        main(["dataset", "--help"])


def test_python_m_entry_point():
    r = subprocess.run(
        [sys.executable, "-m", "galsim_vae", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert r.stdout.startswith("galsim_vae ")
