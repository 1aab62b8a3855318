"""The ``proficio`` command line."""

from . import _audit  # noqa: F401  (adds verify, keys, checkpoint, export and verify-export to main)
from ._main import main

__all__ = ["main"]
