"""``proficio serve`` as a real process on a free loopback port, for tests that use real HTTP clients."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

PROFICIO = [sys.executable, "-m", "proficio_cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class RunningServer:
    base_url: str
    key: str
    secret: str

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/xapi/"

    @property
    def headers(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.key}:{self.secret}".encode()).decode()
        return {"Authorization": f"Basic {token}", "X-Experience-API-Version": "1.0.3"}


def create_credential(data_dir: Path, env: dict[str, str], *scopes: str, tenant: str = "default") -> dict[str, str]:
    args = [*PROFICIO, "credentials", "create", "--data-dir", str(data_dir), "--tenant", tenant, "--json"]
    for scope in scopes:
        args += ["--scope", scope]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60, check=True)
    created: dict[str, str] = json.loads(done.stdout)
    return created


@contextmanager
def running_server(
    data_dir: Path, database_url: str | None = None, *, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[RunningServer]:
    """``env``: more environment for the server (PROFICIO_KAFKA_BOOTSTRAP, say)."""
    env = {**os.environ, **(env or {})}
    env.pop("PROFICIO_DATABASE_URL", None)
    if database_url:
        env["PROFICIO_DATABASE_URL"] = database_url
    credential = create_credential(data_dir, env, "all")
    port = free_port()
    log_path = data_dir / "serve.log"
    with log_path.open("wb") as output:
        server = subprocess.Popen(
            [
                *PROFICIO,
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{base}/xapi/about", timeout=2)
                    break
                except httpx.TransportError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("proficio serve did not start:\n" + log_path.read_text()) from None
                    time.sleep(0.1)
            yield RunningServer(base, credential["key"], credential["secret"])
        finally:
            server.terminate()
            server.wait(timeout=20)
