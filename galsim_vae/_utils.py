"""Small helpers every layer uses (private): atomic writes, array files, argument checks.

Nothing here imports more than numpy and galsim, so the core and the jobs alike can use it.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import GalSimIncompatibleValuesError, GalSimValueError

__all__ = [
    "atomic_path",
    "write_json",
    "save_arrays",
    "load_arrays",
    "as_deviate",
    "check_count",
]


#: This machine's name, in temporary file names (dots would confuse their parsing).
_HOST = socket.gethostname().replace(".", "_") or "host"


class atomic_path:
    """Context manager giving a temporary path that is renamed to ``path`` on success.

    On an exception (``KeyboardInterrupt`` included) the temporary file is removed, so an
    interrupted write never leaves a file that looks complete.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{_HOST}.{os.getpid()}.tmp")

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale()
        return self.tmp

    def _remove_stale(self):
        """Remove this path's temporary files left by killed writers (a kill -9 runs no
        cleanup): those whose process is gone and that nothing wrote for a minute."""
        import time

        # Only this machine's: another host's process ids mean nothing here.
        for f in self.path.parent.glob(f".{self.path.name}.{_HOST}.*.tmp"):
            try:
                pid = int(f.name[len(f".{self.path.name}.{_HOST}.") : -4])
                os.kill(pid, 0)
                continue  # its writer runs
            except ProcessLookupError:
                pass
            except (ValueError, PermissionError):  # not ours, or another user's live process
                continue
            try:
                if time.time() - f.stat().st_mtime > 60:
                    f.unlink()
            except OSError:
                pass

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            # Some writers (safetensors) create private 0600 files: give the result the
            # permissions any new file of this process gets.
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(self.tmp, 0o666 & ~mask)
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()
        return False


def _to_json(o):
    if isinstance(o, (np.generic, np.ndarray)):
        return o.tolist()
    return str(o)


def write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path``, atomically (numpy values become lists)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=_to_json))
    return path


def save_arrays(path, arrays: dict, meta: dict, *, dtype=None) -> Path:
    """Write named arrays and a JSON header ``meta`` to one ``.npz`` file, atomically.

    The file holds no pickled objects: :func:`load_arrays` reads it with ``allow_pickle=False``.

    Parameters:
        path: output file.
        arrays: name -> array.
        meta: JSON-serialisable dict, stored as the array ``meta``.
        dtype: cast every array to this dtype. [default: None, as they are]
    """
    path = Path(path)
    if "meta" in arrays:
        raise GalSimValueError("'meta' is reserved for the header", sorted(arrays))
    out = {
        k: np.asarray(v) if dtype is None else np.asarray(v, dtype=dtype) for k, v in arrays.items()
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta, default=_to_json)), **out)
    return path


def load_arrays(path, what: str, required=()) -> tuple[dict, dict]:
    """Read a file of :func:`save_arrays`: ``(arrays, meta)``.

    Parameters:
        path: the ``.npz`` file.
        what: what the file is, for the error messages ("latent density").
        required: array names the file must hold. [default: ()]
    """
    p = Path(path)
    if not p.is_file():
        raise GalSimValueError(f"{what} file not found", str(p))
    try:
        with np.load(p, allow_pickle=False) as d:
            arrays = {k: d[k] for k in d.files if k != "meta"}
            meta = json.loads(str(d["meta"]))
    except (OSError, KeyError, ValueError, EOFError) as e:
        raise GalSimValueError(f"Not a {what} file ({e})", str(p)) from e
    missing = sorted(set(required) - set(arrays))
    if missing:
        raise GalSimValueError(f"{what} file lacks {missing}", str(p))
    return arrays, meta


#: The seed an int seed of 0 stands for in :func:`as_deviate`: GalSim reads 0 as "seed from the
#: clock", which would make every command whose default seed is 0 draw differently each run.
ZERO_SEED = 0x5EED


def as_deviate(rng):
    """``rng`` as a ``galsim.BaseDeviate``: a deviate as it is, an int as a seed (0 too: the
    same seed, the same draws, unlike ``galsim.BaseDeviate(0)``), None fresh.

    Raises ``TypeError`` for anything else (a string, a float, a numpy Generator).
    """
    import galsim

    if rng is None:
        return galsim.BaseDeviate()
    if isinstance(rng, galsim.BaseDeviate):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return galsim.BaseDeviate(int(rng) or ZERO_SEED)
    raise TypeError(f"rng must be a galsim.BaseDeviate, an int seed or None, got {rng!r}")


def check_count(n, name: str = "n", *, minimum: int = 1) -> int:
    """``n`` as an int, refusing a non-integer (``TypeError``) or one below ``minimum``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {n!r}")
    if n < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise GalSimValueError(f"{name} must be {what}", n)
    return int(n)


@contextmanager
def locked_dir(parts, out, *, what):
    """Hold the work folder ``parts`` of output ``out`` for this process: a second run
    (``what``, for the message) to the same output is refused while the first runs; a lock left
    by a killed run, whose process is gone, is taken over."""
    lock = parts / "lock"
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                host, pid = lock.read_text().split()
                alive = host != socket.gethostname()  # another machine's: assume it runs
                if not alive:
                    os.kill(int(pid), 0)
                    alive = True
            except ProcessLookupError:
                alive = False
            except (OSError, ValueError):  # unreadable or half-written: another run's, live
                alive = True
                host, pid = "?", "?"
            if alive:
                raise GalSimValueError(
                    f"another {what} is writing {out} (process {pid} on {host}); wait for it, "
                    f"or remove {lock} if it is gone",
                    str(out),
                ) from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
        return
    raise GalSimValueError(f"could not take the lock {lock}", str(lock))


def record_run(parts, run: dict, what: str, fix: str) -> None:
    """Check that the work folder ``parts`` holds pieces of this run, then record it.

    A folder with pieces (anything but its lock) whose ``run.json`` differs from ``run``, or
    that has none, is refused with the differences named, so that a leftover folder of another
    run is never mixed in; otherwise ``run`` is written to ``run.json``.

    Parameters:
        parts: the work folder (it exists).
        run: what the pieces are of (JSON-serialisable settings).
        what: what the folder would hold, for the message ("chunks of another encoding run").
        fix: how to go on, for the message.
    """
    manifest = Path(parts) / "run.json"
    if any(f.name != "lock" for f in Path(parts).iterdir()):
        was = json.loads(manifest.read_text()) if manifest.is_file() else None
        if was != run:
            changed = {k: v for k, v in run.items() if was is None or was.get(k) != v}
            diff = (
                "; ".join(f"{k}: {was.get(k)} -> {v}" for k, v in changed.items())
                if was is not None
                else "it has no record of its run"
            )
            raise GalSimIncompatibleValuesError(f"{parts} holds {what} ({diff}); {fix}", **changed)
    write_json(manifest, run)


def item_seed(seed, index):
    """A positive 31-bit seed for item ``index`` of a run seeded by ``seed``.

    Derived with ``numpy.random.SeedSequence`` so that items are independent and the result does
    not depend on how items are split between processes. Never 0 (GalSim reads 0 as "seed from the
    clock").
    """
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0]
    return int(state % (2**31 - 2)) + 1
