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


@pytest.fixture(scope="session")
def minmax_model(sim_dataset, tmp_path_factory):
    """A tiny min-max model (the paper's representation, beta loss) with a latent density and an
    attribute file (forward, inverse and sky models fitted on the simulation's own sizes), for
    the tests of the min-max code paths now that the shipped model is a flux model."""
    from galsim_vae import AttributeModel, get_model
    from galsim_vae.attributes import attributes_path
    from galsim_vae.cli import main
    from galsim_vae.pipeline.dataset import read_dataset
    from galsim_vae.stamp import normalize

    d = tmp_path_factory.mktemp("minmax")
    argv = ["train", str(sim_dataset), "--out", str(d), "--preset", "tiny", "--loss", "beta"]
    argv += ["--epochs", "6", "--batch-size", "16", "--lr", "3e-3", "--quiet", "--seed", "1"]
    assert main(argv) == 0
    f = d / "best.safetensors"
    assert main(["fit-density", str(sim_dataset), "--model", str(f), "--components", "2"]) == 0
    m = get_model(str(f))
    images, table, _, _ = read_dataset(sim_dataset)
    xn, lo, hi = normalize(images)
    z, _ = m.encode_normalized(xn)
    hlr = np.clip(np.asarray(table["hlr"], dtype=float), 0.02, None)  # true, arcsec
    t = np.linspace(-5, 10, len(z))
    q = np.clip(np.asarray(table["disk_q"], dtype=float), 0.1, 1.0)
    am = AttributeModel.fit(
        z, t, hlr, q, k=16, sky=-lo / (hi - lo), meta={"model_sha256": m.metadata["sha256"]}
    )
    am.save(attributes_path(f))
    return get_model(str(f))
