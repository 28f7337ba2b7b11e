"""The on-disk dataset of galaxy stamps, its train/validation/test split, and a torch Dataset.

A dataset is one FITS file that any FITS reader opens without this package:

- HDU 0 (primary): no data; the header records the format (``GVFORMAT``), the writing library and
  its version, the stamp size, the scale mode, the seed and the quality cuts.
- HDU ``STAMPS``: float32 cube ``(N, S, S)`` of the stamps in flux units (the catalog's units,
  COSMOS: counts/s per pixel), galaxy centre on pixel ``(S/2, S/2)`` (0-based).
- HDU ``CATALOG``: binary table, one row per stamp (columns below).
- HDU ``PSFS``: float32 cube of the PSF images at the stamps' scale, unit flux; the ``psf_index``
  column points into it.
- HDU ``TRUTH`` (simulated sets): float32 cube of the noiseless stamps, the same galaxies without
  noise (:func:`read_truths`). The truth's chi2 against its stamp is the floor of any
  reconstruction.

Columns always present: ``ident``, ``source``, ``pixel_scale`` (arcsec/px), ``flux`` (sum of the
stamp), ``flux_total`` (the galaxy's total flux), ``flux_fraction``, ``noise_sigma``, ``snr``,
``width_pix``, ``width_arcsec``, ``nonuniformity``, ``norm_min``, ``norm_max``, ``passes``
(inside every quality cut), ``split`` (``train``, ``valid``, ``test`` or empty for rows that fail
the cuts) and ``psf_index``. Simulated sets add their true parameters (``hlr``,
``bulge_fraction``, ...).

Files are written to a temporary name in the same folder and renamed when complete: an interrupted
run never leaves a file that looks finished.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from astropy.io import fits
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning

from .._utils import atomic_path
from .._version import __version__
from ..errors import (
    GalSimError,
    GalSimIncompatibleValuesError,
    GalSimRangeError,
    GalSimValueError,
    GalSimWarning,
)
from ..psf import F814W_ZEROPOINT
from ..stamp import REPRESENTATIONS, flux_normalize, normalize
from .metrics import QualityCuts

__all__ = [
    "FORMAT_VERSION",
    "SPLITS",
    "SELECTIONS",
    "StampDataset",
    "assign_splits",
    "select_split",
    "select_with_low_snr",
    "low_snr_rows",
    "MIN_FLUX_SNR",
    "dataset_summary",
    "write_dataset",
    "write_dataset_parts",
    "read_dataset",
    "read_truths",
    "check_dataset_header",
    "is_dataset_file",
]

#: Version of the dataset file layout; bumped when it changes incompatibly.
FORMAT_VERSION = 1

#: How real postage stamps are made into stamps, recorded in every file written (``REALSTMP``):
#: 2 = their pixels as observed (since 2026-11-27). A file of real stamps without it was made
#: by an older galsim_vae, which interpolated them half a pixel off their grid (smoothed, the
#: noise read 15% low): :func:`read_dataset` warns.
REAL_STAMPS_VERSION = 2
#: The split labels of the ``split`` column.
SPLITS = ("train", "valid", "test")
#: What :func:`select_split` takes: a split, every row passing the cuts, or every row.
SELECTIONS = SPLITS + ("passes", "all")


def select_split(table, split):
    """Boolean mask of the rows of ``table`` in ``split`` (one of :data:`SELECTIONS`).

    ``train``, ``valid`` and ``test`` are the labels of the ``split`` column; ``passes`` is every
    row inside the quality cuts, ``all`` every row.
    """
    if split not in SELECTIONS:
        raise GalSimValueError("Unknown split", split, SELECTIONS)
    if split == "all":
        return np.ones(len(table), dtype=bool)
    if split == "passes":
        return np.asarray(table["passes"], dtype=bool)
    return np.asarray(table["split"]) == split


def _cut_card(field):
    """The header card of a :class:`QualityCuts` field (as :func:`write_dataset` names it)."""
    return ("C_" + field.replace("_", "")[:6]).upper()


def cuts_from_header(header, path=None) -> QualityCuts:
    """The :class:`QualityCuts` a dataset file was written with (its ``C_*`` header cards)."""
    kw = {}
    for field in QualityCuts().as_dict():
        card = _cut_card(field)
        if card in header:
            v = header[card]
            kw[field] = float(v) if not isinstance(v, str) else float(v.strip())
    if not kw:
        raise GalSimValueError("the dataset file records no quality cuts", path)
    return QualityCuts(**kw)


#: The least signal-to-noise ratio of a stamp's summed flux (its sum over ``noise_sigma`` times
#: the stamp side, the noise of a sum of ``S * S`` pixels) for a row below the SNR cut to be used
#: (:func:`low_snr_rows`): dividing a stamp by a flux measured at less than this turns it into
#: amplified noise. It keeps nearly every such row brighter than F814W 24 in our simulations.
MIN_FLUX_SNR = 5.0


def low_snr_rows(table, header, images) -> np.ndarray:
    """Rows that fail the quality cuts by their SNR alone, with a summed flux measured at
    :data:`MIN_FLUX_SNR` or better: faint galaxies the cuts remove, which a population model
    (the network, the latent density) should not miss."""
    cuts = cuts_from_header(header)
    loose = QualityCuts(**dict(cuts.as_dict(), min_snr=0.0))
    images = np.asarray(images)
    flux = images.sum(axis=(1, 2), dtype=np.float64)
    noise = np.asarray(table["noise_sigma"], dtype=np.float64) * images.shape[-1]
    measured = flux >= MIN_FLUX_SNR * noise
    return loose.passes(table) & ~np.asarray(table["passes"], dtype=bool) & measured


#: Seed of the draw that labels the rows below the SNR cut train/valid/test
#: (:func:`select_with_low_snr`): fixed, so that a model trained with them and a density fitted
#: with them agree on which are held out.
LOW_SNR_SEED = 0


def select_with_low_snr(
    table, header, images, split, *, brighter_than=None
) -> tuple[np.ndarray, int]:
    """``split``'s rows and the rows below the SNR cut (:func:`low_snr_rows`) that fall in it.

    The low-SNR rows are labelled train/valid/test in the shares the passing rows have, by one
    seeded draw (:data:`LOW_SNR_SEED`), so that the splits' low-SNR rows are disjoint and the
    same in every command; ``passes`` takes them all; ``all`` is refused (it has them already).
    ``brighter_than`` (an F814W magnitude of the row's ``flux_total``, else ``flux``) keeps only
    the low-SNR rows brighter than that (the shipped density's rows: 23.5).

    Returns:
        (mask, n_added): the boolean row mask, and how many low-SNR rows it added.
    """
    if split == "all":
        raise GalSimIncompatibleValuesError(
            "the rows below the SNR cut are added to a split; 'all' has them already",
            split=split,
        )
    sel = select_split(table, split).copy()
    low = np.flatnonzero(low_snr_rows(table, header, images))
    passes = np.asarray(table["passes"], dtype=bool)
    labels = np.asarray(table["split"])[passes]
    bounds = np.cumsum([np.mean(labels == sp) for sp in SPLITS])
    u = np.random.default_rng(LOW_SNR_SEED).random(len(low))
    lab = np.asarray(SPLITS)[np.minimum(np.searchsorted(bounds, u, "right"), len(SPLITS) - 1)]
    pick = np.ones(len(low), dtype=bool) if split == "passes" else lab == split
    if brighter_than is not None:
        total = table["flux_total"] if "flux_total" in table.colnames else table["flux"]
        with np.errstate(divide="ignore", invalid="ignore"):
            mag = -2.5 * np.log10(np.asarray(total, dtype=float)[low]) + F814W_ZEROPOINT
        pick &= ~(mag >= brighter_than)  # a flux that is not positive has no magnitude: kept
    sel[low[pick]] = True
    return sel, int(pick.sum())


def dataset_summary(path, table, train=None, valid=None) -> dict:
    """What a model records about its training data: file, sources, split sizes, the median
    pixel scale, normalisation constants, flux and noise of the training rows (``train``, a
    row mask; the ``train`` split by default; ``valid`` likewise)."""
    sel = select_split(table, "train") if train is None else np.asarray(train, dtype=bool)
    val = select_split(table, "valid") if valid is None else np.asarray(valid, dtype=bool)
    if not sel.any():
        raise GalSimValueError("The dataset has no training rows", str(path))
    return {
        "file": Path(path).name,
        "sources": sorted(set(np.asarray(table["source"])[sel])),
        "n_train": int(sel.sum()),
        "n_valid": int(val.sum()),
        "pixel_scale": float(np.median(table["pixel_scale"][sel])),
        "median_norm_min": float(np.median(table["norm_min"][sel])),
        "median_norm_max": float(np.median(table["norm_max"][sel])),
        "median_noise_sigma": float(np.median(table["noise_sigma"][sel])),
        "median_flux": float(np.median(table["flux"][sel])),
        "pixel_scale_range": [
            float(np.min(table["pixel_scale"][sel])),
            float(np.max(table["pixel_scale"][sel])),
        ],
    }


def assign_splits(passes, *, seed=1234, valid=0.1, test=0.1, multiple=1):
    """Deterministic train/valid/test labels for the rows that pass the cuts.

    Parameters:
        passes: boolean mask of usable rows.
        seed: seed of the shuffle. [default: 1234]
        valid: validation size, a fraction (< 1) or a number of rows. [default: 0.1]
        test: test size, a fraction (< 1) or a number of rows. [default: 0.1]
        multiple: round each split down to a multiple of this (the paper used multiples of its
            batch size, 32). [default: 1]

    Returns:
        numpy.ndarray: strings ``train``/``valid``/``test``, empty where ``passes`` is False.
    """
    passes = np.asarray(passes, dtype=bool)
    n = int(passes.sum())

    def count(x, name):
        if x < 0:
            raise GalSimRangeError(f"{name} split size must not be negative", x, 0)
        k = int(round(x * n)) if x < 1 else int(x)
        return (k // multiple) * multiple

    nv, nt = count(valid, "valid"), count(test, "test")
    if nv + nt > n:
        raise GalSimValueError(f"valid + test ({nv} + {nt}) exceed the {n} usable rows", nv + nt)
    ntr = ((n - nv - nt) // multiple) * multiple
    order = np.flatnonzero(passes)[np.random.default_rng(seed).permutation(n)]
    out = np.full(passes.shape, "", dtype="<U5")
    out[order[:nt]] = "test"
    out[order[nt : nt + nv]] = "valid"
    out[order[nt + nv : nt + nv + ntr]] = "train"
    return out


def write_dataset(
    path,
    images,
    rows,
    *,
    psfs=None,
    truths=None,
    cuts=None,
    seed=1234,
    valid=0.1,
    test=0.1,
    multiple=1,
    meta=None,
):
    """Apply the quality cuts, split, and write a dataset file atomically.

    Parameters:
        path: output FITS file.
        images: ``(N, S, S)`` stamps in flux units.
        rows: list of dicts (one per stamp) or a mapping of columns.
        psfs: PSF cube that ``psf_index`` points into. [default: None]
        truths: ``(N, S, S)`` noiseless stamps (simulations). [default: None]
        cuts: :class:`QualityCuts`. [default: QualityCuts()]
        seed, valid, test, multiple: see :func:`assign_splits`.
        meta: extra header keywords (str -> scalar). [default: None]

    Returns:
        astropy.table.Table: the written catalog.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise GalSimValueError("images must be a (N, S, S) cube", images.shape)
    table = Table(rows=rows) if isinstance(rows, list) else Table(rows)
    if len(table) != len(images):
        raise GalSimValueError("one row per image is needed", (len(table), len(images)))
    table, hdr = _table_and_header(
        table,
        images.shape[1],
        have_psfs=psfs is not None and len(psfs) == len(table),
        cuts=cuts,
        seed=seed,
        valid=valid,
        test=test,
        multiple=multiple,
        meta=meta,
    )
    hdus = [
        fits.PrimaryHDU(header=hdr),
        fits.ImageHDU(images, name="STAMPS"),
        fits.BinTableHDU(table, name="CATALOG"),
    ]
    if psfs is not None:
        hdus.append(fits.ImageHDU(np.asarray(psfs, dtype=np.float32), name="PSFS"))
    if truths is not None:
        truths = np.asarray(truths, dtype=np.float32)
        if truths.shape != images.shape:
            raise GalSimValueError("truths must have the images' shape", truths.shape)
        hdus.append(fits.ImageHDU(truths, name="TRUTH"))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)
    return table


def _table_and_header(table, stamp_size, *, have_psfs, cuts, seed, valid, test, multiple, meta):
    """The catalog with its ``passes``, ``split`` and ``psf_index`` columns, and the primary
    header, as every dataset file has them."""
    cuts = QualityCuts() if cuts is None else cuts
    if "psf_index" not in table.colnames:
        table["psf_index"] = np.arange(len(table)) if have_psfs else -1
    table["passes"] = cuts.passes(table)
    if not table["passes"].any():
        raise GalSimValueError("No stamp passes the quality cuts", cuts.as_dict())
    table["split"] = assign_splits(
        table["passes"], seed=seed, valid=valid, test=test, multiple=multiple
    )
    hdr = fits.Header()
    hdr["GVFORMAT"] = (FORMAT_VERSION, "galsim_vae dataset format version")
    hdr["CREATOR"] = "galsim_vae"
    hdr["GVVERS"] = (__version__, "galsim_vae version that wrote the file")
    hdr["STAMPSZ"] = (stamp_size, "stamp side, pixels")
    hdr["NSTAMPS"] = len(table)
    hdr["NPASS"] = int(table["passes"].sum())
    hdr["SPLITSD"] = (seed, "seed of the train/valid/test split")
    hdr["REALSTMP"] = (REAL_STAMPS_VERSION, "real stamps: 2 = pixels as observed")
    for k, v in cuts.as_dict().items():
        val = float(v) if np.isfinite(v) else ("inf" if v > 0 else "-inf")
        hdr[_cut_card(k)] = (val, k)
    for k, v in (meta or {}).items():
        hdr[k[:8].upper()] = v
    return table, hdr


def write_dataset_parts(
    path, parts, table, *, cuts=None, seed=1234, valid=0.1, test=0.1, multiple=1, meta=None
):
    """Write a dataset file from stamps saved in parts, streamed: memory holds one part.

    The same file as :func:`write_dataset` of the concatenated stamps (one PSF per stamp):
    the same HDUs in the same order, the same table and header.

    Parameters:
        path: output FITS file (written to a temporary name, renamed when complete).
        parts: ``.npz`` files in row order, each with ``images`` and ``psfs`` ``(n, S, S)``.
        table: the rows of all parts, in order (an astropy Table).
        cuts, seed, valid, test, multiple, meta: as :func:`write_dataset`.

    Returns:
        astropy.table.Table: the written catalog.
    """
    shapes = []
    for f in parts:
        with np.load(f, allow_pickle=False) as d:
            shapes.append((d["images"].shape, d["psfs"].shape))
    n = sum(a[0] for a, _ in shapes)
    if n != len(table) or sum(b[0] for _, b in shapes) != n:
        raise GalSimValueError("the parts hold another number of stamps than rows", (n, len(table)))
    size = shapes[0][0][1]
    table, hdr = _table_and_header(
        table,
        size,
        have_psfs=True,
        cuts=cuts,
        seed=seed,
        valid=valid,
        test=test,
        multiple=multiple,
        meta=meta,
    )
    psf_shape = shapes[0][1][1:]

    def stream(tmp, name, key, shape):
        h = fits.ImageHDU(np.zeros((1, *shape), np.float32), name=name).header
        h["NAXIS3"] = n
        out = fits.StreamingHDU(tmp, h)
        for f in parts:
            with np.load(f, allow_pickle=False) as d:
                out.write(np.ascontiguousarray(d[key], dtype=np.float32))
        out.close()

    # The HDUs in write_dataset's order: STAMPS, CATALOG, PSFS.
    with atomic_path(path) as tmp:
        tmp = str(tmp)  # StreamingHDU appends to a file given by name (str), not by Path
        fits.PrimaryHDU(header=hdr).writeto(tmp)
        stream(tmp, "STAMPS", "images", (size, size))
        with fits.open(tmp, mode="append") as h:
            h.append(fits.BinTableHDU(table, name="CATALOG"))
        stream(tmp, "PSFS", "psfs", psf_shape)
    return table


def is_dataset_file(path) -> bool:
    """Whether ``path`` is a galsim_vae dataset file (any version), as opposed to a catalog."""
    p = Path(path)
    if not p.is_file():
        return False
    try:  # the primary header alone: a truncated dataset is still one (and refused when read)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)  # "may have been truncated"
            return fits.getheader(p, 0).get("CREATOR") == "galsim_vae"
    except (OSError, IndexError):
        return False


def check_dataset_header(h, p):
    """Refuse an open FITS file ``h`` (path ``p``) that is not a dataset of a format we read."""
    hdr = h[0].header
    if hdr.get("CREATOR") != "galsim_vae" or "GVFORMAT" not in hdr:
        raise GalSimValueError("Not a galsim_vae dataset file", str(p))
    if hdr["GVFORMAT"] > FORMAT_VERSION:
        raise GalSimValueError(
            f"Dataset format {hdr['GVFORMAT']} is newer than this galsim_vae "
            f"({FORMAT_VERSION}); upgrade the package",
            hdr["GVFORMAT"],
        )


def _read(path, read, memmap=False):
    """Open a dataset file, check its header, and return ``read(hdulist)``."""
    p = Path(path)
    if not p.is_file():
        raise GalSimValueError("Dataset file not found", str(p))
    try:
        with warnings.catch_warnings():
            # astropy only warns that a file "may have been truncated"; here it is an error.
            warnings.simplefilter("error", AstropyUserWarning)
            # The file object is ours to close: astropy leaves its own open when the
            # truncation warning is raised while it reads an extension's header.
            with open(p, "rb") as fh, fits.open(fh, memmap=memmap) as h:
                check_dataset_header(h, p)
                return read(h)
    except GalSimError:
        raise
    except (OSError, KeyError, IndexError, TypeError, ValueError, AstropyUserWarning) as e:
        raise GalSimValueError(
            f"Cannot read dataset file, truncated or corrupt ({e})", str(p)
        ) from e


def check_dataset_file(path) -> int:
    """Check that a dataset file can be read without reading its stamps: its header, its table
    and its last stamp (what ``encode`` reads; the PSF and truth cubes are not checked); returns
    the number of stamps."""

    def read(h):
        n = int(h["STAMPS"].header["NAXIS3"])
        np.asarray(h["STAMPS"].section[n - 1])
        len(h["CATALOG"].data)
        return n

    return _read(path, read, memmap=True)


def read_dataset(path):
    """Read a dataset file.

    Returns:
        tuple: ``(images, table, psfs, header)``; ``psfs`` is None when the file has none.
    """

    def read(h):
        images = np.asarray(h["STAMPS"].data, dtype=np.float32)
        table = Table(h["CATALOG"].data)
        psfs = np.asarray(h["PSFS"].data) if "PSFS" in h else None
        return images, table, psfs, h[0].header.copy()

    images, table, psfs, hdr = _read(path, read)
    for c in table.colnames:
        if table[c].dtype.kind in "SU":
            table[c] = np.char.strip(np.asarray(table[c]).astype(str))
    real = "source" in table.colnames and np.any(np.asarray(table["source"]) == "cosmos_real")
    if real and hdr.get("REALSTMP", 1) < REAL_STAMPS_VERSION:
        warnings.warn(
            f"{path} holds real stamps made before 2026-11-27, interpolated half a pixel off "
            "their postage stamps' grid (smoothed, their noise read 15% low): make it again "
            "with galsim-vae dataset",
            GalSimWarning,
            stacklevel=2,
        )
    return images, table, psfs, hdr


def read_truths(path):
    """The noiseless stamps of a simulated dataset file (``(N, S, S)`` float32), or None."""
    return _read(
        path, lambda h: np.asarray(h["TRUTH"].data, dtype=np.float32) if "TRUTH" in h else None
    )


class StampDataset:
    """A split of a dataset file as a ``torch.utils.data.Dataset`` of normalised stamps.

    Items are ``float32`` tensors of shape ``(1, S, S)`` in the chosen representation
    (:data:`galsim_vae.stamp.REPRESENTATIONS`): in [0, 1] (``"minmax"``,
    :func:`galsim_vae.normalize`) or divided by their flux (``"flux"``,
    :func:`galsim_vae.stamp.flux_normalize`). ``sigma``
    holds each stamp's noise sigma in the same units (the ``noise_sigma`` column, scaled as the
    stamp was).

    Parameters:
        path: dataset file (or a tuple ``(images, table)``, or ``(images, table, truths)``,
            already in memory).
        split: ``train``, ``valid``, ``test``, ``passes`` (every usable row) or ``all``, or
            a boolean row mask (:func:`select_with_low_snr`). [default: "train"]
        representation: ``"minmax"`` or ``"flux"``. [default: "minmax"]
        truth: also load the noiseless truths of a simulated file (its ``TRUTH`` HDU), scaled
            exactly as their noisy stamps were (``truth`` attribute, same shape as ``images``);
            for training with the noiseless target (:func:`galsim_vae.training.loop.train`).
            With ``path`` a tuple, its third item holds them. [default: False]
    """

    def __init__(self, path, split="train", representation="minmax", *, truth=False):
        mask = None
        if isinstance(split, np.ndarray):  # a row mask (e.g. select_with_low_snr's)
            mask, split = np.asarray(split, dtype=bool), "all"
        if split not in SELECTIONS:  # before reading the file
            raise GalSimValueError("Unknown split", split, SELECTIONS)
        if representation not in REPRESENTATIONS:
            raise GalSimValueError("Unknown representation", representation, REPRESENTATIONS)
        truths = None
        if isinstance(path, tuple):
            images, table = path[0], path[1]
            truths = path[2] if truth and len(path) > 2 else None
        else:
            images, table, _, _ = read_dataset(path)
            truths = read_truths(path) if truth else None
        if truths is not None and np.shape(truths) != np.shape(images):
            raise GalSimValueError("truths and stamps differ in shape", np.shape(truths))
        if truth and truths is None:
            raise GalSimValueError(
                "the dataset has no noiseless truths (only simulated sets written by "
                "`galsim-vae simulate` have them)",
                None if isinstance(path, tuple) else str(path),
            )
        sel = select_split(table, split)
        if mask is not None:
            if mask.shape != sel.shape:
                raise GalSimValueError("the row mask does not match the table", mask.shape)
            sel = mask
        if not sel.any():
            raise GalSimValueError("The split is empty", split)
        self.table = table[sel]
        self.representation = representation
        noise = np.asarray(self.table["noise_sigma"], dtype=float)
        if representation == "minmax":
            self.images, self.vmin, self.vmax = normalize(images[sel])
            self.sigma = noise / (self.vmax - self.vmin)
            scale = 1.0 / (self.vmax - self.vmin)
            offset = -self.vmin * scale
        else:
            self.images, self.flux = flux_normalize(images[sel])
            self.sigma = noise * images.shape[-1] / self.flux
            scale, offset = images.shape[-1] / self.flux, 0.0
        self.images = self.images.astype(np.float32)
        self.sigma = self.sigma.astype(np.float32)
        self.truth = None
        if truth:  # the noisy stamp's own constants: the target of the same normalised stamp
            t = np.asarray(truths)[sel].astype(np.float64)
            s = np.reshape(scale, (-1, 1, 1))
            self.truth = (t * s + np.reshape(offset, (-1, 1, 1))).astype(np.float32)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return torch.from_numpy(self.images[i][None])

    def tensor(self):
        """All items as one ``(N, 1, S, S)`` float32 tensor (no augmentation)."""
        return torch.from_numpy(self.images[:, None])

    def truth_tensor(self):
        """The noiseless truths, normalised as the stamps, ``(N, 1, S, S)`` float32; None when
        not loaded."""
        return None if self.truth is None else torch.from_numpy(self.truth[:, None])

    def sigma_tensor(self):
        """Each item's noise sigma, in the items' units, as an ``(N,)`` float32 tensor."""
        return torch.from_numpy(self.sigma)
