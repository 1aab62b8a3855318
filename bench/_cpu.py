"""CPU time of the server under test and of its PostgreSQL backends, read from /proc (local processes).

On this shared 2-core machine wall-clock latencies move with other people's load; CPU seconds per request
of the server process(es) and of the database backends serving them are the load-independent measure.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live local process (None if it is gone)."""
    fields = _stat(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / _TICK


def serve_pids(data_dir: Path) -> list[int]:
    """The ``proficio serve`` process using ``data_dir`` and its descendants (uvicorn's workers)."""
    roots: list[int] = []
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
            args = (entry / "cmdline").read_bytes().split(b"\0")
            if b"serve" in args and str(data_dir).encode() in args:
                roots.append(int(entry.name))
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                changed = True
    return sorted(found)


def _backend_pids(database: str) -> list[int]:
    """PostgreSQL backends connected to ``database`` (from ps: ``postgres: 15/main: user db host(port) ...``)."""
    output = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    pids = []
    for line in output.splitlines():
        pid, _, args = line.strip().partition(" ")
        words = args.split()
        if len(words) >= 4 and words[0] == "postgres:" and words[3] == database:
            pids.append(int(pid))
    return pids


@dataclass(frozen=True)
class CpuSample:
    server: dict[int, float]
    backends: dict[int, float]


def sample(data_dir: Path, database: str | None) -> CpuSample:
    server = {pid: s for pid in serve_pids(data_dir) if (s := process_cpu_s(pid)) is not None}
    backends = {}
    if database is not None:
        backends = {pid: s for pid in _backend_pids(database) if (s := process_cpu_s(pid)) is not None}
    return CpuSample(server, backends)


def spent(before: CpuSample, after: CpuSample) -> tuple[float, float]:
    """CPU seconds spent between two samples by the server processes and by the backends (new ones from 0)."""
    server = sum(v - before.server.get(pid, 0.0) for pid, v in after.server.items())
    backends = sum(v - before.backends.get(pid, 0.0) for pid, v in after.backends.items())
    return server, backends


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
