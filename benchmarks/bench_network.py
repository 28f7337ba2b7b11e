"""The network's speed against what this CPU can do, and catalog encoding on Dask.

Run: ``python -m pytest benchmarks/bench_network.py --benchmark-json=bench_network.json``
(``GALSIM_VAE_BENCH_N`` sets the number of stamps, default 20000).

Each encode/decode path (``reference``: the training network, unfused float32; ``float32``:
BatchNorm folded, channels-last, sub-pixel last layer; ``bfloat16``: the same in bfloat16) is
reported against its own bound, measured in the same run (with
:func:`galsim_vae.model.tune_allocator`, as the commands run): the network's FLOPs per stamp
(``torch.utils.flop_counter``) times the best matrix-multiply rate this CPU reaches in that
precision, the larger of torch's ``mm`` (MKL) and oneDNN's 1x1 convolution, on 2 threads. A rate
at 100% of the bound would mean every layer multiplies matrices as fast as the best large GEMM.

The Dask benchmarks encode the same simulated dataset file with ``encode_catalog`` on a local
cluster of 1 and of 2 single-threaded worker processes, and without Dask (one process, 2 threads).
"""

import time

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from galsim_vae import VAEModel, get_model
from galsim_vae.model import tune_allocator

PRECISIONS = ("reference", "float32", "bfloat16")


def _best_rate(fn, flops, reps):
    fn()
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = max(best, flops * reps / (time.perf_counter() - t))
    return best


@pytest.fixture(scope="session", autouse=True)
def _allocator():
    """As the package's commands do (and as docs/performance.md tells users to): keep freed
    activations in the process instead of page-faulting them back every batch."""
    tune_allocator()  # a no-op outside glibc


def _gemm_rates(names):
    out = {}
    with torch.inference_mode():
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            if name not in names:
                continue
            rates = {}
            for n in (512, 1024, 2048):
                a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
                rates[f"mm {n}"] = _best_rate(lambda a=a, b=b: a @ b, 2 * n**3, 4)
            for c, hw in ((256, 32), (512, 16), (1024, 16)):
                x = torch.randn(16, c, hw, hw, dtype=dtype)
                x = x.contiguous(memory_format=torch.channels_last)
                w = torch.randn(c, c, 1, 1, dtype=dtype)
                w = w.contiguous(memory_format=torch.channels_last)
                fl = 2 * 16 * c * c * hw * hw
                rates[f"conv1x1 {c}x{hw}"] = _best_rate(
                    lambda x=x, w=w: torch.nn.functional.conv2d(x, w), fl, 4
                )
            best = max(rates, key=rates.get)
            out[name] = {"flops_per_s": rates[best], "kernel": best, "all": rates}
    return out


@pytest.fixture(scope="session")
def gemm_bound():
    """Best matrix-multiply rate (FLOP/s) of this CPU per precision, on torch's thread count."""
    out = _gemm_rates(("float32", "bfloat16"))
    out["reference"] = out["float32"]
    return out


@pytest.fixture(scope="session")
def float32_bound():
    """The float32 bound alone (a CPU without native bfloat16 takes minutes over the other)."""
    return _gemm_rates(("float32",))["float32"]


@pytest.fixture(scope="session")
def network_flops():
    """FLOPs per stamp of the shipped model's encoder and decoder."""
    net = VAEModel(precision="reference").net
    with torch.inference_mode():
        with FlopCounterMode(display=False) as fc:
            net.encoder(torch.rand(1, 1, 64, 64))
        enc = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            net.decoder(torch.randn(1, net.config.latent_dim))
        dec = fc.get_total_flops()
    return {"encode": enc, "decode": dec}


def _record(benchmark, n, kind, precision, bound, flops):
    rate = n / benchmark.stats.stats.median
    b = bound[precision]
    benchmark.extra_info.update(
        n=n,
        per_second=rate,
        precision=precision,
        flops_per_stamp=flops[kind],
        bound_flops_per_s=b["flops_per_s"],
        bound_kernel=b["kernel"],
        bound_per_second=b["flops_per_s"] / flops[kind],
        percent_of_bound=100 * rate * flops[kind] / b["flops_per_s"],
        threads=torch.get_num_threads(),
    )


