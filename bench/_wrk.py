"""Load from wrk (Debian package `wrk`), a C load generator in its own process.

A Python load generator shares the 2 cores with the server and PostgreSQL and adds its own latency
(httpx spends about as much CPU per request as the server does), so POST figures are taken with wrk
when it is installed (`apt-get install wrk`).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson

# wrk calls done() once at the end; latencies are in microseconds.
_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d, "non2xx": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(value: str) -> str:
    return "[==[" + value + "]==]"


def post(url: str, headers: dict[str, str], body: bytes, *, clients: int, seconds: float) -> WrkResult:
    """POST ``body`` over ``clients`` keep-alive connections for ``seconds``; every response must be 2xx."""
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body.decode())}"]
    return _run(url, _header_lines(headers) + lines, clients=clients, seconds=seconds)


def get(base_url: str, headers: dict[str, str], paths: list[str], *, clients: int, seconds: float) -> WrkResult:
    """GET ``paths`` in turn over ``clients`` keep-alive connections for ``seconds``; every response must be 2xx."""
    lines = ["paths = {" + ", ".join(_lua_string(p) for p in paths) + "}", "counter = 0"]
    lines += [
        "request = function()",
        "  counter = counter + 1",
        '  return wrk.format("GET", paths[(counter % #paths) + 1])',
        "end",
    ]
    return _run(base_url, _header_lines(headers) + lines, clients=clients, seconds=seconds)


def _header_lines(headers: dict[str, str]) -> list[str]:
    return [f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()]


def _run(url: str, lines: list[str], *, clients: int, seconds: float) -> WrkResult:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "load.lua"
        script.write_text("\n".join(lines) + _REPORT)
        command = ["wrk", "-t1", f"-c{clients}", f"-d{round(seconds)}s", "--timeout", "30s", "-s", str(script), url]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if not output.strip().endswith("}"):
        raise RuntimeError(f"wrk printed no report: {output}")
    report = orjson.loads(output.strip().splitlines()[-1])
    if report["errors"] or report["non2xx"]:
        raise RuntimeError(f"wrk saw failed requests: {report}")
    return WrkResult(report["requests"], report["duration_us"] / 1e6, report["p50_us"] / 1000, report["p99_us"] / 1000)
