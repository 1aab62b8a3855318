"""The equity API as a district uses it, through ``proficio serve``: the roster imported with the command line,
a plan over HTTP, statements from tincan; the views refreshed by the server itself, read by the public (the
suppressed view) and by staff (the ``all`` scope), as JSON and CSV, with the tenant's own rules."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import time
from pathlib import Path
from typing import Any

import httpx

from proficio_events import sqlite_url
from tests.competency.test_competency_api import cli, send
from tests.equity.district import write_oneroster
from tests.equity.test_equity_views import COMPETENCIES, OBJECTIVE, actor, district
from tests.support.directory import stored_learner_ids
from tests.support.server import create_credential, running_server

PLAN = "plan:math-8"


async def test_the_equity_api_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "PROFICIO_DATA_DIR": str(tmp_path)}
    env.pop("PROFICIO_DATABASE_URL", None)
    students = district()
    roster = write_oneroster(tmp_path / "oneroster", students, ["school-a", "school-b"])
    await asyncio.to_thread(cli, env, "roster", "import", str(roster), "--effective", "2026-08-24")
    reader = await asyncio.to_thread(create_credential, tmp_path, env, "statements/read")
    with running_server(tmp_path) as server:
        statements = []
        for n, student in enumerate(students):
            for k, competency in enumerate(COMPETENCIES[: 1 if student.english_learner else 4]):
                statements.append({
                    "actor": actor(student), "verb": {"id": "http://adlnet.gov/expapi/verbs/passed"},
                    "object": {"id": f"{competency}/quiz"}, "result": {"score": {"scaled": 1.0}},
                    "context": {"contextActivities": {"other": [{"id": competency,
                                                                 "definition": {"type": OBJECTIVE}}]}},
                    "timestamp": f"2026-10-{5 + k:02d}T10:{n % 60:02d}:00Z",
                })  # fmt: skip
        await send(server, statements)
        learners = await stored_learner_ids(sqlite_url(tmp_path), "default", [actor(s) for s in students])
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=10) as http:
            plan = {"title": "Math 8", "start": "2026-08-24", "target": "2027-05-28",
                    "learners": sorted(learners),
                    "competencies": [{"uri": c, "tier": "must"} for c in COMPETENCIES]}  # fmt: skip
            assert (await http.put("/pacing/plans/math-8", json=plan)).status_code == 204
            params = {"scope": PLAN, "factor": "english_learner"}

            async def table(**more: Any) -> httpx.Response:
                return await http.get("/equity", params={**params, **more})

            deadline = time.monotonic() + 60
            while True:  # the server refreshes every few seconds; wait for the refresh that saw everything
                response = await table()
                if response.status_code == 200 and response.json()["all"]["n"] == 80:
                    groups = {g["value"]: g for g in response.json()["groups"]}
                    if groups["false"]["metrics"]["pct_mastered"]["value"] == 66.7:
                        break
                assert time.monotonic() < deadline, response.text
                await asyncio.sleep(0.2)
            body = response.json()
            assert (groups["true"]["n"], groups["true"]["metrics"]["pct_mastered"]["value"]) == (20, 16.7)
            assert groups["true"]["gap_vs_all"]["pct_mastered"] == -50.0
            status = (await http.get("/equity/status")).json()
            assert (status["refreshed"], status["learners"]) == (True, 80)
            assert body["as_of"] == status["as_of"]

            school_b = (await table(level="school:school-b")).json()
            hidden = {g["value"]: (g["n"], g["hidden"], g["label"]) for g in school_b["groups"]}
            assert hidden == {"true": (None, "primary", "*"), "false": (None, "complementary", "*")}
            staff_b = (await table(level="school:school-b", audience="staff")).json()
            assert {g["value"]: g["n"] for g in staff_b["groups"]} == {"true": 6, "false": 24}

            as_csv = list(csv.DictReader(io.StringIO((await table(level="school:school-b", format="csv")).text)))
            assert [(r["value"], r["n"]) for r in as_csv] == [("all", "30"), ("false", "*"), ("true", "*")]

            scopes = (await http.get("/equity/scopes")).json()["scopes"]
            assert {"scope": PLAN, "levels": ["district", "school:school-a", "school:school-b"]} in scopes

            # Wisconsin's rules (n <= 5 hidden) show school B's 6 English learners after the next refresh.
            assert (await http.put("/equity/rules", json={"preset": "WI"})).status_code == 204
            deadline = time.monotonic() + 60
            while (await http.get("/equity/rules")).json()["name"] != "WI":  # once the reference view has it
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            while (await table(level="school:school-b")).json()["groups"][1]["n"] is None:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)

            for method, path, options, code, words in [
                ("GET", "/equity", {"params": {**params, "factor": "height"}}, 400, "factor is one of"),
                ("GET", "/equity", {"params": {**params, "audience": "press"}}, 400, "audience is public or staff"),
                ("GET", "/equity", {"params": {**params, "scope": "plan:nope"}}, 404, "no equity view"),
                ("GET", "/equity", {"params": {"factor": "gender"}}, 400, "scope"),
                ("PUT", "/equity/rules", {"json": {"preset": "XX"}}, 400, "preset must be one of"),
                ("PUT", "/equity/rules", {"json": {"min_count": 2}}, 400, "min_n is required"),
            ]:  # fmt: skip
                answer = await http.request(method, path, **options)
                assert (answer.status_code, words in answer.text) == (code, True), (path, answer.text)

        async with httpx.AsyncClient(
            base_url=server.base_url, auth=(reader["key"], reader["secret"]), timeout=10
        ) as http:
            assert (await http.get("/equity", params={**params})).status_code == 200
            refused = await http.get("/equity", params={**params, "audience": "staff"})
            assert (refused.status_code, "all" in refused.text) == (403, True)
