"""Options and helpers shared by the ``galsim-vae`` sub-commands (private)."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from ..errors import GalSimValueError
from ..model import default_model_path
from ..pipeline.metrics import QualityCuts

__all__ = [
    "count",
    "positive",
    "add_model_option",
    "model_arg",
    "add_cuts",
    "cuts",
    "add_overwrite_option",
    "check_output",
    "model_sidecar",
]


def count(minimum=1):
    """An argparse type: an integer of at least ``minimum`` (bad input exits 2, naming it)."""

    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{v} is below the minimum {minimum}")
        return v

    return parse


def positive(text):
    """An argparse type: a finite number above zero."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a finite positive number")
    return v


def add_overwrite_option(p):
    """The ``--overwrite`` flag: without it an existing output file is never replaced."""
    p.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")


def check_output(out, inputs=(), *, overwrite=False) -> Path:
    """Refuse an output file before any work is done: one that is an input of the command
    (never replaced, even with ``--overwrite``), one that exists (without ``overwrite``), a
    folder, or one in a folder that cannot be written."""
    o = Path(out).resolve()
    for i in inputs:
        if i is not None and Path(i).resolve() == o:
            raise GalSimValueError("--out would replace an input of the command", str(out))
    if o.is_dir():
        raise GalSimValueError("--out is a folder, not a file", str(out))
    if o.exists() and not overwrite:
        raise GalSimValueError("output exists; pass --overwrite to replace it", str(out))
    parent = o.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise GalSimValueError("cannot write the output's folder", str(parent))
    return o


def check_output_dir(out, names, *, overwrite=False) -> Path:
    """Refuse, before any work, an output folder that already holds files the command writes
    (``names``), unless ``overwrite``; or an output that is a file."""
    o = Path(out)
    if o.exists() and not o.is_dir():
        raise GalSimValueError("--out is a file, not a folder", str(out))
    there = [n for n in names if (o / n).exists()]
    if there and not overwrite:
        raise GalSimValueError(
            f"{out} already holds {', '.join(there)}; pass --overwrite to replace them", str(out)
        )
    return o


def model_sidecar(model_file, default_path, out):
    """Where a file that belongs to a model (density, attributes) goes: ``out``, or beside the
    model; never beside the shipped model, which belongs to the installed package."""
    if out:
        return Path(out)
    if Path(model_file).resolve() == default_model_path().resolve():
        raise GalSimValueError(
            "refusing to rewrite a file shipped with the package; pass --out", str(default_path)
        )
    return Path(default_path)


def add_model_option(p, help="weights file, or 'default' for the shipped model"):
    """The ``--model`` option (``default``: the shipped model)."""
    p.add_argument("--model", default="default", help=help)


def model_arg(a):
    """The --model option as the library takes it: None for the shipped model."""
    return None if a.model == "default" else a.model


def add_cuts(p):
    """The quality-cut and split options of the commands that write datasets."""

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


def cuts(a):
    """The :class:`QualityCuts` of the parsed options."""

    return QualityCuts(
        min_snr=a.min_snr,
        max_snr=a.max_snr,
        min_width=a.min_width,
        max_width=a.max_width,
        min_nonuniformity=a.min_nonuniformity,
        max_nonuniformity=a.max_nonuniformity,
        min_flux_fraction=a.min_flux_fraction,
    )
