"""The ``galsim-vae`` command line: one sub-command per job.

``main(argv)`` is what the console script and ``python -m galsim_vae`` call; tests call it
directly. Every sub-command has ``--help``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .errors import GalSimError

__all__ = ["main", "build_parser"]


def _add_cuts(p):
    from .metrics import QualityCuts

    d = QualityCuts()
    g = p.add_argument_group("quality cuts")
    g.add_argument("--min-snr", type=float, default=d.min_snr)
    g.add_argument("--max-snr", type=float, default=d.max_snr)
    g.add_argument("--min-width", type=float, default=d.min_width, help="pixels")
    g.add_argument("--max-width", type=float, default=d.max_width, help="pixels")
    g.add_argument("--min-nonuniformity", type=float, default=d.min_nonuniformity)
    g.add_argument("--max-nonuniformity", type=float, default=d.max_nonuniformity)
    g.add_argument("--min-flux-fraction", type=float, default=d.min_flux_fraction)
    g = p.add_argument_group("splits")
    g.add_argument("--split-seed", type=int, default=1234)
    g.add_argument("--valid", type=float, default=0.1, help="fraction (<1) or count")
    g.add_argument("--test", type=float, default=0.1, help="fraction (<1) or count")
    g.add_argument(
        "--multiple",
        type=int,
        default=1,
        help="round split sizes down to a multiple of this (e.g. the batch size)",
    )


def _cuts(a):
    from .metrics import QualityCuts

    return QualityCuts(
        min_snr=a.min_snr,
        max_snr=a.max_snr,
        min_width=a.min_width,
        max_width=a.max_width,
        min_nonuniformity=a.min_nonuniformity,
        max_nonuniformity=a.max_nonuniformity,
        min_flux_fraction=a.min_flux_fraction,
    )


def _cmd_dataset(a):
    from .dataset import write_dataset
    from .plots import plot_metrics
    from .stamps import real_stamps

    cuts = _cuts(a)
    images, psfs, rows, errors = real_stamps(
        a.catalog,
        stamp_size=a.stamp_size,
        pixel_scale=a.pixel_scale,
        scale_mode=a.scale_mode,
        seed=a.seed,
        nproc=a.nproc,
        progress=not a.quiet,
    )
    for i, reason in errors:
        print(f"row {i} skipped: {reason}", file=sys.stderr)
    for r, k in zip(rows, range(len(rows)), strict=False):
        r["psf_index"] = k
    table = write_dataset(
        a.out,
        images,
        rows,
        psfs=psfs,
        cuts=cuts,
        seed=a.split_seed,
        valid=a.valid,
        test=a.test,
        multiple=a.multiple,
        meta={
            "SCALEMOD": a.scale_mode,
            "SEED": a.seed,
            "CATALOG": Path(str(a.catalog or "")).name[:60],
        },
    )
    fig = Path(a.figure) if a.figure else Path(a.out).with_suffix(".png")
    plot_metrics(images, table, fig, title=f"{Path(a.out).name}: {len(table)} stamps")
    print(
        f"wrote {a.out}: {len(table)} stamps, {int(table['passes'].sum())} pass the cuts; "
        f"figure {fig}"
    )
    return 0


def _cmd_simulate(a):
    from .dataset import read_dataset, write_dataset
    from .plots import plot_metric_comparison, plot_metrics
    from .simulate import simulate

    t0 = time.perf_counter()
    images, psfs, rows, sim = simulate(
        a.n,
        seed=a.seed,
        data_dir=a.data_dir,
        nproc=a.nproc,
        progress=not a.quiet,
        stamp_size=a.stamp_size,
        pixel_scale=a.pixel_scale,
    )
    dt = time.perf_counter() - t0
    meta = {"SEED": a.seed, "SCALEMOD": "fixed", "SIMTIME": round(dt, 2)}
    table = write_dataset(
        a.out,
        images,
        rows,
        psfs=psfs,
        cuts=_cuts(a),
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


def build_parser():
    """The argparse parser of ``galsim-vae``."""
    from . import __version__

    p = argparse.ArgumentParser(
        prog="galsim-vae",
        description="galsim_vae: build galaxy datasets, train and evaluate the VAE, draw its "
        "galaxies with GalSim.",
    )
    p.add_argument("--version", action="version", version=f"galsim_vae {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
        help="catalog file or folder (default: $GALSIM_VAE_COSMOS)",
    )
    d.add_argument("--out", required=True, help="output dataset (.fits)")
    d.add_argument("--figure", default=None, help="metrics PNG (default: OUT with .png)")
    d.add_argument("--stamp-size", type=int, default=64)
    d.add_argument("--pixel-scale", type=float, default=0.03, help="arcsec/px (fixed mode)")
    d.add_argument("--scale-mode", choices=("fixed", "fit"), default="fixed")
    d.add_argument("--seed", type=int, default=1234, help="seed of the noise padding")
    d.add_argument("--nproc", type=int, default=None)
    d.add_argument("--quiet", action="store_true")
    _add_cuts(d)
    d.set_defaults(func=_cmd_dataset)

    s = sub.add_parser(
        "simulate",
        help="COSMOS-like simulated training stamps",
        description="Simulate COSMOS-like HST stamps from real fit catalogs, PSFs "
        "and noise, and write a dataset file plus metric PNGs.",
    )
    s.add_argument("--n", type=int, default=20000)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=1234)
    s.add_argument("--data-dir", default=None, help="real data folder (default: auto)")
    s.add_argument("--stamp-size", type=int, default=64)
    s.add_argument("--pixel-scale", type=float, default=0.03)
    s.add_argument("--nproc", type=int, default=None)
    s.add_argument("--compare", default=None, help="a real dataset to overlay the metrics with")
    s.add_argument("--quiet", action="store_true")
    _add_cuts(s)
    s.set_defaults(func=_cmd_simulate)

    from . import cli_model

    cli_model.add_commands(sub)
    return p


def main(argv=None):
    """Run ``galsim-vae`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GalSimError as e:
        print(f"galsim-vae {args.command}: error: {e}", file=sys.stderr)
        return 2


def _json(obj, path):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, default=lambda o: np.asarray(o).tolist()))
