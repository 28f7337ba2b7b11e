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
    enc = get_model().encode(images[:7])
    np.testing.assert_allclose(t["mu"][:7], enc["mu"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(t["snr"], table["snr"])
    assert np.all(t["chi2_per_pixel"] > 0)
    assert Table.read(out)["mu"].shape == (len(images), 64)
    assert not (tmp_path / "z.fits.parts").exists()


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
    resumed = encode_catalog(sim_dataset, tmp_path / "b.fits", chunk_size=40, progress=False)
    assert list(resumed["row"]) == list(full["row"])
    np.testing.assert_allclose(resumed["mu"], full["mu"])


def test_bad_rows_are_flagged():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(64, 64))
    nan = good.copy()
    nan[3, 3] = np.nan
    res = encode_stamps([good, nan, np.zeros((32, 32)), "OSError: missing", np.ones((64, 64))])
    assert list(res["flag"]) == [False, True, True, True, True]
    assert "NaN" in res["reason"][1] and "shape" in res["reason"][2]
    assert "missing" in res["reason"][3] and "constant" in res["reason"][4]
    assert np.isfinite(res["mu"][0]).all() and np.isnan(res["mu"][1]).all()


def test_encode_real_catalog(btk_dir, tmp_path):
    t = encode_catalog(btk_dir, tmp_path / "real.fits", chunk_size=8, nproc=1, progress=False)
    assert len(t) == 100 and not t["flag"].any() and np.isfinite(t["mu"]).all()


@pytest.mark.slow
def test_dask_local_cluster_equals_single_process(sim_dataset, tmp_path):
    distributed = pytest.importorskip("distributed")
    local = encode_catalog(sim_dataset, tmp_path / "l.fits", chunk_size=40, progress=False)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        with distributed.Client(cluster) as client:
            dist = encode_catalog(
                sim_dataset, tmp_path / "d.fits", chunk_size=40, progress=False, scheduler=client
            )
    assert list(dist["row"]) == list(local["row"])
    np.testing.assert_array_equal(dist["ident"], local["ident"])
    np.testing.assert_allclose(dist["mu"], local["mu"], rtol=1e-5, atol=1e-6)


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
