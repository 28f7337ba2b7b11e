"""GalSim's COSMOS download to a dataset: the format-exact stand-in, finding the sample, and the
streamed, resumable ``dataset`` (a small stand-in here; the full-scale run is in docs/cosmos.md)."""

import subprocess
import sys
import time

import galsim
import numpy as np
import pytest
from astropy.io import fits

from galsim_vae.cli import main
from galsim_vae.errors import GalSimIncompatibleValuesError, GalSimValueError
from galsim_vae.pipeline import cosmos
from galsim_vae.pipeline.cosmos import build_dataset
from galsim_vae.pipeline.dataset import read_dataset
from galsim_vae.pipeline.metrics import QualityCuts
from galsim_vae.pipeline.stamps import find_catalog
from galsim_vae.pipeline.standin import build_standin

N, PER_FILE = 30, 12
LOOSE = QualityCuts(min_snr=0, min_width=0, max_width=np.inf, min_nonuniformity=0)


@pytest.fixture(scope="module")
def standin(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("standin") / "COSMOS_25.2_training_sample"
    return build_standin(out, N, per_file=PER_FILE, data_dir=data_dir, nproc=1, progress=False)


def test_standin_has_the_download_layout_and_galsim_reads_it(standin):
    d = standin.parent
    assert standin.name == "real_galaxy_catalog_25.2.fits"
    assert sorted(f.name for f in d.glob("real_galaxy_images_25.2_n*.fits")) == [
        f"real_galaxy_images_25.2_n{k}.fits" for k in (1, 2, 3)
    ]
    assert not (d / ".standin_parts").exists()
    with fits.open(d / "real_galaxy_images_25.2_n3.fits") as h:
        assert len(h) == N - 2 * PER_FILE  # one HDU per postage stamp, the primary included
    rgc = galsim.RealGalaxyCatalog(str(standin))
    assert rgc.nobjects == N
    img = rgc.getGalImage(N - 1)
    assert img.scale == pytest.approx(0.03) and 32 <= img.array.shape[0] <= 384
    assert rgc.getPSFImage(N - 1).array.shape == (49, 49)
    # GalSim's COSMOSCatalog: its selection (the _selection and _fits files) and both kinds of
    # galaxy.
    cc = galsim.COSMOSCatalog(file_name=standin.name, dir=str(d))
    assert 0 < cc.nobjects <= N
    psf = galsim.Gaussian(fwhm=0.2)
    for kind in ("parametric", "real"):
        gal = cc.makeGalaxy(0, gal_type=kind, noise_pad_size=2)
        galsim.Convolve(gal, psf).drawImage(nx=64, ny=64, scale=0.05)
    # The parametric fits are the galaxies' true bulge + disk.
    with fits.open(d / "real_galaxy_catalog_25.2_fits.fits") as h:
        t = h[1].data
        np.testing.assert_allclose(t["flux"][:, 1] + t["flux"][:, 2], t["flux"][:, 0])
        assert np.all(t["hlr"][:, 0] > 0)


def test_cosmoscatalog_selection_feeds_from_real(standin):
    # COSMOSCatalog's cuts choose the rows; from_real makes the model's version of each, with
    # the flux and size of the galaxy it encodes.
    from galsim_vae import VAEGalaxy

    cc = galsim.COSMOSCatalog(file_name=standin.name, dir=str(standin.parent), min_hlr=0.2)
    assert 0 < cc.nobjects
    rows = [int(i) for i in cc.orig_index[:3]]
    for k, row in enumerate(rows):
        gal = VAEGalaxy.from_real(cc.real_cat, index=row)
        rec = cc.getParametricRecord(k)
        assert gal.ident == cc.real_cat.ident[row]
        assert gal.flux == pytest.approx(float(np.ravel(rec["flux"])[0]), rel=0.25)


def test_standin_refuses_other_settings_midway(standin, tmp_path, data_dir, monkeypatch):
    from galsim_vae.pipeline import standin as sd

    calls = []
    real_call = sd._FileWorker.__call__

    def stop_after_one(self, k):
        if calls:
            raise KeyboardInterrupt
        calls.append(k)
        return real_call(self, k)

    monkeypatch.setattr(sd._FileWorker, "__call__", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        build_standin(tmp_path, 20, per_file=10, data_dir=data_dir, nproc=1, progress=False)
    assert (tmp_path / "real_galaxy_images_25.2_n1.fits").is_file()
    assert not (tmp_path / "real_galaxy_catalog_25.2.fits").exists()  # not complete
    with pytest.raises(GalSimIncompatibleValuesError, match="n: 20 -> 25"):
        build_standin(tmp_path, 25, per_file=10, data_dir=data_dir, nproc=1, progress=False)
    monkeypatch.setattr(sd._FileWorker, "__call__", real_call)
    cat = build_standin(tmp_path, 20, per_file=10, data_dir=data_dir, nproc=1, progress=False)
    assert galsim.RealGalaxyCatalog(str(cat)).nobjects == 20


def test_dataset_streamed_resumed_identical(standin, tmp_path, monkeypatch):
    kw = dict(cuts=LOOSE, chunk_size=8, nproc=1, progress=False)
    full, errors = build_dataset(tmp_path / "full.fits", standin, **kw)
    assert not errors and len(full) == N
    # The sample's own columns travel into the table, joined on the catalog row.
    for c in ("weight", "mag_auto", "zphot", "dmag", "sn_ellip_gauss", "catalog_row"):
        assert c in full.colnames, c
    with fits.open(standin.with_name("real_galaxy_catalog_25.2_fits.fits")) as h:
        np.testing.assert_allclose(full["mag_auto"], h[1].data["mag_auto"])
    # Killed after two chunks: those are kept, and a rerun with other settings is refused.
    real_chunk, done = cosmos._chunk, []

    def killed(*a, **k):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(1)
        return real_chunk(*a, **k)

    monkeypatch.setattr(cosmos, "_chunk", killed)
    out = tmp_path / "resumed.fits"
    with pytest.raises(KeyboardInterrupt):
        build_dataset(out, standin, **kw)
    assert not out.exists() and len(list(out.with_name("resumed.fits.parts").glob("*.npz"))) == 2
    with pytest.raises(GalSimIncompatibleValuesError, match="chunk_size: 8 -> 5"):
        build_dataset(out, standin, **dict(kw, chunk_size=5))
    # The rerun draws only the missing chunks and writes the same file.
    monkeypatch.setattr(cosmos, "_chunk", real_chunk)
    calls = []
    monkeypatch.setattr(cosmos, "_chunk", lambda *a, **k: calls.append(1) or real_chunk(*a, **k))
    resumed, _ = build_dataset(out, standin, **kw)
    assert len(calls) == 2  # 30 rows in chunks of 8: 4 chunks, 2 done before the kill
    a, b = read_dataset(tmp_path / "full.fits"), read_dataset(out)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[2], b[2])
    for c in a[1].colnames:
        np.testing.assert_array_equal(a[1][c], b[1][c])
    assert not out.with_name("resumed.fits.parts").exists()


def test_dataset_one_pool_for_all_chunks(standin, tmp_path, monkeypatch):
    from galsim_vae.pipeline import _parallel

    kw = dict(cuts=LOOSE, chunk_size=8, progress=False)
    one, _ = build_dataset(tmp_path / "one.fits", standin, nproc=1, **kw)
    real_spawn, spawned = _parallel.spawn_pool, []
    monkeypatch.setattr(
        _parallel, "spawn_pool", lambda *a, **k: spawned.append(1) or real_spawn(*a, **k)
    )
    real_chunk, pools = cosmos._chunk, []
    monkeypatch.setattr(cosmos, "_chunk", lambda *a: pools.append(a[-1]) or real_chunk(*a))
    two, _ = build_dataset(tmp_path / "two.fits", standin, nproc=2, **kw)
    # 4 chunks, one set of worker processes, handed to each chunk.
    assert len(spawned) == 1 and len(pools) == 4
    assert all(p is pools[0] for p in pools) and hasattr(pools[0], "imap")
    a, b = read_dataset(tmp_path / "one.fits"), read_dataset(tmp_path / "two.fits")
    np.testing.assert_array_equal(a[0], b[0])
    for c in a[1].colnames:
        np.testing.assert_array_equal(a[1][c], b[1][c])
    # A long-lived worker keeps only the current row's image and PSF files open (GalSim keeps
    # every file it reads in memory otherwise).
    from galsim_vae.pipeline.stamps import real_stamp_worker

    factory, args = real_stamp_worker(standin, 64, 0.03, "fixed", 1)
    w = factory(*args)
    for i in range(N):
        w(i)
        assert len(w.rgc.loaded_files) <= 2
    assert len({f for f, _ in w.files}) > 1  # the rows span several files
    # A pool is used only for the task it was made for.
    with _parallel.worker_pool(factory, args, 2) as pool:
        with pytest.raises(GalSimValueError, match="another task"):
            _parallel.parallel_map(factory, args[:-1] + (2,), [0, 1], pool=pool, progress=False)


def test_dataset_command_on_the_standin(standin, tmp_path):
    out = tmp_path / "d.fits"
    argv = ["dataset", str(standin.parent), "--out", str(out), "--quiet", "--nproc", "1"]
    assert main([*argv, "--chunk-size", "16", "--min-snr", "0"]) == 0
    images, table, psfs, hdr = read_dataset(out)
    assert images.shape == (N, 64, 64) and psfs.shape == (N, 64, 64)
    assert hdr["CATALOG"] == standin.name and out.with_suffix(".png").is_file()


def test_find_catalog_in_galsims_share_dir(standin, tmp_path, monkeypatch):
    monkeypatch.delenv("GALSIM_VAE_COSMOS", raising=False)
    monkeypatch.setattr(galsim.meta_data, "share_dir", str(tmp_path))
    with pytest.raises(GalSimValueError, match="galsim_download_cosmos -s 25.2"):
        find_catalog()
    monkeypatch.setattr(galsim.meta_data, "share_dir", str(standin.parent.parent))
    assert find_catalog() == standin


def _alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()  # a zombie has ended, only not been reaped
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to see the worker")
def test_pool_workers_end_with_a_killed_parent(tmp_path):
    # A run killed with kill -9 while its workers are busy: the workers end with it, instead of
    # finishing their chunk (here a 120 s sleep) as orphans.
    script = (
        "import time\n"
        "from galsim_vae.pipeline._parallel import spawn_pool\n"
        "pool = spawn_pool(1)\n"
        "pool.apply_async(time.sleep, (120,))\n"
        "print(pool._pool[0].pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            worker = int(proc.stdout.readline())
            time.sleep(1.0)  # the worker is inside its task
            assert _alive(worker)
            proc.kill()
            proc.wait()
            deadline = time.monotonic() + 60
            while _alive(worker) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not _alive(worker), "the pool worker outlived its killed parent"
        finally:
            proc.kill()
