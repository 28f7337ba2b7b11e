"""Atomic file writing (private; no heavy imports so every module can use it)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["atomic_path"]


class atomic_path:
    """Context manager giving a temporary path that is renamed to ``path`` on success.

    On an exception (``KeyboardInterrupt`` included) the temporary file is removed, so an
    interrupted write never leaves a file that looks complete.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()
        return False
