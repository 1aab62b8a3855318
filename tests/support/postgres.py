"""A real PostgreSQL 15: Debian's cluster ``15 main``, started for the test session if it is down.

The test command installs the ``postgresql`` package where it is absent (``scripts/test``); this
module starts the cluster, makes a login role for the tests, gives the run a database of its own,
and drops the database (and stops the cluster, if it started it) at the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

VERSION = "15"
CLUSTER = "main"
ROLE = "proficio_test"
PASSWORD = "proficio_test"  # a throw-away role on a loopback-only test cluster


def _as_postgres(*args: str) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return ["sudo", "-n", "-u", "postgres", "--", *args]


def _psql(sql: str, database: str = "postgres") -> str:
    done = subprocess.run(
        _as_postgres("psql", "-X", "-q", "-At", "-p", port(), "-d", database, "-v", "ON_ERROR_STOP=1", "-c", sql),
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def port() -> str:
    line = subprocess.run(["pg_lsclusters", "-h"], check=True, capture_output=True, text=True).stdout
    for row in line.splitlines():
        fields = row.split()
        if fields[:2] == [VERSION, CLUSTER]:
            return fields[2]
    raise RuntimeError(f"PostgreSQL cluster {VERSION}/{CLUSTER} does not exist; run scripts/test to install it")


def _cluster_online() -> bool:
    rows = subprocess.run(["pg_lsclusters", "-h"], check=True, capture_output=True, text=True).stdout
    return any(r.split()[:2] == [VERSION, CLUSTER] and r.split()[3] == "online" for r in rows.splitlines())


@dataclass(frozen=True)
class PostgresServer:
    admin_url: str
    url: str
    database: str

    def url_for(self, database: str) -> str:
        # TLS adds nothing on loopback but cost; production addresses choose their own sslmode.
        return self.admin_url.rsplit("/", 1)[0] + f"/{database}?sslmode=disable"

    def create_database(self, name: str) -> str:
        _psql(f'CREATE DATABASE "{name}" OWNER {ROLE}')
        return self.url_for(name)

    def database_exists(self, name: str) -> bool:
        return _psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == "1"

    def drop_database(self, name: str) -> None:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started cluster with a fresh database for this test run."""
    if shutil.which("pg_ctlcluster") is None:
        raise RuntimeError("PostgreSQL is not installed: run scripts/test, which installs it with apt-get")
    started_here = False
    if not _cluster_online():
        subprocess.run(["pg_ctlcluster", VERSION, CLUSTER, "start"], check=True)
        started_here = True
    try:
        if _psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'") != "1":
            _psql(f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        database = f"proficio_test_{secrets.token_hex(4)}"
        admin = f"postgresql://{ROLE}:{PASSWORD}@127.0.0.1:{port()}/postgres"
        server = PostgresServer(admin, admin.rsplit("/", 1)[0] + f"/{database}?sslmode=disable", database)
        server.create_database(database)
        try:
            yield server
        finally:
            server.drop_database(database)
    finally:
        if started_here:
            subprocess.run(["pg_ctlcluster", VERSION, CLUSTER, "stop"], check=False)
