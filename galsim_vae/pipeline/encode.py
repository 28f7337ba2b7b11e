"""Catalog-wide encoding: every stamp of a catalog to its latents, on one machine or on Dask.

The input is a dataset file (``galsim-vae dataset`` / ``simulate``) or a COSMOS
``RealGalaxyCatalog`` (file or folder), whose stamps are drawn on the fly. The work is cut into
chunks of rows; each finished chunk is saved under ``OUT.parts/`` so that an interrupted run resumes
where it stopped (no row lost or duplicated), and the output FITS table appears, atomically, only
when every chunk is done.

Output columns: ``row`` (position in the input), ``ident``, ``mu`` and ``sigma`` (latent_dim
each), ``chi2_per_pixel`` of the reconstruction (flux units, over the stamp's noise sigma), the
quality metrics ``noise_sigma``, ``snr``, ``width_pix``, ``nonuniformity`` (taken from the dataset
table when there is one), and ``flag`` / ``reason`` for rows that could not be encoded (missing or
corrupt image, NaNs, wrong size) instead of a crash.

With ``scheduler=ADDRESS`` the chunks are encoded by the workers of a ``dask.distributed`` cluster;
each worker process loads the model once. The output is the same, row for row.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import galsim
import numpy as np
from astropy.io import fits
from astropy.table import Table
from tqdm.auto import tqdm

from .._utils import atomic_path, locked_dir, record_run
from ..errors import GalSimRangeError, GalSimValueError
from ..model import MAX_LATENT, get_model, tune_allocator
from ._parallel import default_nproc, item_seed, spawn_pool
from .dataset import MIN_FLUX_SNR, check_dataset_file, is_dataset_file
from .metrics import stamp_metrics
from .stamps import DEFAULT_SEED, open_catalog, real_stamp

__all__ = ["encode_stamps", "encode_catalog"]


_METRICS = ("noise_sigma", "snr", "width_pix", "nonuniformity")


def encode_stamps(
    images,
    model_file=None,
    *,
    idents=None,
    rows=None,
    metrics=None,
    scales=None,
    precision="float32",
    refine=0,
) -> dict:
    """Encode a chunk of stamps (flux units) with the (per-process cached) model.

    Bad stamps (wrong shape, NaN or infinite pixels, constant) are flagged, not raised.
    ``metrics`` (a dict of arrays, one value per stamp) is used instead of measuring them;
    ``scales`` (arcsec/px, one per stamp) is written as the ``pixel_scale`` column, so that a
    galaxy built from a row has its stamp's size: a flux model needs them (its galaxies' sizes
    are their scales, never guessed); a min-max model's are its own scale when None.
    ``precision`` is the network's arithmetic (:class:`~galsim_vae.VAEModel`). ``refine``
    (flux models) moves each latent to its posterior mode in that many steps, with the stamp's
    noise sigma (:meth:`~galsim_vae.VAEModel.refine_latents`, always in float32).
    """
    tune_allocator()  # also in Dask workers: half the network's rate otherwise (model.py)
    model = get_model(model_file, precision=precision)
    n = len(images)
    if scales is None and model.representation == "flux":
        raise GalSimValueError(
            "encoding with a flux model needs each stamp's pixel scale (scales=): it is the "
            "galaxy's size",
            None,
        )
    k, s = model.latent_dim, model.stamp_size
    out = {
        "row": np.asarray(rows if rows is not None else np.arange(n), dtype=np.int64),
        "ident": np.asarray(idents if idents is not None else np.arange(n), dtype=np.int64),
        "mu": np.full((n, k), np.nan),
        "sigma": np.full((n, k), np.nan),
        "chi2_per_pixel": np.full(n, np.nan),
        "noise_sigma": np.full(n, np.nan),
        "snr": np.full(n, np.nan),
        "width_pix": np.full(n, np.nan),
        "nonuniformity": np.full(n, np.nan),
        "flag": np.zeros(n, dtype=bool),
        "reason": np.full(n, "", dtype="<U64"),
    }
    # The constants that return a decoded stamp to flux units (VAEGalaxy's norm_min/norm_max,
    # or flux), so that a galaxy built from a row has the flux of the stamp it came from.
    for k in ("norm_min", "norm_max") if model.representation == "minmax" else ("flux",):
        out[k] = np.full(n, np.nan)
    out["pixel_scale"] = np.asarray(
        np.full(n, model.pixel_scale) if scales is None else scales, dtype=float
    )
    good, stack = [], []
    measured = {}  # each stamp's metrics, measured once (when not given)

    def metrics_of(i, a):
        if metrics is not None:
            return {c: float(metrics[c][i]) for c in _METRICS}
        if i not in measured:
            measured[i] = stamp_metrics(a)
        return measured[i]

    for i, img in enumerate(images):
        if img is None or isinstance(img, str):
            out["flag"][i], out["reason"][i] = True, (img or "missing image")[:64]
            continue
        a = np.asarray(img, dtype=float)
        if a.shape != (s, s):
            out["flag"][i], out["reason"][i] = True, f"wrong stamp shape {a.shape}"[:64]
        elif not np.all(np.isfinite(a)):
            out["flag"][i], out["reason"][i] = True, "NaN or infinite pixels"
        elif a.max() <= a.min():
            out["flag"][i], out["reason"][i] = True, "constant stamp"
        elif model.representation == "flux" and not a.sum() > 0:
            out["flag"][i], out["reason"][i] = True, "flux not positive"
        elif model.representation == "flux" and not a.sum() >= MIN_FLUX_SNR * s * float(
            metrics_of(i, a)["noise_sigma"]
        ):
            # Divided by a flux of noise the stamp is amplified noise: no galaxy to encode.
            out["flag"][i] = True
            out["reason"][i] = f"flux below {MIN_FLUX_SNR:g} sigma of the stamp's noise"
        else:
            good.append(i)
            stack.append(a)
    if good:
        x = np.array(stack)
        enc = model.encode(x)
        constants = {k: v for k, v in enc.items() if k not in ("mu", "sigma")}
        g = np.array(good)
        ok = np.abs(enc["mu"]).max(axis=1) <= MAX_LATENT
        if refine and ok.any():
            sig = np.array([metrics_of(i, a)["noise_sigma"] for i, a in zip(good, x)])
            enc["mu"][ok] = get_model(model_file).refine_latents(
                enc["mu"][ok], x[ok], sig[ok], steps=refine
            )
        out["mu"][g], out["sigma"][g] = enc["mu"], enc["sigma"]
        for k, v in constants.items():
            out[k][g] = v
        # A stamp whose flux is a small difference of noise (a flux model divides by it) encodes
        # far outside the latent space; VAEGalaxy refuses such latents, so the row says so (and
        # has no reconstruction).
        near = np.abs(enc["mu"]).max(axis=1) <= MAX_LATENT
        rec = np.full(x.shape, np.nan)
        if near.any():
            # The reconstruction chi2 is a quality measure: always the float32 decoder (a
            # bfloat16 one is off by up to ~5% of a bright stamp's peak).
            rec[near] = get_model(model_file).decode_flux(
                enc["mu"][near], **{k: v[near] for k, v in constants.items()}
            )
        for j, (i, a) in enumerate(zip(good, x)):
            m = metrics_of(i, a)
            for c in _METRICS:
                out[c][i] = m[c]
            if not near[j]:
                out["flag"][i] = True
                out["reason"][i] = f"latent beyond +-{MAX_LATENT:g} (flux near zero or noise)"
                continue
            sig = m["noise_sigma"] if m["noise_sigma"] > 0 else np.nan
            out["chi2_per_pixel"][i] = np.mean((rec[j] - a) ** 2) / sig**2
    return out


def _catalog_chunk(
    catalog_file, indices, stamp_size, pixel_scale, seed, model_file, precision, refine=0
):
    """Draw and encode one chunk of a RealGalaxyCatalog (runs in a worker)."""
    rgc = _open_rgc(catalog_file)
    images, idents = [], []
    mets = {c: [] for c in _METRICS}
    for i in indices:
        try:
            r = real_stamp(
                rgc,
                i,
                stamp_size=stamp_size,
                pixel_scale=pixel_scale,
                rng=galsim.BaseDeviate(item_seed(seed, i)),
            )
            images.append(r["image"])
            idents.append(r["row"]["ident"])
            for c in _METRICS:
                mets[c].append(r["row"][c])
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            images.append(f"{type(e).__name__}: {e}")
            idents.append(-1)
            for c in _METRICS:
                mets[c].append(np.nan)
    scales = np.full(len(indices), float(pixel_scale))
    return encode_stamps(
        images,
        model_file,
        idents=idents,
        rows=indices,
        metrics=mets,
        scales=scales,
        precision=precision,
        refine=refine,
    )


_rgc_cache = {}


def _open_rgc(path):
    if path not in _rgc_cache:
        _rgc_cache[path] = galsim.RealGalaxyCatalog(str(path))
    return _rgc_cache[path]


def _dataset_chunk(path, indices, model_file, precision, refine=0):
    with fits.open(path, memmap=True) as h:
        sl = slice(indices[0], indices[-1] + 1)
        imgs = np.asarray(h["STAMPS"].section[sl], dtype=float)
        cat = h["CATALOG"].data[sl]
        ident = np.asarray(cat["ident"])
        mets = {c: np.asarray(cat[c], dtype=float) for c in _METRICS}
        scales = np.asarray(cat["pixel_scale"], dtype=float)
    return encode_stamps(
        list(imgs),
        model_file,
        idents=ident,
        rows=indices,
        metrics=mets,
        scales=scales,
        precision=precision,
        refine=refine,
    )


def _source(path):
    """('dataset', path, n) or ('catalog', catalog_file, n)."""
    p = Path(path)
    if is_dataset_file(p):
        # A truncated or corrupt file, or a newer format, is refused here, before any chunk.
        return "dataset", str(p), check_dataset_file(p)
    if not p.exists():
        raise GalSimValueError(
            "Input not found: neither a dataset file nor a COSMOS catalog file or folder", str(p)
        )
    rgc = open_catalog(path)
    return "catalog", str(rgc.file_name), int(rgc.nobjects)


def _connect(scheduler):
    try:
        from distributed import Client
    except ImportError as e:  # pragma: no cover - dask is an optional extra
        raise GalSimValueError(
            "scheduler given but dask.distributed is not installed; pip install 'galsim_vae[dask]'",
            scheduler,
        ) from e
    if not isinstance(scheduler, str):
        return scheduler  # a Client or a LocalCluster-like object already
    try:
        return Client(scheduler, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise GalSimValueError(f"Cannot reach the Dask scheduler ({e})", scheduler) from e


def encode_catalog(
    source,
    out,
    *,
    model=None,
    chunk_size=2048,
    stamp_size=64,
    pixel_scale=0.03,
    seed=DEFAULT_SEED,
    scheduler=None,
    nproc=None,
    precision="auto",
    refine=0,
    progress=True,
):
    """Encode every stamp of ``source`` and write the latents table ``out`` (FITS).

    Parameters:
        source: a dataset file or a COSMOS catalog (file or folder).
        out: output FITS table.
        model: weights file; the shipped model when None. [default: None]
        chunk_size: rows per chunk (the unit of work, of resumption and of Dask tasks).
            [default: 2048]
        stamp_size, pixel_scale, seed: stamp drawing for catalog inputs. [default: 64, 0.03, 1234]
        scheduler: a Dask scheduler address (or a ``distributed.Client``); local when None.
            [default: None]
        nproc: local processes drawing catalog stamps; all cores when None. [default: None]
        precision: the encoder's arithmetic (:class:`~galsim_vae.VAEModel`); ``"auto"`` is
            resolved here, on the machine that runs this function, once, so that every chunk
            (and every Dask worker) uses the same; Dask workers of another CPU type run what it
            chose. The reconstruction chi2 always decodes in float32.
            [default: "auto": bfloat16 where it measures faster on this machine]
        refine: flux models: each latent moved from the encoder's mean to its posterior mode
            in this many steps (:meth:`~galsim_vae.VAEModel.refine_latents`; 100 is the
            library's default), at a cost of that many decoder passes and their gradients per
            stamp; the table's ``REFINE`` keyword says how many. 0 keeps the encoder's means.
            [default: 0]
        progress: show a progress bar. [default: True]

    Returns:
        astropy.table.Table: the written table.
    """
    model_file = None if model is None else str(model)
    # Fails early on a bad model file; resolves "auto" on this machine.
    precision = get_model(model_file, precision=precision).precision
    refine = int(refine)
    if refine < 0:
        raise GalSimRangeError("refine is a number of steps", refine, 0)
    if refine and get_model(model_file).representation != "flux":
        raise GalSimValueError("refine needs a flux model", get_model(model_file).representation)
    kind, path, n = _source(source)
    client = _connect(scheduler) if scheduler is not None else None
    own_client = client is not None and isinstance(scheduler, str)  # ours to close
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    # What the saved chunks are of: a leftover folder of another run (other input, model,
    # chunking or drawing) is never mixed into this one.
    run = {
        "source": str(Path(path).resolve()),
        "kind": kind,
        "n_rows": int(n),
        "chunk_size": int(chunk_size),
        "model_sha256": get_model(model_file).metadata["sha256"],
        "stamp_size": int(stamp_size),
        "pixel_scale": float(pixel_scale),
        "seed": int(seed),
        "precision": precision,
        "refine": refine,
    }
    parts.mkdir(parents=True, exist_ok=True)
    with locked_dir(parts, out, what="encode"):  # first: a run in progress is named as such
        record_run(
            parts,
            run,
            "chunks of another encoding run",
            "rerun with that run's settings to finish it, or remove the folder",
        )
        chunks = [list(range(a, min(a + chunk_size, n))) for a in range(0, n, chunk_size)]
        todo = [(k, c) for k, c in enumerate(chunks) if not (parts / f"{k:06d}.npz").is_file()]
        bar = tqdm(
            total=len(chunks),
            initial=len(chunks) - len(todo),
            desc="encoding",
            unit="chunk",
            disable=not progress,
        )

        def save(k, res):
            with atomic_path(parts / f"{k:06d}.npz") as tmp, open(tmp, "wb") as f:
                np.savez(f, **res)
            bar.update(1)

        def task(c):
            if kind == "dataset":
                return _dataset_chunk, (path, c, model_file, precision, refine)
            args = (path, c, stamp_size, pixel_scale, seed, model_file, precision, refine)
            return _catalog_chunk, args

        try:
            if client is not None:
                from distributed import as_completed

                futs = {client.submit(task(c)[0], *task(c)[1], pure=False): k for k, c in todo}
                for fut in as_completed(futs, loop=client.loop):
                    save(futs[fut], fut.result())
            elif kind == "catalog" and (nproc or 2) > 1 and len(todo) > 1:
                with spawn_pool(nproc or default_nproc()) as pool:
                    jobs = [(k, pool.apply_async(task(c)[0], task(c)[1])) for k, c in todo]
                    for k, j in jobs:
                        save(k, j.get())
            else:
                for k, c in todo:
                    f, args = task(c)
                    save(k, f(*args))
        finally:
            bar.close()
            if own_client:
                client.close()
        cols = {}
        for k in range(len(chunks)):
            with np.load(parts / f"{k:06d}.npz", allow_pickle=False) as d:
                for c in d.files:
                    cols.setdefault(c, []).append(d[c])
        table = Table({c: np.concatenate(v) for c, v in cols.items()})
        table.meta["MODEL"] = Path(get_model(model_file).file_name).name
        table.meta["SOURCE"] = Path(path).name
        table.meta["PRECISN"] = precision
        table.meta["REFINE"] = refine
        with atomic_path(out) as tmp:
            table.write(tmp, format="fits")
        shutil.rmtree(parts)  # the table is written: its chunks (and the lock) go
    return table
