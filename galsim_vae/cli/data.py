"""``galsim-vae dataset``, ``simulate`` and ``encode``: the data pipeline's commands."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from astropy.io import fits

from ..errors import GalSimValueError
from ..model import PRECISIONS
from ..pipeline.cosmos import build_dataset
from ..pipeline.dataset import is_dataset_file, read_dataset, write_dataset
from ..pipeline.encode import encode_catalog
from ..pipeline.simulator import simulate
from ..pipeline.stamps import DEFAULT_SEED, open_catalog
from ..studies.plots import plot_metric_comparison, plot_metrics
from ._common import (
    add_cuts,
    add_model_option,
    add_overwrite_option,
    check_output,
    count,
    cuts,
    model_arg,
    positive,
)

__all__ = ["add_commands"]


def _catalog_files(path):
    """Every file a COSMOS catalog (file or folder) reads: none of them is ever an output."""
    rgc = open_catalog(path)
    files = {rgc.file_name, *rgc.gal_file_name, *rgc.psf_file_name}
    return files | (set(rgc.noise_file_name) if rgc.noise_file_name is not None else set())


def _check_figure(fig, out, inputs):
    if Path(fig).resolve() == Path(out).resolve() or any(
        Path(i).resolve() == Path(fig).resolve() for i in inputs if i is not None
    ):
        raise GalSimValueError("the figure would replace the dataset or an input", str(fig))


def _cmd_dataset(a):
    inputs = _catalog_files(a.catalog)
    check_output(a.out, inputs, overwrite=a.overwrite)
    _check_figure(Path(a.figure) if a.figure else Path(a.out).with_suffix(".png"), a.out, inputs)
    table, errors = build_dataset(
        a.out,
        a.catalog,
        stamp_size=a.stamp_size,
        pixel_scale=a.pixel_scale,
        scale_mode=a.scale_mode,
        seed=a.seed,
        cuts=cuts(a),
        split_seed=a.split_seed,
        valid=a.valid,
        test=a.test,
        multiple=a.multiple,
        chunk_size=a.chunk_size,
        nproc=a.nproc,
        progress=not a.quiet,
    )
    for i, reason in errors:
        print(f"row {i} skipped: {reason}", file=sys.stderr)
    fig = Path(a.figure) if a.figure else Path(a.out).with_suffix(".png")
    with fits.open(a.out, memmap=True) as h:  # the figure reads the few stamps it shows
        plot_metrics(h["STAMPS"].data, table, fig, title=f"{Path(a.out).name}: {len(table)} stamps")
    print(
        f"wrote {a.out}: {len(table)} stamps, {int(table['passes'].sum())} pass the cuts; "
        f"figure {fig}"
    )
    return 0


def _cmd_simulate(a):
    check_output(a.out, [a.compare], overwrite=a.overwrite)
    stem = Path(a.out).with_suffix("")
    for fig in (f"{stem}.png", f"{stem}_vs_real.png"):
        _check_figure(fig, a.out, [a.compare])
    t0 = time.perf_counter()
    images, psfs, rows, _, truths = simulate(
        a.n,
        seed=a.seed,
        data_dir=a.data_dir,
        nproc=a.nproc,
        progress=not a.quiet,
        stamp_size=a.stamp_size,
        pixel_scale=a.pixel_scale,
        scale_mode=a.scale_mode,
        fit_radius=a.fit_radius,
        morphology=a.morphology,
        faint_size_slope=a.faint_size_slope,
    )
    dt = time.perf_counter() - t0
    meta = {
        "SEED": a.seed,
        "SCALEMOD": a.scale_mode,
        "MORPHOL": a.morphology,
        "FSLOPE": a.faint_size_slope,
        "SIMTIME": round(dt, 2),
    }
    table = write_dataset(
        a.out,
        images,
        rows,
        psfs=psfs,
        truths=None if a.no_truth else truths,
        cuts=cuts(a),
        seed=a.split_seed,
        valid=a.valid,
        test=a.test,
        multiple=a.multiple,
        meta=meta,
    )
    stem = Path(a.out).with_suffix("")
    plot_metrics(images, table, f"{stem}.png", title=f"{Path(a.out).name}: simulated")
    msg = f"wrote {a.out}: {len(table)} stamps in {dt:.1f} s, {int(table['passes'].sum())} pass"
    if a.compare:
        _, real, _, _ = read_dataset(a.compare)
        plot_metric_comparison(
            [table[table["passes"]], real[real["passes"]]],
            ["simulated", "real"],
            f"{stem}_vs_real.png",
            title="Metrics of stamps passing the cuts",
        )
        msg += f"; comparison {stem}_vs_real.png"
    print(msg)
    return 0


def _cmd_encode(a):
    if not Path(a.catalog).exists():
        raise GalSimValueError(
            "Input not found: neither a dataset file nor a COSMOS catalog file or folder",
            a.catalog,
        )
    inputs = {a.catalog} if is_dataset_file(a.catalog) else _catalog_files(a.catalog)
    check_output(a.out, [*inputs, model_arg(a)], overwrite=a.overwrite)
    t = encode_catalog(
        a.catalog,
        a.out,
        model=model_arg(a),
        chunk_size=a.chunk_size,
        scheduler=a.scheduler,
        nproc=a.nproc,
        precision=a.precision,
        refine=a.refine,
        progress=not a.quiet,
    )
    refined = f", latents refined in {a.refine} steps" if a.refine else ""
    print(
        f"wrote {a.out}: {len(t)} rows, {int(t['flag'].sum())} flagged "
        f"({t.meta['PRECISN']} network{refined})"
    )
    return 0


def add_commands(sub):
    """Add the data commands to the ``galsim-vae`` sub-parser ``sub``."""
    d = sub.add_parser(
        "dataset",
        help="stamps and metrics from a COSMOS RealGalaxyCatalog",
        description="Draw every galaxy of a COSMOS catalog into a stamp, measure "
        "its quality metrics, apply the cuts, split, and write a dataset file "
        "plus a Fig. 2-style PNG.",
    )
    d.add_argument(
        "catalog",
        nargs="?",
        default=None,
        help="catalog file or folder (default: $GALSIM_VAE_COSMOS, else GalSim's "
        "galsim_download_cosmos sample)",
    )
    d.add_argument("--out", required=True, help="output dataset (.fits)")
    d.add_argument("--figure", default=None, help="metrics PNG (default: OUT with .png)")
    d.add_argument("--stamp-size", type=int, default=64)
    d.add_argument("--pixel-scale", type=positive, default=0.03, help="arcsec/px (fixed mode)")
    d.add_argument("--scale-mode", choices=("fixed", "fit"), default="fixed")
    d.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the noise padding")
    d.add_argument(
        "--chunk-size",
        type=count(),
        default=2000,
        help="galaxies per chunk: the unit of resumption and of memory (default: 2000)",
    )
    d.add_argument("--nproc", type=int, default=None)
    d.add_argument("--quiet", action="store_true")
    add_overwrite_option(d)
    add_cuts(d)
    d.set_defaults(func=_cmd_dataset)

    s = sub.add_parser(
        "simulate",
        help="COSMOS-like simulated training stamps",
        description="Simulate COSMOS-like HST stamps from real fit catalogs, PSFs "
        "and noise, and write a dataset file plus metric PNGs.",
    )
    s.add_argument("--n", type=count(), default=20000)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=1234)
    s.add_argument("--data-dir", default=None, help="real data folder (default: auto)")
    s.add_argument("--stamp-size", type=int, default=64)
    s.add_argument("--pixel-scale", type=positive, default=0.03, help="arcsec/px (the finest)")
    s.add_argument(
        "--scale-mode",
        choices=("fixed", "fit"),
        default="fixed",
        help="fixed: every stamp at --pixel-scale; fit: coarser where a galaxy needs it",
    )
    s.add_argument(
        "--fit-radius",
        type=float,
        default=4.5,
        help="fit mode: half-light radii the stamp's half-width holds [default: 4.5]",
    )
    s.add_argument(
        "--morphology",
        choices=("structured", "deep", "smooth"),
        default="structured",
        help="structured: arms, bars, lopsided disks, giant clumps, companions; deep: structured, "
        "with faint disks as flat and as clumpy as faint COSMOS galaxies; smooth: bulge + "
        "disk + knots (the v2 model's training set) [default: structured]",
    )
    s.add_argument(
        "--faint-size-slope",
        type=float,
        default=0.0,
        help="dex per magnitude past F814W 23.5 by which dimmed galaxies are made smaller "
        "(scripts/calibrate_faint_sizes.py measures 0.076 on the real galaxies) [default: 0]",
    )
    s.add_argument(
        "--no-truth", action="store_true", help="do not store the noiseless stamps (TRUTH HDU)"
    )
    s.add_argument("--nproc", type=int, default=None)
    s.add_argument("--compare", default=None, help="a real dataset to overlay the metrics with")
    s.add_argument("--quiet", action="store_true")
    add_overwrite_option(s)
    add_cuts(s)
    s.set_defaults(func=_cmd_simulate)

    n = sub.add_parser(
        "encode",
        help="encode a whole catalog to latents (local or Dask)",
        description="Encode every stamp of a dataset file or COSMOS catalog to "
        "its latent mean and sigma, with reconstruction chi2 and quality "
        "metrics; resumable; --scheduler runs it on a Dask cluster.",
    )
    n.add_argument("catalog", help="dataset file, or COSMOS catalog file or folder")
    n.add_argument("--out", required=True, help="output FITS table")
    add_model_option(n)
    n.add_argument("--chunk-size", type=count(), default=2048)
    n.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://host:8786)")
    n.add_argument("--nproc", type=int, default=None)
    n.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="network arithmetic: bfloat16 is >2x faster on CPUs with native bfloat16, latent "
        "means differ by a median 1-2%% of their sigma; auto picks it where it measures faster "
        "(default: auto; float32 is the reference)",
    )
    n.add_argument(
        "--refine",
        type=int,
        default=0,
        metavar="STEPS",
        help="flux models: move each latent from the encoder's mean to its posterior mode in "
        "STEPS steps (100 is the library's default; ~100 decoder passes a stamp); default 0",
    )
    n.add_argument("--quiet", action="store_true")
    add_overwrite_option(n)
    n.set_defaults(func=_cmd_encode)
