"""The ``proficio`` command line."""

# The modules that add commands to main (verify, keys, checkpoint, export, verify-export; import-lrs).
from . import _audit, _import  # noqa: F401
from ._main import main

__all__ = ["main"]
