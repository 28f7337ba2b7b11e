"""The private helpers every layer uses (galsim_vae._utils)."""

import json

import galsim
import numpy as np
import pytest

from galsim_vae._utils import (
    as_deviate,
    atomic_path,
    check_count,
    load_arrays,
    save_arrays,
    write_json,
)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"  # the old file is untouched
    assert list(tmp_path.iterdir()) == [target]  # and no temporary file is left
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_path_removes_what_killed_writers_left(tmp_path):
    import os
    import subprocess
    import sys

    target = tmp_path / "out.fits"
    # A writer killed with -9 leaves its temporary file; its process is gone.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    from galsim_vae._utils import _HOST

    stale = tmp_path / f".out.fits.{_HOST}.{dead.stdout.strip()}.tmp"
    stale.write_text("half")
    live = tmp_path / f".out.fits.{_HOST}.{os.getppid()}.tmp"  # a live process's: kept
    live.write_text("being written")
    recent_dead = tmp_path / f".out.fits.{_HOST}.999999999.tmp"  # gone, written now: kept
    other_host = tmp_path / ".out.fits.elsewhere.1.tmp"  # another machine's: never touched
    other_host.write_text("x")
    os.utime(other_host, (1, 1))
    recent_dead.write_text("x")
    for f in (stale, live, recent_dead):
        os.utime(f, (1, 1) if f is not recent_dead else None)
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert not stale.exists() and live.exists() and recent_dead.exists() and other_host.exists()
    assert target.read_text() == "new"


def test_write_json_numpy_values(tmp_path):
    p = write_json(tmp_path / "a" / "r.json", {"x": np.float32(1.5), "v": np.arange(3)})
    assert json.loads(p.read_text()) == {"x": 1.5, "v": [0, 1, 2]}


def test_array_file_round_trip_and_refusals(tmp_path):
    p = save_arrays(tmp_path / "f.npz", {"a": np.arange(4.0), "s": np.array(["x", "y"])}, {"k": 1})
    arrays, meta = load_arrays(p, "test", ("a",))
    np.testing.assert_array_equal(arrays["a"], np.arange(4.0))
    assert list(arrays["s"]) == ["x", "y"] and meta == {"k": 1}
    assert save_arrays(tmp_path / "g.npz", {"a": np.arange(3)}, {}, dtype=np.float32)
    assert load_arrays(tmp_path / "g.npz", "test")[0]["a"].dtype == np.float32
    with pytest.raises(galsim.GalSimValueError, match="test file lacks"):
        load_arrays(p, "test", ("a", "b"))
    with pytest.raises(galsim.GalSimValueError, match="test file not found"):
        load_arrays(tmp_path / "none.npz", "test")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(galsim.GalSimValueError, match="Not a test file"):
        load_arrays(tmp_path / "junk.npz", "test")
    # A pickled object inside is refused, not run.
    np.savez(tmp_path / "pickled.npz", meta=np.array("{}"), obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(galsim.GalSimValueError, match="Not a test file"):
        load_arrays(tmp_path / "pickled.npz", "test")
    with pytest.raises(galsim.GalSimValueError, match="reserved"):
        save_arrays(tmp_path / "h.npz", {"meta": np.zeros(1)}, {})


def test_as_deviate():
    d = galsim.BaseDeviate(5)
    assert as_deviate(d) is d
    a, b = galsim.UniformDeviate(as_deviate(7)), galsim.UniformDeviate(galsim.BaseDeviate(7))
    assert a() == b()
    assert isinstance(as_deviate(None), galsim.BaseDeviate)
    assert isinstance(as_deviate(np.int64(3)), galsim.BaseDeviate)
    # 0 is a seed like any other (galsim.BaseDeviate(0) seeds from the clock).
    assert as_deviate(0).raw() == as_deviate(0).raw() == as_deviate(np.int64(0)).raw()
    for bad in ("7", 7.0, True, np.random.default_rng(1)):
        with pytest.raises(TypeError, match="BaseDeviate"):
            as_deviate(bad)


def test_check_count():
    assert check_count(np.int32(3)) == 3 and type(check_count(np.int32(3))) is int
    assert check_count(0, minimum=0) == 0
    with pytest.raises(galsim.GalSimValueError, match="n must be a positive integer"):
        check_count(0)
    with pytest.raises(galsim.GalSimValueError, match="size must be an integer >= 16"):
        check_count(8, "size", minimum=16)
    for bad in (2.0, "3", True, None):
        with pytest.raises(TypeError, match="must be an integer"):
            check_count(bad)
