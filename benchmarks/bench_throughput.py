"""Throughput benchmark: simulating training stamps (the network's rates: bench_network.py).

Run: ``python -m pytest benchmarks/bench_throughput.py --benchmark-json=bench.json``
(``GALSIM_VAE_BENCH_N`` sets the number of stamps, default 20000). Each benchmark checks its
result first, then reports its time; ``benchmarks/report.py`` turns the JSON into the README table.
"""

import numpy as np

from galsim_vae.pipeline.simulator import simulate


def test_simulate_throughput(benchmark, data_dir, bench_n):
    """Target: 20,000 COSMOS-like stamps in under 3 minutes on 2 cores (both used)."""
    images, _, rows, _, _ = benchmark.pedantic(
        simulate,
        args=(bench_n,),
        kwargs=dict(seed=2026, data_dir=data_dir, progress=False),
        rounds=1,
        iterations=1,
    )
    assert images.shape == (bench_n, 64, 64) and np.isfinite(images).all()
    assert len(rows) == bench_n
    benchmark.extra_info["n"] = bench_n
    benchmark.extra_info["per_second"] = bench_n / benchmark.stats.stats.mean
