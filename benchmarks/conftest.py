import os

import pytest

from galsim_vae.errors import GalSimValueError
from galsim_vae.pipeline.simulator import find_shared_data


@pytest.fixture(scope="session")
def data_dir():
    try:
        return find_shared_data()
    except GalSimValueError as e:
        pytest.skip(f"real COSMOS data not found ({e}); set GALSIM_VAE_DATA")


@pytest.fixture(scope="session")
def bench_n():
    """Number of stamps for the throughput benchmarks (GALSIM_VAE_BENCH_N, default 20000)."""
    return int(os.environ.get("GALSIM_VAE_BENCH_N", "20000"))
