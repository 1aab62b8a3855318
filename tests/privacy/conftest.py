"""The ingest app fixture (an xAPI client of the app on a fresh store), shared with tests/ingest."""

from tests.ingest.conftest import client

__all__ = ["client"]
