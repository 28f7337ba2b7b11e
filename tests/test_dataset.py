import galsim
import numpy as np
import pytest
from astropy.io import fits

from galsim_vae.cli import main
from galsim_vae.pipeline import dataset
from galsim_vae.pipeline.metrics import QualityCuts


def _rows(n, rng):
    return [
        {
            "ident": i,
            "source": "test",
            "pixel_scale": 0.03,
            "flux": 1.0,
            "flux_total": 1.0,
            "flux_fraction": 1.0,
            "noise_sigma": 0.1,
            "snr": float(rng.uniform(1, 50)),
            "width_pix": 3.0,
            "width_arcsec": 0.09,
            "nonuniformity": 10.0,
            "norm_min": 0.0,
            "norm_max": 1.0,
        }
        for i in range(n)
    ]


def test_splits_deterministic_and_sized():
    passes = np.ones(100, dtype=bool)
    passes[::10] = False
    a = dataset.assign_splits(passes, seed=3, valid=0.2, test=9)
    b = dataset.assign_splits(passes, seed=3, valid=0.2, test=9)
    c = dataset.assign_splits(passes, seed=4, valid=0.2, test=9)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a == "test").sum() == 9 and (a == "valid").sum() == 18 and (a == "train").sum() == 63
    assert np.all(a[~passes] == "")
    m = dataset.assign_splits(passes, seed=3, valid=0.2, test=0.1, multiple=8)
    for s in ("train", "valid", "test"):
        assert (m == s).sum() % 8 == 0
    with pytest.raises(galsim.GalSimValueError, match="exceed"):
        dataset.assign_splits(passes, valid=60, test=60)


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(20, 16, 16)).astype(np.float32)
    path = tmp_path / "d.fits"
    t = dataset.write_dataset(
        path, images, _rows(20, rng), cuts=QualityCuts(min_snr=10), valid=2, test=2
    )
    img2, t2, psfs, hdr = dataset.read_dataset(path)
    np.testing.assert_array_equal(img2, images)
    assert psfs is None and hdr["GVFORMAT"] == dataset.FORMAT_VERSION
    np.testing.assert_array_equal(t2["passes"], t["passes"])
    assert list(t2["split"]) == list(t["split"])
    assert set(t2["split"][~np.asarray(t2["passes"])]) == {""}
    # Readable without the package: plain astropy sees the cube and the table.
    with fits.open(path) as h:
        assert h["STAMPS"].data.shape == (20, 16, 16)
        assert "snr" in h["CATALOG"].columns.names
    ds = dataset.StampDataset(path, "train")
    assert len(ds) == int(t["passes"].sum()) - 4
    x = ds[0]
    assert tuple(x.shape) == (1, 16, 16) and float(x.min()) == 0.0 and float(x.max()) == 1.0


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.fits"

    def boom(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(fits.HDUList, "writeto", boom)
    with pytest.raises(KeyboardInterrupt):
        dataset.write_dataset(
            path,
            rng.normal(size=(4, 16, 16)),
            _rows(4, rng),
            cuts=QualityCuts(min_snr=0),
            valid=0,
            test=0,
        )
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(galsim.GalSimValueError, match="No stamp passes"):
        dataset.write_dataset(
            tmp_path / "x.fits",
            rng.normal(size=(4, 16, 16)),
            _rows(4, rng),
            cuts=QualityCuts(min_snr=1e6),
        )
    assert not (tmp_path / "x.fits").exists()
    with pytest.raises(galsim.GalSimValueError, match="cube"):
        dataset.write_dataset(tmp_path / "x.fits", np.zeros((4, 16, 8)), _rows(4, rng))
    with pytest.raises(galsim.GalSimValueError, match="one row per image"):
        dataset.write_dataset(tmp_path / "x.fits", np.zeros((3, 16, 16)), _rows(4, rng))
    with pytest.raises(galsim.GalSimValueError, match="not found"):
        dataset.read_dataset(tmp_path / "none.fits")
    fits.PrimaryHDU(np.zeros(3)).writeto(tmp_path / "other.fits")
    with pytest.raises(galsim.GalSimValueError, match="Not a galsim_vae dataset"):
        dataset.read_dataset(tmp_path / "other.fits")
    (tmp_path / "junk.fits").write_bytes(b"not fits at all" * 10)
    with pytest.raises(galsim.GalSimValueError):
        dataset.read_dataset(tmp_path / "junk.fits")
    with pytest.raises(galsim.GalSimValueError, match="Unknown split"):
        dataset.StampDataset(tmp_path / "none.fits", "training")


@pytest.fixture
def newer_dataset(tmp_path):
    from test_cli import write_small_dataset

    path = write_small_dataset(tmp_path / "newer.fits")
    assert dataset.read_dataset(path)[0].shape == (6, 64, 64)  # readable before the bump
    fits.setval(path, "GVFORMAT", value=dataset.FORMAT_VERSION + 1)
    return path


def test_newer_format_is_refused(newer_dataset, tmp_path, capsys):
    v = dataset.FORMAT_VERSION + 1
    with pytest.raises(galsim.GalSimValueError, match=f"format {v} is newer"):
        dataset.read_dataset(newer_dataset)
    with pytest.raises(galsim.GalSimValueError, match=f"format {v} is newer"):
        dataset.StampDataset(newer_dataset, "all")
    out = tmp_path / "ev"
    assert (
        main(["evaluate", "default", str(newer_dataset), "--out", str(out), "--split", "all"]) == 2
    )
    assert f"format {v} is newer" in capsys.readouterr().err
    assert not (out / "evaluate.json").exists()


def test_encode_refuses_a_newer_format(newer_dataset, tmp_path):
    out = tmp_path / "z.fits"
    assert main(["encode", str(newer_dataset), "--out", str(out), "--quiet"]) == 2
    assert not out.exists()


def test_streamed_writer_writes_the_same_file(tmp_path):
    """write_dataset_parts (memory: one part) and write_dataset (everything in memory) give the
    same HDUs in the same order, the same data, table and header."""
    from astropy.table import Table

    from galsim_vae.pipeline.dataset import write_dataset, write_dataset_parts

    rng = np.random.default_rng(1)
    images = rng.random((50, 16, 16)).astype(np.float32)
    psfs = rng.random((50, 12, 12)).astype(np.float32)  # PSFs of their own size
    rows = [
        dict(
            ident=i,
            snr=10.0 + i,
            width_pix=5.0,
            width_arcsec=0.15,
            nonuniformity=0.5,
            flux_fraction=1.0,
            flux=1.0,
        )
        for i in range(50)
    ]
    parts = []
    for k, (a, b) in enumerate(((0, 20), (20, 35), (35, 50))):
        parts.append(tmp_path / f"{k}.npz")
        np.savez(parts[-1], images=images[a:b], psfs=psfs[a:b])
    cuts = QualityCuts(
        min_snr=20, min_width=0, max_width=np.inf, min_nonuniformity=0, min_flux_fraction=0
    )
    kw = dict(cuts=cuts, seed=3, meta={"CATALOG": "x"})
    write_dataset_parts(tmp_path / "s.fits", parts, Table(rows=rows), **kw)
    write_dataset(tmp_path / "m.fits", images, rows, psfs=psfs, **kw)
    with fits.open(tmp_path / "s.fits") as s, fits.open(tmp_path / "m.fits") as m:
        assert (
            [h.name for h in s] == [h.name for h in m] == ["PRIMARY", "STAMPS", "CATALOG", "PSFS"]
        )
        for hs, hm in zip(s, m, strict=True):
            assert hs.header == hm.header
            if hs.name == "CATALOG":
                assert hs.data.tobytes() == hm.data.tobytes()
            elif hs.data is not None:
                np.testing.assert_array_equal(hs.data, hm.data)


def test_reading_real_stamps_of_an_older_galsim_vae_warns(real_dataset, tmp_path):
    # A real dataset written before the stamps kept their pixels as observed has no REALSTMP
    # card: reading it says so; one written now does not.
    from galsim_vae.pipeline.dataset import read_dataset

    read_dataset(real_dataset)  # no warning (filterwarnings=error would raise)
    old = tmp_path / "old.fits"
    with fits.open(real_dataset) as h:
        del h[0].header["REALSTMP"]
        h.writeto(old)
    with pytest.warns(galsim.GalSimWarning, match="half a pixel"):
        read_dataset(old)
