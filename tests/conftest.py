"""Shared fixtures: the real data folder (skip when absent) and small seeded datasets."""

import os
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent


def _data_dir():
    env = os.environ.get("GALSIM_VAE_DATA")
    for c in ([Path(env)] if env else []) + [
        HERE.parent.parent / "shared" / "data",
        HERE.parent / "shared" / "data",
    ]:
        if (c / "cosmos_btk100").is_dir():
            return c.resolve()
    return None


DATA_DIR = _data_dir()
needs_data = pytest.mark.skipif(
    DATA_DIR is None,
    reason="real COSMOS data not found: set GALSIM_VAE_DATA or place it at ../shared/data",
)


@pytest.fixture(scope="session")
def data_dir():
    if DATA_DIR is None:
        pytest.skip("real COSMOS data not found: set GALSIM_VAE_DATA or use ../shared/data")
    return DATA_DIR


@pytest.fixture(scope="session")
def btk_dir(data_dir):
    return data_dir / "cosmos_btk100"


@pytest.fixture(scope="session")
def real_dataset(tmp_path_factory, btk_dir):
    """The 100 real galaxies as a dataset file (built once per session)."""
    from galsim_vae.cli import main

    out = tmp_path_factory.mktemp("real") / "real.fits"
    assert main(["dataset", str(btk_dir), "--out", str(out), "--quiet", "--nproc", "1"]) == 0
    return out


@pytest.fixture(scope="session")
def sim_dataset(tmp_path_factory, data_dir):
    """A small simulated dataset with loose cuts, for training tiny models."""
    from galsim_vae.pipeline.dataset import write_dataset
    from galsim_vae.pipeline.metrics import QualityCuts
    from galsim_vae.pipeline.simulator import simulate

    images, psfs, rows, _, truths = simulate(
        160, seed=7, data_dir=data_dir, nproc=1, progress=False
    )
    out = tmp_path_factory.mktemp("sim") / "sim.fits"
    cuts = QualityCuts(
        min_snr=0, min_width=0, max_width=np.inf, min_nonuniformity=0, min_flux_fraction=0
    )
    write_dataset(out, images, rows, psfs=psfs, truths=truths, cuts=cuts, seed=1, valid=32, test=32)
    return out
