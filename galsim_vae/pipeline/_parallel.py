"""Process-pool helpers shared by the stamp makers and the simulator (private)."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import time

from tqdm.auto import tqdm

from .._utils import item_seed  # noqa: F401  (re-exported: the pipeline's seeds)
from ..errors import GalSimValueError

__all__ = ["parallel_map", "spawn_pool", "worker_pool", "item_seed", "default_nproc"]


def default_nproc():
    """The number of CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


_worker = {}
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _init(factory, args):
    _worker["func"] = factory(*args)


def _call(chunk):
    func = _worker["func"]
    return [func(i) for i in chunk]


#: Seconds between a pool worker's checks that the process that started it is still there.
PARENT_POLL = 0.5


def _watch_parent(parent):
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)  # the parent is gone: nobody will take this worker's results


def _die_with_parent(parent):
    """End this worker within :data:`PARENT_POLL` seconds of the death of the process that
    started it (a daemon thread watches ``os.getppid()``).

    A pool worker otherwise notices a killed parent only when it next asks for work, so a
    ``kill -9`` of a long run left its workers drawing their current chunk for ~20 s more. A
    thread rather than Linux's parent-death signal, which follows the thread that made the
    worker (a pool's replacement workers are made by its handler thread) and exists only on
    Linux."""
    if os.getppid() != parent:  # the parent died before the worker got here
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _start_worker(parent, initializer, initargs):
    _die_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


def spawn_pool(nproc, initializer=None, initargs=(), **kwargs):
    """A ``multiprocessing`` pool of ``nproc`` single-threaded worker processes.

    "spawn", not "fork": GalSim and torch start OpenMP threads, and a process forked after that can
    deadlock. (Scripts using it need the usual ``if __name__ == "__main__":`` guard.) One thread
    per worker: with OpenMP's default of one thread per core in every worker, the processes fight
    over the cores and the pool is slower than one process. The workers end with the process
    that made the pool (:func:`_die_with_parent`): a killed run leaves none behind.
    """
    ctx = mp.get_context("spawn")
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        return ctx.Pool(
            nproc,
            initializer=_start_worker,
            initargs=(os.getpid(), initializer, tuple(initargs)),
            **kwargs,
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def worker_pool(factory, args, nproc=None):
    """A pool whose workers each hold ``factory(*args)``, for several :func:`parallel_map` calls
    of that factory (``pool=``): one set of processes for a long run, not one per call. Yields
    None for one process (``parallel_map`` then works in this process)."""
    nproc = default_nproc() if nproc is None else int(nproc)
    if nproc <= 1:
        yield None
        return
    pool = spawn_pool(nproc, initializer=_init, initargs=(factory, args))
    pool.galsim_vae_worker = (factory, tuple(args))  # what parallel_map checks it is given
    try:
        yield pool
    except BaseException:
        pool.terminate()
        raise
    else:
        pool.close()  # workers exit cleanly, releasing what they hold
    finally:
        pool.join()


def parallel_map(
    factory, args, indices, *, nproc=None, chunk=64, desc=None, progress=True, pool=None
):
    """Run ``factory(*args)(i)`` for each index, in index order, over ``nproc`` processes.

    ``factory`` builds the per-process callable once (so each worker opens its catalogs or PSFs
    once). Results come back in the order of ``indices`` whatever ``nproc`` is. ``pool``: a
    :func:`worker_pool` of the same ``factory`` and ``args`` to run on instead of a new one.
    """
    indices = list(indices)
    nproc = default_nproc() if nproc is None else int(nproc)
    bar = tqdm(total=len(indices), desc=desc, disable=not progress, unit="stamp")
    chunks = [indices[k : k + chunk] for k in range(0, len(indices), chunk)]
    out = []
    try:
        if pool is not None:
            if getattr(pool, "galsim_vae_worker", None) != (factory, tuple(args)):
                raise GalSimValueError(
                    "the pool's workers were made for another task",
                    getattr(pool, "_processes", None),
                )
            for res in pool.imap(_call, chunks):
                out.extend(res)
                bar.update(len(res))
        elif nproc <= 1 or len(chunks) <= 1:
            func = factory(*args)
            for c in chunks:
                out.extend(func(i) for i in c)
                bar.update(len(c))
        else:
            pool = spawn_pool(nproc, initializer=_init, initargs=(factory, args))
            with pool:
                for res in pool.imap(_call, chunks):
                    out.extend(res)
                    bar.update(len(res))
    finally:
        bar.close()
    return out