@pytest.mark.parametrize("precision", PRECISIONS)
def test_encode_rate(benchmark, bench_n, precision, gemm_bound, network_flops):
    """Target: >= 70% of the bound for the chosen (fast) precision."""
    model = VAEModel(precision=precision)
    x = np.random.default_rng(0).random((bench_n, 64, 64)).astype(np.float32)
    x *= 64 / x.sum(axis=(1, 2), keepdims=True)  # flux-normalised, as the model sees stamps
    model.encode_normalized(x[:256])
    mu, sigma = benchmark.pedantic(model.encode_normalized, args=(x,), rounds=3, iterations=1)
    assert mu.shape == (bench_n, 64) and np.all(sigma > 0)
    _record(benchmark, bench_n, "encode", precision, gemm_bound, network_flops)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_decode_rate(benchmark, bench_n, precision, gemm_bound, network_flops):
    """Target: within 2x of the bound (>= 50%)."""
    model = VAEModel(precision=precision)
    z = np.random.default_rng(1).standard_normal((bench_n, 64))
    model.decode(z[:256])
    d = benchmark.pedantic(model.decode, args=(z,), rounds=3, iterations=1)
    assert d.shape == (bench_n, 64, 64) and np.isfinite(d).all()
    _record(benchmark, bench_n, "decode", precision, gemm_bound, network_flops)


@pytest.fixture(scope="session")
def refine_flops():
    """FLOPs of one refinement step of one stamp: the training decoder forward and its gradient
    with respect to the latent (the weights' gradients are not formed)."""
    dec = VAEModel(precision="reference").net.decoder  # an instance of its own
    for q in dec.parameters():
        q.requires_grad_(False)
    z = torch.randn(1, 64, requires_grad=True)
    with FlopCounterMode(display=False) as fc:
        dec(z).square().sum().backward()
    return fc.get_total_flops()


def test_refine_rate(benchmark, refine_flops, float32_bound):
    """Encode + refine (``encode(refine=100)``, float32) of 256 stamps: stamps per second, and
    the refinement's rate against the float32 bound (no target: it trades time for chi2)."""
    model = VAEModel(precision="float32")
    n, steps = 256, 100
    x = np.random.default_rng(2).random((n, 64, 64)) + 0.01
    model.encode(x[:4], refine=2)
    enc = benchmark.pedantic(model.encode, args=(x,), kwargs={"refine": steps}, rounds=1)
    assert enc["mu"].shape == (n, 64) and np.isfinite(enc["mu"]).all()
    rate = n / benchmark.stats.stats.median
    b = float32_bound
    benchmark.extra_info.update(
        n=n,
        steps=steps,
        per_second=rate,
        precision="float32",
        flops_per_stamp=refine_flops * steps,
        bound_flops_per_s=b["flops_per_s"],
        bound_kernel=b["kernel"],
        percent_of_bound=100 * rate * refine_flops * steps / b["flops_per_s"],
        threads=torch.get_num_threads(),
    )


@pytest.fixture(scope="session")
def encode_input(tmp_path_factory, data_dir, bench_n):
    """A simulated dataset file of bench_n / 4 stamps (every row encoded)."""
    from galsim_vae.pipeline.dataset import write_dataset
    from galsim_vae.pipeline.simulator import simulate

    n = max(bench_n // 4, 200)
    images, psfs, rows, _, _ = simulate(n, seed=99, data_dir=data_dir, progress=False)
    out = tmp_path_factory.mktemp("enc") / "sim.fits"
    write_dataset(out, images, rows, psfs=psfs, seed=1)
    return out, n


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_encode_catalog_dask(benchmark, encode_input, workers, tmp_path):
    """encode_catalog on a local Dask cluster of 1 and 2 single-threaded workers (0: no Dask,
    one process on torch's default threads). Target: 2 workers >= 1.7x one."""
    from galsim_vae.pipeline.encode import encode_catalog

    path, n = encode_input
    chunk = max(n // 16, 16)
    cluster = client = None
    if workers:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
        # Warm the workers: each loads the model once, outside the timing, in the precision
        # encode_catalog resolves "auto" to here.
        precision = get_model(precision="auto").precision
        client.run(lambda: __import__("galsim_vae").get_model(precision=precision))
    runs = iter(range(100))

    def run():
        out = tmp_path / f"latents{next(runs)}.fits"
        return encode_catalog(
            path, out, chunk_size=chunk, scheduler=client, precision="auto", progress=False
        )

    try:
        t = benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=0)
    finally:
        if client is not None:
            client.close()
            cluster.close()
    assert len(t) == n and not t["flag"].all()
    benchmark.extra_info.update(
        n=n,
        per_second=n / benchmark.stats.stats.median,
        workers=workers,
        chunks=-(-n // chunk),
        precision=t.meta["PRECISN"],
    )
