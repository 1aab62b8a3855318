"""CASE 1.0 import: the sample graduate profile, malformed packages (named, nothing imported), versions,
the frameworks view on both backends, and the command from a file and an http address."""

from __future__ import annotations

import copy
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from proficio_events import EventLog
from proficio_projector import RunnerSettings, SqlProjector
from proficio_projector.competency import FrameworkError, Frameworks, import_framework, parse_package
from tests.projector.support import FAST, caught_up, replayed_rows, running, view_rows

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "graduate-profile.case.json"
PROFICIO = [sys.executable, "-m", "proficio_cli"]


def sample() -> dict[str, Any]:
    package: dict[str, Any] = orjson.loads(EXAMPLE.read_bytes())
    return package


def by_code(package: dict[str, Any], code: str) -> dict[str, Any]:
    return next(i for i in package["CFItems"] if i["humanCodingScheme"] == code)


def test_the_sample_graduate_profile() -> None:
    framework = parse_package(EXAMPLE.read_bytes())
    kinds = [c["type"] for c in framework.competencies]
    assert (kinds.count("Strand"), kinds.count("Competency"), kinds.count("Indicator")) == (2, 6, 15)
    codes = {c["uri"]: c["code"] for c in framework.competencies}
    parent_of = {c["code"]: codes.get(c["parent"]) for c in framework.competencies}
    assert parent_of["GP.A.MATH.2"] == "GP.A.MATH"
    assert parent_of["GP.A.MATH"] == "GP.A"
    assert parent_of["GP.A"] is None  # a child of the document: a top-level item
    precedes = [(codes[r["origin"]], codes[r["destination"]]) for r in framework.relations if r["type"] == "precedes"]
    assert len(precedes) == 9
    assert ("GP.A.MATH.1", "GP.A.MATH.2") in precedes
    assert framework.data["scale"] == [
        {"points": "1", "label": "Beginning", "mastery": False},
        {"points": "2", "label": "Developing", "mastery": False},
        {"points": "3", "label": "Proficient", "mastery": True},
        {"points": "4", "label": "Advanced", "mastery": True},
    ]


def _drop_statement(p: dict[str, Any]) -> None:
    del by_code(p, "GP.A.SCI.2")["fullStatement"]


def _unknown_parent(p: dict[str, Any]) -> None:
    p["CFAssociations"][0]["destinationNodeURI"] = {"title": "?", "identifier": "nope", "uri": "https://x.example/nope"}


def _two_parents(p: dict[str, Any]) -> None:
    extra = copy.deepcopy(next(a for a in p["CFAssociations"] if a["associationType"] == "isChildOf"
                               and a["originNodeURI"]["title"] == "GP.A.MATH.1"))  # fmt: skip
    extra["identifier"] = "extra-association"
    other = by_code(p, "GP.A.SCI")
    extra["destinationNodeURI"] = {"title": "GP.A.SCI", "identifier": other["identifier"], "uri": other["uri"]}
    p["CFAssociations"].append(extra)


def _cycle(p: dict[str, Any]) -> None:
    strand = next(
        a for a in p["CFAssociations"] if a["originNodeURI"]["title"] == "GP.A" and a["associationType"] == "isChildOf"
    )
    math = by_code(p, "GP.A.MATH")
    strand["destinationNodeURI"] = {"title": "GP.A.MATH", "identifier": math["identifier"], "uri": math["uri"]}


def _duplicate_identifier(p: dict[str, Any]) -> None:
    by_code(p, "GP.P.CIVIC.2")["identifier"] = by_code(p, "GP.P.CIVIC.1")["identifier"]


def _bad_type(p: dict[str, Any]) -> None:
    p["CFAssociations"][3]["associationType"] = "isParentOf"


def _same_scores(p: dict[str, Any]) -> None:
    p["CFRubrics"][0]["CFRubricCriteria"][0]["CFRubricCriterionLevels"][1]["score"] = 1


def _no_document(p: dict[str, Any]) -> None:
    del p["CFDocument"]


MALFORMED: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    (_drop_statement, "CFItems[7] (GP.A.SCI.2).fullStatement: Field required"),
    (
        _unknown_parent,
        "CFAssociations[0] (isChildOf): destinationNodeURI 'https://x.example/nope' is not in the package",
    ),
    (_two_parents, "has two parents"),
    (_cycle, "isChildOf forms a cycle"),
    (_duplicate_identifier, "appears twice"),
    (_bad_type, "associationType: Input should be 'isChildOf'"),
    (_same_scores, "CFRubrics[0].CFRubricCriteria[0]: two levels have the same score"),
    (_no_document, "CFDocument: Field required"),
]


