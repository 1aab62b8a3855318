"""What crypto-shredding costs batched ingest: encryption on against off, in one run, on PostgreSQL.

    .venv/bin/python -m bench.crypto_cost                 # 6 rounds of 15 s each way, 100 statements/request
    .venv/bin/python -m bench.crypto_cost --rounds 4 --seconds 10

Two `proficio serve` processes (2 workers each) on two databases of one PostgreSQL 15 cluster: one as
production runs (every statement's personal part sealed under its learner's key, keys got or created in the
append transaction), one with encryption switched off (the baseline: the same redacted payload, the personal
part stored in clear in `sealed`). The switch is private to this benchmark: a `sitecustomize` module on the
baseline server's PYTHONPATH turns off ``proficio_events._keyring._ENCRYPT`` in each of its processes;
no setting or variable of Proficio's own can.

wrk posts the same 100-statement batch (no ids: every request stores 100 new statements over 10,000
learners) from 8 connections. The machine is shared, so the rounds alternate (on, off, on, off, ...) and
the load average is printed with each: a burst of other work hits both sides alike. Each round also reports
the CPU time the server's processes and its PostgreSQL backends spent per stored statement (from /proc),
which other load disturbs far less than throughput. Then GETs of pages of 100 (each statement opened).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

from tests.support.server import running_server

from bench import _wrk as wrk
from bench.ingest_throughput import bodies

_BASELINE = """\
import proficio_events._keyring as _keyring

_keyring._ENCRYPT = False  # the crypto_cost benchmark's baseline only
"""


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _stat(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the state on (the name may hold spaces)


def server_processes(port: int) -> set[str]:
    """The `proficio serve --port PORT` process and its workers."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in args and b"--port" in args and str(port).encode() in args:
                pids.add(entry.name)
    children = {e.name for e in Path("/proc").iterdir() if e.name.isdigit() and (_stat(e.name) or ["", ""])[1] in pids}
    return pids | children


