"""Sub-commands of ``galsim-vae`` that use a model (train, evaluate, draw, ...)."""

from __future__ import annotations

__all__ = ["add_commands"]


def add_commands(sub):
    """Add the model sub-commands to the ``galsim-vae`` sub-parser ``sub``."""
    return sub
