import galsim
import numpy as np
import pytest
from astropy.table import Table

from galsim_vae.cli import main
from galsim_vae.pipeline.encode import encode_catalog, encode_stamps


def test_encode_dataset_matches_model(sim_dataset, tmp_path):
    from galsim_vae import get_model
    from galsim_vae.pipeline.dataset import read_dataset

    out = tmp_path / "z.fits"
    t = encode_catalog(sim_dataset, out, chunk_size=50, progress=False)
    images, table, _, _ = read_dataset(sim_dataset)
    assert len(t) == len(images) and list(t["row"]) == list(range(len(images)))
    assert not t["flag"].any()
    # "auto" is resolved once, recorded, and used for every chunk.
    assert t.meta["PRECISN"] == get_model(precision="auto").precision
    enc = get_model(precision=t.meta["PRECISN"]).encode(images[:7])
    np.testing.assert_allclose(t["mu"][:7], enc["mu"], rtol=1e-4, atol=1e-5)
    t32 = encode_catalog(sim_dataset, tmp_path / "z32.fits", precision="float32", progress=False)
    assert t32.meta["PRECISN"] == "float32"
    np.testing.assert_allclose(t32["mu"], get_model().encode(images)["mu"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(t["snr"], table["snr"])
    assert np.all(t["chi2_per_pixel"] > 0)
    assert Table.read(out)["mu"].shape == (len(images), 64)
    assert not (tmp_path / "z.fits.parts").exists()


def test_encode_command(sim_dataset, tmp_path):
    from galsim_vae import get_model
    from galsim_vae.pipeline.dataset import read_dataset

    images, table, _, _ = read_dataset(sim_dataset)
    n = len(images)
    out = tmp_path / "x.fits"
    argv = ["encode", str(sim_dataset), "--chunk-size", "64", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    t = Table.read(out)
    assert len(t) == n and list(t["row"]) == list(range(n))
    assert t["mu"].shape == (n, 64) and t["sigma"].shape == (n, 64)
    np.testing.assert_array_equal(t["ident"], table["ident"])
    ok = ~np.asarray(t["flag"])
    assert ok.all() and np.all(np.isfinite(t["chi2_per_pixel"][ok]))
    assert np.all(t["sigma"][ok] > 0)
    model = get_model(precision=t.meta["PRECISN"])
    np.testing.assert_allclose(t["mu"], model.encode(images)["mu"], rtol=1e-4, atol=1e-5)
    assert t.meta["MODEL"] == "default_vae.safetensors" and t.meta["SOURCE"] == sim_dataset.name
    assert t.meta["REFINE"] == 0
    # --refine: each latent moved to its posterior mode from the encoder's mean, with the
    # stamp's noise sigma; the reconstructions come closer to the stamps.
    assert main([*argv, "--out", str(tmp_path / "r.fits"), "--refine", "4"]) == 0
    tr = Table.read(tmp_path / "r.fits")
    assert tr.meta["REFINE"] == 4 and not tr["flag"].any()
    want = get_model().refine_latents(t["mu"], images, table["noise_sigma"], steps=4)
    np.testing.assert_allclose(tr["mu"], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(tr["sigma"], t["sigma"])
    assert np.median(tr["chi2_per_pixel"] / t["chi2_per_pixel"]) < 1
    # Another weights file (8 latents): its latents, and its name in the table.
    from test_cli import write_tiny_model

    tiny = write_tiny_model(tmp_path / "tiny.safetensors")
    assert main([*argv, "--out", str(tmp_path / "t.fits"), "--model", str(tiny)]) == 0
    tt = Table.read(tmp_path / "t.fits")
    assert tt["mu"].shape == (n, 8) and tt.meta["MODEL"] == "tiny.safetensors"
    tiny_model = get_model(tiny, precision=tt.meta["PRECISN"])
    np.testing.assert_allclose(tt["mu"], tiny_model.encode(images)["mu"], rtol=1e-4, atol=1e-5)
    assert np.all(np.isfinite(tt["chi2_per_pixel"]))


def test_resume_after_interruption(sim_dataset, tmp_path, monkeypatch):
    import galsim_vae.pipeline.encode as enc

    full = encode_catalog(sim_dataset, tmp_path / "a.fits", chunk_size=40, progress=False)
    calls = {"n": 0}
    real = enc._dataset_chunk

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(enc, "_dataset_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        encode_catalog(sim_dataset, tmp_path / "b.fits", chunk_size=40, progress=False)
    assert not (tmp_path / "b.fits").exists()
    assert len(list((tmp_path / "b.fits.parts").glob("*.npz"))) == 2
    monkeypatch.setattr(enc, "_dataset_chunk", real)
    # The leftover chunks are of chunk size 40 and this model: another chunking or model is
    # refused (it would drop or duplicate rows, or mix two models' latents), naming the change.
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="chunk_size: 40 -> 25"):
        encode_catalog(sim_dataset, tmp_path / "b.fits", chunk_size=25, progress=False)
    from test_cli import write_tiny_model

    other = write_tiny_model(tmp_path / "tiny.safetensors")
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="model_sha256"):
        encode_catalog(sim_dataset, tmp_path / "b.fits", chunk_size=40, model=other)
    # ... and so are latents of another precision.
    other_precision = "float32" if full.meta["PRECISN"] == "bfloat16" else "bfloat16"
    with pytest.raises(galsim.GalSimIncompatibleValuesError, match="precision"):
        encode_catalog(sim_dataset, tmp_path / "b.fits", chunk_size=40, precision=other_precision)
    assert len(list((tmp_path / "b.fits.parts").glob("*.npz"))) == 2  # nothing lost
    resumed = encode_catalog(sim_dataset, tmp_path / "b.fits", chunk_size=40, progress=False)
    assert list(resumed["row"]) == list(full["row"])
    np.testing.assert_allclose(resumed["mu"], full["mu"])


def test_two_runs_to_one_output_are_refused(sim_dataset, tmp_path):
    import socket
    import subprocess
    import sys

    parts = tmp_path / "c.fits.parts"
    parts.mkdir()
    # A live process holds the lock (another encode writing c.fits): refused, nothing touched.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (parts / "lock").write_text(f"{socket.gethostname()} {proc.pid}")
        with pytest.raises(galsim.GalSimValueError, match="another encode is writing"):
            encode_catalog(sim_dataset, tmp_path / "c.fits", chunk_size=40, progress=False)
        assert (parts / "lock").read_text().endswith(str(proc.pid))
        assert not (tmp_path / "c.fits").exists()
    finally:
        proc.kill()
        proc.wait()
    # Its process gone (a killed run): the lock is stale and taken over; the run completes and
    # leaves neither the lock nor the folder.
    t = encode_catalog(sim_dataset, tmp_path / "c.fits", chunk_size=40, progress=False)
    assert len(t) > 0 and not parts.exists()


def test_bad_rows_are_flagged(monkeypatch):
    from galsim_vae.pipeline import encode as encode_module

    rng = np.random.default_rng(0)
    gal = galsim.Exponential(half_light_radius=0.2, flux=50.0)
    good = gal.drawImage(nx=64, ny=64, scale=0.03).array + rng.normal(0, 0.02, (64, 64))
    nan = good.copy()
    nan[3, 3] = np.nan
    # Pure noise whose sum is barely positive: divided by that sum it is amplified noise, no
    # galaxy (a flux measured at less than MIN_FLUX_SNR sigma).
    noise = rng.normal(0, 0.02, (64, 64))
    noise -= noise.mean() - 1e-4
    stamps = [good, nan, np.zeros((32, 32)), "OSError: missing", np.ones((64, 64)), noise]
    # The shipped flux model's galaxies are as large as their stamps' scales: never guessed.
    with pytest.raises(galsim.GalSimValueError, match="pixel scale"):
        encode_stamps(stamps)
    res = encode_stamps(stamps, scales=np.full(6, 0.03))
    assert list(res["flag"]) == [False, True, True, True, True, True]
    assert "NaN" in res["reason"][1] and "shape" in res["reason"][2]
    assert "missing" in res["reason"][3] and "constant" in res["reason"][4]
    assert "flux below 5 sigma" in res["reason"][5] and np.isnan(res["mu"][5]).all()
    assert np.isfinite(res["mu"][0]).all() and np.isnan(res["mu"][1]).all()
    # A latent outside the space VAEGalaxy accepts is flagged, with no reconstruction.
    monkeypatch.setattr(encode_module, "MAX_LATENT", 1e-3)
    res = encode_stamps([good], scales=[0.03])
    assert res["flag"][0] and "latent beyond" in res["reason"][0]
    assert np.isnan(res["chi2_per_pixel"][0]) and np.isfinite(res["mu"][0]).all()


def test_encode_real_catalog(btk_dir, tmp_path):
    t = encode_catalog(btk_dir, tmp_path / "real.fits", chunk_size=8, nproc=1, progress=False)
    flag = np.asarray(t["flag"], dtype=bool)
    assert len(t) == 100 and np.isfinite(t["mu"][~flag]).all()
    # The only rows left out: faint galaxies whose 64 x 0.03" stamp holds a flux measured at
    # less than 5 sigma (4 of the 100), which a flux model would divide into amplified noise.
    assert flag.sum() <= 5
    assert all(r.startswith("flux below 5 sigma") for r in np.asarray(t["reason"])[flag])


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.fixture
def dask_clients(monkeypatch):
    """Every ``distributed.Client`` made during the test; any left open is closed afterwards."""
    distributed = pytest.importorskip("distributed")
    made = []

    class Recording(distributed.Client):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.connected_to = self.scheduler.address
            made.append(self)

    monkeypatch.setattr(distributed, "Client", Recording)
    yield made
    for c in made:
        if c.status != "closed":
            c.close()


@pytest.fixture(scope="module")
def local_table(sim_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "l.fits"
    return encode_catalog(sim_dataset, out, chunk_size=40, progress=False)


def _assert_same_table(a, b):
    assert list(a["row"]) == list(b["row"])
    np.testing.assert_array_equal(a["ident"], b["ident"])
    np.testing.assert_array_equal(a["flag"], b["flag"])
    np.testing.assert_allclose(a["mu"], b["mu"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a["sigma"], b["sigma"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a["chi2_per_pixel"], b["chi2_per_pixel"], rtol=1e-5)


def _chunk_tasks(task_stream):
    """The encoding tasks the scheduler ran, from ``distributed.get_task_stream``."""
    return [t for t in task_stream.data if "_dataset_chunk" in str(t["key"])]


@pytest.mark.slow
def test_dask_client_equals_single_process(sim_dataset, tmp_path, dask_cluster, local_table):
    distributed = pytest.importorskip("distributed")
    with distributed.Client(dask_cluster) as client:
        with distributed.get_task_stream(client) as ts:
            dist = encode_catalog(
                sim_dataset, tmp_path / "d.fits", chunk_size=40, progress=False, scheduler=client
            )
        assert client.status == "running"  # the caller's client is left to the caller
    assert len(_chunk_tasks(ts)) == 4  # 160 rows in chunks of 40, each a task on the cluster
    _assert_same_table(dist, local_table)


@pytest.mark.slow
def test_dask_scheduler_address_from_cli(
    sim_dataset, tmp_path, dask_cluster, local_table, dask_clients
):
    import distributed
    from distributed import client as dask_client  # its Client is not the recording one

    address = dask_cluster.scheduler_address
    assert isinstance(address, str) and address.startswith("tcp://")
    out = tmp_path / "d.fits"
    argv = ["encode", str(sim_dataset), "--out", str(out), "--chunk-size", "40", "--quiet"]
    with dask_client.Client(dask_cluster) as observer:
        with distributed.get_task_stream(observer) as ts:
            assert main([*argv, "--scheduler", address]) == 0
    assert len(dask_clients) == 1  # the address was used to connect
    assert dask_clients[0].connected_to == address
    assert dask_clients[0].status == "closed"  # and closed once the job is done
    assert len(_chunk_tasks(ts)) == 4
    _assert_same_table(Table.read(out), local_table)


@pytest.mark.slow
def test_dask_client_opened_for_an_address_is_closed(
    sim_dataset, tmp_path, dask_cluster, dask_clients
):
    encode_catalog(
        sim_dataset,
        tmp_path / "d.fits",
        chunk_size=80,
        progress=False,
        scheduler=dask_cluster.scheduler_address,
    )
    assert len(dask_clients) == 1
    assert dask_clients[0].status == "closed"


def test_bad_inputs(tmp_path, sim_dataset, capsys):
    with pytest.raises(galsim.GalSimValueError, match="Dask scheduler"):
        encode_catalog(
            sim_dataset, tmp_path / "x.fits", scheduler="tcp://127.0.0.1:1", progress=False
        )
    assert not (tmp_path / "x.fits").exists()
    with pytest.raises(galsim.GalSimValueError, match="not found"):
        encode_catalog(tmp_path / "nothing", tmp_path / "x.fits", progress=False)
    with pytest.raises(galsim.GalSimValueError, match="not found"):
        encode_catalog(sim_dataset, tmp_path / "x.fits", model=tmp_path / "m.safetensors")
    assert main(["encode", str(tmp_path / "nothing"), "--out", str(tmp_path / "y.fits")]) == 2
