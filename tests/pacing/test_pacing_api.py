"""The pacing API as a school uses it, through ``proficio serve``: the sample calendar, plan and graduation
menu recorded over HTTP and the command line, statements sent with tincan, then each learner's pace, the
plan's learners, readiness and a section's intervention queue, as JSON and CSV, judged on a fixed day."""

from __future__ import annotations

import asyncio
import csv
import io
import os
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import orjson

from proficio_projector.pacing import calendar_from_data
from tests.competency.test_competency_api import ADA, BEN, cli, send, tagged
from tests.support.polling import json_when
from tests.support.server import create_credential, running_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CY = {"mbox": "mailto:cy@district.example.org", "name": "Cy"}
AS_OF = "2026-10-30"
SAT_MATH = "https://district.example.org/assessments/sat/math"


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((EXAMPLES / f"{name}.json").read_bytes())
    return data


def on(day: str, actor: dict[str, str], code: str, scaled: float) -> dict[str, Any]:
    statement = tagged(actor, code, scaled, 1)
    statement["timestamp"] = f"{day}T10:00:00Z"
    return statement


async def until(read: Callable[[], Awaitable[httpx.Response]], ready: Callable[[Any], bool]) -> Any:
    return await json_when(read, ready, "the pacing views")


async def test_pacing_readiness_and_interventions_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "PROFICIO_DATA_DIR": str(tmp_path)}
    env.pop("PROFICIO_DATABASE_URL", None)
    await asyncio.to_thread(cli, env, "frameworks", "import", str(EXAMPLES / "graduate-profile.case.json"))
    await asyncio.to_thread(cli, env, "pacing", "set", "policy", str(EXAMPLES / "pacing-policy.json"))
    reader = await asyncio.to_thread(create_credential, tmp_path, env, "statements/read")
    with running_server(tmp_path) as server:
        statements = [
            # Ada masters the three math indicators in September and October, and passes the SAT cut.
            on("2026-09-02", ADA, "GP.A.MATH.1", 0.8), on("2026-09-16", ADA, "GP.A.MATH.2", 0.9),
            on("2026-10-07", ADA, "GP.A.MATH.3", 0.75), on("2026-10-21", ADA, "GP.A.SCI.1", 0.5),
            # Ben tries the first indicator four times in September without a level gain, then stops.
            *[on(f"2026-09-{day:02d}", BEN, "GP.A.MATH.1", 0.5) for day in (8, 9, 10, 11)],
            # Cy has mastered one and is working on the next.
            on("2026-09-14", CY, "GP.A.MATH.1", 0.75), on("2026-10-28", CY, "GP.A.MATH.2", 0.6),
        ]  # fmt: skip
        sat = {**on("2026-10-10", ADA, "GP.A.MATH.1", 0.6), "object": {"id": SAT_MATH}}
        sat["result"] = {"score": {"raw": 560, "min": 200, "max": 800}}
        del sat["context"]
        await send(server, [*statements, sat])
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=10) as http:
            for path, name in (("/pacing/calendars/district-2026-27", "school-calendar"),
                               ("/pacing/plans/grade-8-stem", "pacing-plan"),
                               ("/pacing/graduation-menus/class-of-2027", "graduation-menu")):  # fmt: skip
                put = await http.put(path, json=example(name))
                assert put.status_code == 204, put.text
            framework = example("graduate-profile.case")["CFDocument"]["identifier"]
            await until(  # the server's projectors fold the framework imported before it started
                lambda: http.get("/competency/progress", params={"agent": orjson.dumps(ADA).decode(),
                                                                 "framework": framework}),
                lambda body: bool(body["competencies"]),
            )  # fmt: skip
            learners = {}
            for who in (ADA, BEN, CY):
                response = await http.get("/competency/progress", params={"agent": orjson.dumps(who).decode()})
                learners[who["name"]] = response.json()["learner"]
            section = await http.put(
                "/competency/sections/math-7a", json={"title": "Math 7A", "agents": [ADA, BEN, CY]}
            )
            assert section.status_code == 204

            def agent(who: dict[str, str]) -> str:
                return orjson.dumps(who).decode()

            ada = await until(
                lambda: http.get("/pacing/progress", params={"agent": agent(ADA), "as_of": AS_OF}),
                lambda b: b["plans"] and b["plans"][0]["mastered"] == 3,
            )
            [plan] = ada["plans"]
            calendar = calendar_from_data(example("school-calendar"))
            elapsed = calendar.school_days(date(2026, 8, 23), date(2026, 10, 30))
            total = calendar.school_days(date(2026, 8, 23), date(2027, 5, 28))
            assert plan["expected_pct"] == str(round(100 * elapsed / total, 1))
            assert (plan["pct_mastered"], plan["pace_status"], plan["required"]) == ("50.0", "ahead", 6)
            assert plan["active_weeks"] == 4  # the weeks of 2 Sep, 16 Sep, 7 Oct and 21 Oct
            assert plan["velocity"]["window"] == "0.75"
            assert plan["projected_completion"] is not None
            assert [t["code"] for t in plan["time_to_mastery"]] == ["GP.A.MATH.1", "GP.A.MATH.2", "GP.A.MATH.3"]

            ben = (await http.get("/pacing/progress", params={"agent": agent(BEN), "as_of": AS_OF})).json()["plans"][0]
            assert [b["code"] for b in ben["behind"]] == ["GP.A.MATH.1", "GP.A.MATH.2"]  # planned by weeks 4 and 8
            assert [s["code"] for s in ben["stalled"]] == ["GP.A.MATH.1"]
            assert (ben["pace_status"], ben["disengaged"], ben["last_activity"]) == ("behind", True, "2026-09-11")

            # Earlier days are judged on the evidence up to them.
            early = (await http.get("/pacing/progress", params={"agent": agent(ADA), "as_of": "2026-09-10"})).json()
            assert early["plans"][0]["mastered"] == 1

            everyone = (await http.get("/pacing/plans/grade-8-stem/learners", params={"as_of": AS_OF})).json()
            assert {r["learner"]: r["pace_status"] for r in everyone["learners"]} == {
                learners["Ada"]: "ahead", learners["Ben"]: "behind", learners["Cy"]: "behind",
            }  # fmt: skip
            behind_only = await http.get("/pacing/plans/grade-8-stem/learners",
                                         params={"as_of": AS_OF, "pace_status": "behind", "limit": 1})  # fmt: skip
            first_page = behind_only.json()
            assert len(first_page["learners"]) == 1
            assert first_page["more"]
            as_csv = await http.get("/pacing/plans/grade-8-stem/learners", params={"as_of": AS_OF, "format": "csv"})
            rows = list(csv.DictReader(io.StringIO(as_csv.text)))
            assert {r["learner"]: r["behind_count"] for r in rows}[learners["Ben"]] == "2"

            queue = (await http.get("/pacing/sections/math-7a/interventions",
                                    params={"plan": "grade-8-stem", "as_of": AS_OF})).json()  # fmt: skip
            assert [q["learner"] for q in queue["queue"]] == [learners["Ben"], learners["Cy"]]
            assert queue["queue"][0]["reasons"][0].startswith("2 required competencies past the planned week")
            assert any(r.startswith("stalled on GP.A.MATH.1, which") for r in queue["queue"][0]["reasons"])
            queue_csv = await http.get("/pacing/sections/math-7a/interventions",
                                       params={"plan": "grade-8-stem", "as_of": AS_OF, "format": "csv"})  # fmt: skip
            assert [r["rank"] for r in csv.DictReader(io.StringIO(queue_csv.text))] == ["1", "2"]

            ready = (await http.get("/pacing/readiness", params={"agent": agent(ADA), "menu": "class-of-2027",
                                                                 "as_of": AS_OF})).json()  # fmt: skip
            by_area = {r["area"]: r for r in ready["requirements"]}
            # Mathematics is met twice: by the performance assessment (her third indicator, 7 October) and by
            # the SAT (10 October); the earlier names the requirement's date.
            assert (by_area["mathematics"]["met"], by_area["mathematics"]["met_on"]) == (True, "2026-10-07")
            assert by_area["mathematics"]["met_by"] == "performance-assessment"
            sat_option = next(o for o in by_area["mathematics"]["options"] if o["id"] == "sat-math")
            assert (sat_option["met"], sat_option["met_on"], len(sat_option["evidence"])) == (True, "2026-10-10", 1)
            assert (by_area["english"]["met"], by_area["career"]["met"], ready["ready"]) == (False, False, False)
            assert ready["projected_ready"] is not None  # 4 competencies still needed, at her velocity

            # Bad requests: a clear 4xx naming what is wrong.
            bad_plan = {**example("pacing-plan"), "target": "2026-01-01"}
            for method, path, options, status, words in [
                ("GET", "/pacing/plans/nope/learners", {}, 404, "no pacing plan"),
                ("GET", "/pacing/progress", {"params": {"agent": agent(ADA), "as_of": "soon"}}, 400, "as_of"),
                ("GET", "/pacing/progress", {"params": {"agent": agent(ADA), "plan": "nope"}}, 404, "no pacing plan"),
                ("PUT", "/pacing/plans/grade-8-stem", {"json": bad_plan}, 400, "target must come after start"),
                ("PUT", "/pacing/plans/other", {"json": example("pacing-plan")}, 400, "differs from the address"),
                ("PUT", "/pacing/policy", {"json": {"band_pct": 90}}, 400, "band_pct"),
                ("PUT", "/pacing/graduation-menus/m", {"json": {"requirements": []}}, 400, "non-empty list"),
                ("GET", "/pacing/plans/grade-8-stem/learners", {"params": {"pace_status": "late"}}, 400, "pace_status"),
                ("GET", "/pacing/readiness", {"params": {"agent": agent(ADA), "menu": "x"}}, 404, "no graduation menu"),
                ("GET", "/pacing/sections/nope/interventions", {"params": {"plan": "grade-8-stem"}}, 404, "no section"),
            ]:  # fmt: skip
                response = await http.request(method, path, **options)
                assert (response.status_code, words in response.text) == (status, True), (path, response.text)
            reference = (await http.get("/pacing/reference")).json()
            assert [p["plan"] for p in reference["plans"]] == ["grade-8-stem"]
            assert reference["policies"][0]["band_pct"] == "3"
        async with httpx.AsyncClient(
            base_url=server.base_url, auth=(reader["key"], reader["secret"]), timeout=10
        ) as http:
            assert (await http.put("/pacing/plans/grade-8-stem", json=example("pacing-plan"))).status_code == 403
            assert (await http.get("/pacing/progress", params={"agent": agent(ADA)})).status_code == 200
