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


# -- State resource round trips: each connection is one content player ------------------------------------

# One wrk thread per connection, so a thread's Lua globals are that connection's state: the player PUTs its
# document (with If-Match: the ETag of its last GET) and GETs it back, in turn. Latencies are taken in Lua with
# clock_gettime(CLOCK_MONOTONIC) through LuaJIT's FFI, from just before a request is written (wrk calls
# request() then) to response(); a round trip is from the PUT's start to the GET's response.
_STATE = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } proficio_timespec;
int clock_gettime(int clk_id, proficio_timespec *tp);
]]
local clock = ffi.new("proficio_timespec")
local function now_us()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) * 1000000 + tonumber(clock.tv_nsec) / 1000
end

local created = 0
local threads = {}
function setup(thread)
  created = created + 1
  thread:set("id", created)
  table.insert(threads, thread)
end

function init(args)
  path = paths[id]
  phase, page, etag, sent = 0, 0, nil, nil
  put_started, get_started = 0, 0
  puts, gets, trips, failures = {}, {}, {}, 0
end

function request()
  if phase == 0 then
    page = page + 1
    sent = string.format('{"location":"page-%d","suspend_data":"%s","score":%d}', page, padding, page % 100)
    local headers = {["Content-Type"] = "application/json"}
    for k, v in pairs(common) do headers[k] = v end
    if etag then headers["If-Match"] = etag end
    put_started = now_us()
    return wrk.format("PUT", path, headers, sent)
  end
  get_started = now_us()
  return wrk.format("GET", path, common)
end

function response(status, headers, body)
  local finished = now_us()
  if phase == 0 then
    if status ~= 204 then failures = failures + 1 end
    puts[#puts + 1] = finished - put_started
    phase = 1
    return
  end
  if status ~= 200 or body ~= sent then failures = failures + 1 end
  etag = headers["etag"] or headers["ETag"]
  gets[#gets + 1] = finished - get_started
  trips[#trips + 1] = finished - put_started
  phase = 0
end

local function dump(name, values)
  io.write(name)
  for i = 1, #values do io.write(" ", string.format("%d", values[i])) end
  io.write("\n")
end

function done(summary, latency, requests)
  local puts_, gets_, trips_, failed = {}, {}, {}, 0
  for _, thread in ipairs(threads) do
    for _, v in ipairs(thread:get("puts")) do puts_[#puts_ + 1] = v end
    for _, v in ipairs(thread:get("gets")) do gets_[#gets_ + 1] = v end
    for _, v in ipairs(thread:get("trips")) do trips_[#trips_ + 1] = v end
    failed = failed + thread:get("failures")
  end
  local errors = summary.errors
  io.write(string.format("summary %d %d %d %d\n", summary.requests, summary.duration, failed,
    errors.connect + errors.read + errors.write + errors.timeout + errors.status))
  dump("put", puts_)
  dump("get", gets_)
  dump("trip", trips_)
end
"""


@dataclass(frozen=True)
class Latencies:
    values_us: list[int]

    def percentile_ms(self, p: float) -> float:
        ordered = sorted(self.values_us)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] / 1000 if ordered else float("nan")


@dataclass(frozen=True)
class StateResult:
    requests: int
    seconds: float
    put: Latencies
    get: Latencies
    round_trip: Latencies

    @property
    def round_trips_per_second(self) -> float:
        return len(self.round_trip.values_us) / self.seconds


def state_round_trips(
    base_url: str, headers: dict[str, str], paths: list[str], *, seconds: float, padding: int = 900
) -> StateResult:
    """One connection (and wrk thread) per path in ``paths``: PUT a ~1 KB JSON document with If-Match, GET it back."""
    lines = [
        "common = {" + ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()) + "}",
        "paths = {" + ", ".join(_lua_string(p) for p in paths) + "}",
        f'padding = string.rep("x", {padding})',
    ]
    clients = len(paths)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "state.lua"
        script.write_text("\n".join(lines) + _STATE)
        command = ["wrk", f"-t{clients}", f"-c{clients}", f"-d{round(seconds)}s", "--timeout", "30s", "-s", str(script)]
        output = subprocess.run([*command, base_url], capture_output=True, text=True, check=True).stdout
    found: dict[str, list[int]] = {}
    for line in output.splitlines():
        name, *values = line.split()
        if name in ("summary", "put", "get", "trip"):
            found[name] = [int(v) for v in values]
    if "summary" not in found:
        raise RuntimeError(f"wrk printed no report: {output}")
    requests, duration_us, failed, errors = found["summary"]
    if failed or errors:
        raise RuntimeError(f"wrk saw failed requests: {failed} unexpected responses, {errors} errors")
    return StateResult(
        requests, duration_us / 1e6, Latencies(found["put"]), Latencies(found["get"]), Latencies(found["trip"])
    )