@pytest.mark.parametrize(("breaks", "message"), MALFORMED, ids=[b.__name__.strip("_") for b, _ in MALFORMED])
async def test_a_malformed_package_is_named_and_nothing_is_imported(
    log: EventLog, breaks: Callable[[dict[str, Any]], None], message: str
) -> None:
    package = sample()
    breaks(package)
    with pytest.raises(FrameworkError) as raised:
        await import_framework(log, "district-7", orjson.dumps(package))
    assert message in str(raised.value)
    assert await log.max_position() == 0


@pytest.mark.parametrize(("raw", "message"), [(b"{nope", "not JSON"), (b"[1, 2]", "JSON object")])
async def test_not_a_package_at_all(log: EventLog, raw: bytes, message: str) -> None:
    with pytest.raises(FrameworkError, match=message):
        await import_framework(log, "district-7", raw)
    assert await log.max_position() == 0


async def test_versions_are_events_and_the_view_follows_them(log: EventLog) -> None:
    first = await import_framework(log, "district-7", EXAMPLE.read_bytes())
    again = await import_framework(log, "district-7", EXAMPLE.read_bytes())
    assert (first.version, first.created, again.version, again.created) == (1, True, 1, False)
    assert await log.max_position() == 1
    revised = sample()
    dropped = by_code(revised, "GP.P.CIVIC.2")
    revised["CFItems"].remove(dropped)
    revised["CFAssociations"] = [
        a for a in revised["CFAssociations"]
        if dropped["identifier"] not in (a["originNodeURI"]["identifier"], a["destinationNodeURI"]["identifier"])
    ]  # fmt: skip
    second = await import_framework(log, "district-7", orjson.dumps(revised))
    assert (second.version, second.created, second.competencies, second.removed) == (2, True, 22, 1)
    await import_framework(log, "district-9", EXAMPLE.read_bytes())  # another tenant, its own stream

    async with running(SqlProjector(log, Frameworks(), RunnerSettings(owner="t", **FAST))):
        await caught_up(log, "frameworks")
    projection = Frameworks()
    competencies = await view_rows(log, projection, "competencies")
    assert competencies == await replayed_rows(log, projection, "competencies")
    assert sum(1 for c in competencies if c["tenant"] == "district-7") == 22
    assert sum(1 for c in competencies if c["tenant"] == "district-9") == 23
    assert dropped["uri"] not in {c["uri"] for c in competencies if c["tenant"] == "district-7"}
    frameworks = await view_rows(log, projection, "frameworks")
    assert [(f["tenant"], f["version"], f["competencies"]) for f in frameworks] == [
        ("district-7", 2, 22),
        ("district-9", 1, 23),
    ]
    relations = await view_rows(log, projection, "relations")
    assert relations == await replayed_rows(log, projection, "relations")
    assert not [r for r in relations if dropped["uri"] in (r["origin"], r["destination"])
                and r["tenant"] == "district-7"]  # fmt: skip


@pytest.fixture
def served_examples() -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(EXAMPLE.parent), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_import_command_from_a_file_and_from_an_http_address(tmp_path: Path, served_examples: str) -> None:
    env = {**os.environ, "PROFICIO_DATA_DIR": str(tmp_path)}
    env.pop("PROFICIO_DATABASE_URL", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*PROFICIO, *args], capture_output=True, text=True, env=env, timeout=60, check=False)

    missing = run("frameworks", "import", f"{served_examples}/nothing.json", "--tenant", "d7")
    assert missing.returncode == 1
    assert "cannot fetch" in missing.stderr
    assert "nothing was imported" in missing.stderr
    fetched = run("frameworks", "import", f"{served_examples}/{EXAMPLE.name}", "--tenant", "d7", "--json")
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(fetched.stdout)["version"] == 1
    local = run("frameworks", "import", str(EXAMPLE), "--tenant", "d7")
    assert "unchanged since version 1" in local.stdout
    broken = tmp_path / "broken.json"
    broken.write_text('{"CFDocument": {"identifier": "x"}}')
    refused = run("frameworks", "import", str(broken), "--tenant", "d7")
    assert refused.returncode == 1
    assert "CFDocument.uri: Field required" in refused.stderr