def backends(database: str) -> set[str]:
    from tests.support.postgres import _psql

    return set(_psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'").split())


def cpu_seconds(pids: set[str]) -> float:
    """User + system CPU of these processes so far: unlike throughput, hardly changed by other load."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="rounds each way (alternating)")
    parser.add_argument("--seconds", type=float, default=15, help="length of each round")
    parser.add_argument("--workers", type=int, default=2, help="server processes per server")
    parser.add_argument("--get-rounds", type=int, default=2, help="rounds each way of GET pages of 100")
    args = parser.parse_args()
    if not wrk.available():
        raise SystemExit("this benchmark needs wrk (apt-get install wrk)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, CPython {platform.python_version()}, "
          f"{args.workers} server worker(s) each, load average at start {load_average()}")  # fmt: skip
    from tests.support.postgres import running_postgres

    body = bodies(1, 100, 1)[0]
    env = {"PROFICIO_RUN_PROJECTORS": "false"}
    with tempfile.TemporaryDirectory() as tmp, running_postgres() as pg:
        base = Path(tmp)
        (base / "baseline").mkdir()
        (base / "baseline" / "sitecustomize.py").write_text(_BASELINE)
        python_path = os.pathsep.join([str(base / "baseline"), *filter(None, [os.environ.get("PYTHONPATH")])])
        on_url = pg.create_database(f"{pg.database}_crypto_on")
        off_url = pg.create_database(f"{pg.database}_crypto_off")
        (base / "on").mkdir()
        (base / "off").mkdir()
        with (
            running_server(base / "on", on_url, workers=args.workers, env=env) as on,
            running_server(base / "off", off_url, workers=args.workers, env={**env, "PYTHONPATH": python_path}) as off,
        ):
            servers = {"encrypted": on, "baseline": off}
            rates: dict[str, list[float]] = {name: [] for name in servers}
            cpus: dict[str, list[float]] = {name: [] for name in servers}
            databases = {"encrypted": f"{pg.database}_crypto_on", "baseline": f"{pg.database}_crypto_off"}
            for server in servers.values():  # warm-up: connections, prepared statements, the first keys
                headers = {**server.headers, "Content-Type": "application/json"}
                wrk.post(server.base_url + "/xapi/statements", headers, body, clients=8, seconds=3)
            order = list(servers)
            for round_ in range(args.rounds):
                for name in order if round_ % 2 == 0 else reversed(order):
                    server = servers[name]
                    headers = {**server.headers, "Content-Type": "application/json"}
                    before = load_average()
                    pids = server_processes(int(server.base_url.rsplit(":", 1)[1])) | backends(databases[name])
                    cpu = cpu_seconds(pids)
                    result = wrk.post(server.base_url + "/xapi/statements", headers, body, clients=8,
                                      seconds=args.seconds)  # fmt: skip
                    pids |= backends(databases[name])
                    used = (cpu_seconds(pids) - cpu) / (result.requests * 100) * 1e6
                    cpus[name].append(used)
                    rate = result.per_second * 100
                    rates[name].append(rate)
                    print(f"  round {round_ + 1} {name:<10} {rate:>9,.0f} statements/s   p50 {result.p50_ms:6.1f} ms"
                          f"  p99 {result.p99_ms:6.1f} ms   {used:5.0f} µs CPU/statement (server + its PostgreSQL"
                          f" backends)   load {before} -> {load_average()}", flush=True)  # fmt: skip
            for name in servers:
                print(f"  {name:<10} median {statistics.median(rates[name]):>9,.0f} statements/s "
                      f"(min {min(rates[name]):,.0f}, max {max(rates[name]):,.0f})")  # fmt: skip
            on_median, off_median = statistics.median(rates["encrypted"]), statistics.median(rates["baseline"])
            paired = [1 - e / b for e, b in zip(rates["encrypted"], rates["baseline"], strict=True)]
            per_round = ", ".join(f"{c:+.1%}" for c in paired)
            gets: dict[str, list[float]] = {name: [] for name in servers}
            for round_ in range(args.get_rounds):  # reads open every statement of the page (one key query)
                for name in order if round_ % 2 == 0 else reversed(order):
                    server = servers[name]
                    got = wrk.get(server.base_url, server.headers, ["/xapi/statements?limit=100"], clients=8,
                                  seconds=args.seconds)  # fmt: skip
                    gets[name].append(got.per_second * 100)
                    print(f"  GET round {round_ + 1} {name:<10} {got.per_second * 100:>9,.0f} statements/s read"
                          f"   p50 {got.p50_ms:6.1f} ms  p99 {got.p99_ms:6.1f} ms   load {load_average()}",
                          flush=True)  # fmt: skip
            print(f"  cost of encryption: {1 - on_median / off_median:+.1%} of batched ingest throughput (medians);"
                  f" per round {per_round}; load average at end {load_average()}")  # fmt: skip
            cpu_cost = statistics.median(cpus["encrypted"]) / statistics.median(cpus["baseline"]) - 1
            print(f"  CPU per stored statement (server processes and their PostgreSQL backends, medians):"
                  f" encrypted {statistics.median(cpus['encrypted']):.0f} µs, baseline"
                  f" {statistics.median(cpus['baseline']):.0f} µs: {cpu_cost:+.1%}")  # fmt: skip
            if args.get_rounds:
                read_cost = 1 - statistics.median(gets["encrypted"]) / statistics.median(gets["baseline"])
                print(f"  cost of decryption: {read_cost:+.1%} of GET throughput (pages of 100, medians)")
        # The switch did what it says: sealed events carry key ids on one side only.
        from tests.support.postgres import _psql

        for name, database, want in (("encrypted", "on", True), ("baseline", "off", False)):
            counts = _psql("SELECT count(key_id) > 0, count(*) FROM events", f"{pg.database}_crypto_{database}")
            assert counts.startswith("t" if want else "f"), (name, counts)
        pg.drop_database(f"{pg.database}_crypto_on")
        pg.drop_database(f"{pg.database}_crypto_off")


if __name__ == "__main__":
    main()
