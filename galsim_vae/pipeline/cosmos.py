"""A whole COSMOS download to a dataset file: streamed in chunks, resumable, memory bounded.

GalSim's ``galsim_download_cosmos -s 25.2`` puts the COSMOS F814W<25.2 training sample (about
87,000 galaxies with their PSFs, 4 GB) in GalSim's share directory; :func:`build_dataset` reads it
from there (or from any folder or catalog file given, or ``$GALSIM_VAE_COSMOS``), draws every
galaxy into a stamp as :func:`~galsim_vae.pipeline.stamps.real_stamp` does, and writes the
dataset file of :mod:`~galsim_vae.pipeline.dataset`.

The work is cut into chunks of rows. Each finished chunk (its stamps, PSFs and rows) is saved
under ``OUT.parts/``, so that a killed run, started again with the same settings, draws only the
chunks it had not finished and writes the same file as an uninterrupted run; a leftover folder of
another run (other catalog, stamps or chunking) is refused, never mixed in. Memory holds one chunk
(plus the table); the file is written streaming, part by part, and appears only when complete.

The sample's own columns travel into the table: ``catalog_row``, ``weight`` (GalSim's
``RealGalaxyCatalog.weight``, the catalog's ``WEIGHT`` over its maximum; NaN for catalogs without
one), and, when
the catalog has them beside it, ``mag_auto``, ``flux_radius`` and ``zphot`` from
``<catalog>_fits.fits`` and every column of ``<catalog>_selection.fits`` (GalSim's
``COSMOSCatalog`` selection: ``dmag``, ``sn_ellip_gauss``, ...), joined on the catalog row.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack
from tqdm.auto import tqdm

from .._utils import atomic_path, locked_dir, record_run
from ..errors import GalSimValueError
from ._parallel import worker_pool
from .dataset import write_dataset_parts
from .stamps import (
    HST_PIXEL_SCALE,
    check_stamp_geometry,
    open_catalog,
    real_stamp_worker,
    real_stamps,
)

__all__ = ["build_dataset", "sample_columns"]

#: Columns of ``<catalog>_fits.fits`` carried into the dataset table, when present.
FIT_COLUMNS = ("mag_auto", "flux_radius", "zphot")


def sample_columns(catalog_file) -> Table:
    """The sample's columns for each catalog row: ``mag_auto``, ``flux_radius``, ``zphot`` of the
    ``_fits`` file and the ``_selection`` file's columns, where those files exist (a table with
    no columns otherwise)."""
    p = Path(catalog_file)
    out = Table()
    fit = p.with_name(p.stem + "_fits.fits")
    if fit.is_file():
        with fits.open(fit) as h:
            d = h[1].data
            for c in FIT_COLUMNS:
                if c in d.columns.names:
                    out[c] = np.asarray(d[c], dtype=float)
    sel = p.with_name(p.stem + "_selection.fits")
    if sel.is_file():
        with fits.open(sel) as h:
            d = h[1].data
            for c in d.columns.names:
                if c.upper() != "IDENT" and d[c].ndim == 1:
                    out[c] = np.asarray(d[c])
    return out


def build_dataset(
    out,
    catalog=None,
    *,
    stamp_size=64,
    pixel_scale=HST_PIXEL_SCALE,
    scale_mode="fixed",
    seed=1234,
    cuts=None,
    split_seed=1234,
    valid=0.1,
    test=0.1,
    multiple=1,
    chunk_size=2000,
    nproc=None,
    progress=True,
):
    """Draw every galaxy of a COSMOS catalog into a stamp and write a dataset file.

    Parameters:
        out: output dataset file.
        catalog: catalog file or folder; ``$GALSIM_VAE_COSMOS`` or GalSim's download when None
            (:func:`~galsim_vae.pipeline.stamps.find_catalog`). [default: None]
        stamp_size, pixel_scale, scale_mode, seed: the stamps
            (:func:`~galsim_vae.pipeline.stamps.real_stamp`). [default: 64, 0.03, "fixed", 1234]
        cuts, split_seed, valid, test, multiple: quality cuts and split
            (:func:`~galsim_vae.pipeline.dataset.write_dataset`).
        chunk_size: rows per chunk, the unit of resumption and of memory. [default: 2000]
        nproc: processes drawing stamps; all cores when None. [default: None]
        progress: show a progress bar (galaxies). [default: True]

    Returns:
        tuple: ``(table, errors)``: the written catalog and ``(row, reason)`` of the rows that
        could not be drawn.
    """
    check_stamp_geometry(stamp_size, pixel_scale, scale_mode)
    rgc = open_catalog(catalog)
    n = int(rgc.nobjects)
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    st = Path(rgc.file_name).stat()
    run = {
        "catalog": str(Path(rgc.file_name).resolve()),
        "catalog_size": st.st_size,
        "catalog_mtime_ns": st.st_mtime_ns,  # a catalog changed since: chunks not mixed in
        "n_rows": n,
        "chunk_size": int(chunk_size),
        "stamp_size": int(stamp_size),
        "pixel_scale": float(pixel_scale),
        "scale_mode": scale_mode,
        "seed": int(seed),
    }
    parts.mkdir(parents=True, exist_ok=True)
    with locked_dir(parts, out, what="dataset"):
        record_run(
            parts,
            run,
            "chunks of another dataset run",
            "rerun with that run's settings to finish it, or remove the folder",
        )
        starts = list(range(0, n, chunk_size))
        files = [parts / f"{k:06d}.npz" for k in range(len(starts))]
        done = sum(min(chunk_size, n - a) for a, f in zip(starts, files) if f.is_file())
        todo = [(a, f) for a, f in zip(starts, files) if not f.is_file()]
        # One set of worker processes for the whole run, each opening the catalog once.
        worker = real_stamp_worker(rgc.file_name, stamp_size, pixel_scale, scale_mode, seed)
        bar = tqdm(total=n, initial=done, desc="COSMOS stamps", unit="gal", disable=not progress)
        try:
            with worker_pool(*worker, nproc) if todo else contextlib.nullcontext() as pool:
                for a, f in todo:
                    idx = list(range(a, min(a + chunk_size, n)))
                    images, psfs, rows, errors = _chunk(
                        rgc.file_name, idx, stamp_size, pixel_scale, scale_mode, seed, pool
                    )
                    cols = {c: np.asarray([r[c] for r in rows]) for c in rows[0]} if rows else {}
                    with atomic_path(f) as tmp, open(tmp, "wb") as fh:
                        np.savez(
                            fh,
                            images=images,
                            psfs=psfs,
                            error_rows=np.array([i for i, _ in errors], dtype=np.int64),
                            error_reasons=np.array([r for _, r in errors], dtype="<U200"),
                            **{f"col_{c}": v for c, v in cols.items()},
                        )
                    bar.update(len(idx))
        finally:
            bar.close()
        tables, errors = [], []
        for f in files:
            with np.load(f, allow_pickle=False) as d:
                tables.append(Table({k[4:]: d[k] for k in d.files if k.startswith("col_")}))
                errors += list(zip(d["error_rows"].tolist(), d["error_reasons"].tolist()))
        kept = [f for f, t in zip(files, tables) if len(t)]
        if not kept:
            raise GalSimValueError(
                f"No galaxy of {rgc.file_name} could be drawn (first error: "
                f"{errors[0][1] if errors else '?'})",
                str(rgc.file_name),
            )
        table = vstack([t for t in tables if len(t)], join_type="exact")
        extra = sample_columns(rgc.file_name)
        for c in extra.colnames:
            if c not in table.colnames and len(extra) == n:
                table[c] = extra[c][np.asarray(table["catalog_row"])]
        table["psf_index"] = np.arange(len(table))
        written = write_dataset_parts(
            out,
            kept,
            table,
            cuts=cuts,
            seed=split_seed,
            valid=valid,
            test=test,
            multiple=multiple,
            meta={
                "SCALEMOD": scale_mode,
                "SEED": seed,
                "CATALOG": Path(str(rgc.file_name)).name[:60],
            },
        )
        shutil.rmtree(parts)  # the file is written: its chunks (and the lock) go
    return written, errors


def _chunk(catalog_file, idx, stamp_size, pixel_scale, scale_mode, seed, pool):
    """Stamps of rows ``idx`` (all rows failing gives empty arrays, not an error); ``pool`` as
    :func:`~galsim_vae.pipeline._parallel.worker_pool` gives (None: in this process)."""
    try:
        return real_stamps(
            catalog_file,
            stamp_size=stamp_size,
            pixel_scale=pixel_scale,
            scale_mode=scale_mode,
            seed=seed,
            indices=idx,
            nproc=1,
            progress=False,
            pool=pool,
        )
    except GalSimValueError as e:
        if "No stamp could be drawn" not in str(e):
            raise
        empty = np.zeros((0, stamp_size, stamp_size), np.float32)
        return empty, empty, [], [(i, "not drawn") for i in idx]
