"""The ``galsim-vae`` command line: one sub-command per job.

``main(argv)`` is what the console script and ``python -m galsim_vae`` call; tests call it
directly. Every sub-command has ``--help``. The commands live by layer: :mod:`.data` (dataset,
simulate, encode), :mod:`.model` (train, fit-density, fit-attributes, draw) and :mod:`.study`
(evaluate, validate). The CLI is the only part of galsim_vae that imports every layer.
"""

from __future__ import annotations

import argparse
import sys

from .._version import __version__
from ..errors import GalSimError
from ..model import tune_allocator
from . import data, model, study

__all__ = ["main", "build_parser"]


def build_parser():
    """The argparse parser of ``galsim-vae``."""
    p = argparse.ArgumentParser(
        prog="galsim-vae",
        description="galsim_vae: build galaxy datasets, train and evaluate the VAE, draw its "
        "galaxies with GalSim.",
    )
    p.add_argument("--version", action="version", version=f"galsim_vae {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for layer in (data, model, study):
        layer.add_commands(sub)
    return p


def main(argv=None):
    """Run ``galsim-vae`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    tune_allocator()  # the commands run the network for long: keep its memory (model.py)
    try:
        return int(args.func(args) or 0)
    except GalSimError as e:
        print(f"galsim-vae {args.command}: error: {e}", file=sys.stderr)
        return 2
