"""The competency API as a dashboard and a teacher use it, through ``proficio serve`` on the embedded
default and on PostgreSQL, with statements sent by a real xAPI client (tincan): a learner's progress across the sample
framework with rollups, the evidence trail, teacher ratings, sections and their grid, CSV, and the
reference data over HTTP; and a clear 4xx for each kind of bad request."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.support.polling import eventually
from tests.support.server import RunningServer, create_credential, running_server

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "graduate-profile.case.json"
OBJECTIVE = "http://adlnet.gov/expapi/activities/objective"
PACKAGE = orjson.loads(EXAMPLE.read_bytes())
FRAMEWORK = PACKAGE["CFDocument"]["identifier"]
PROFILE = PACKAGE["CFDocument"]["uri"]
URI = {item["humanCodingScheme"]: item["uri"] for item in PACKAGE["CFItems"]}
ADA = {"mbox": "mailto:ada@district.example.org", "name": "Ada"}
BEN = {"mbox": "mailto:ben@district.example.org", "name": "Ben"}


def tagged(actor: dict[str, str], code: str, scaled: float, day: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "actor": actor,
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
        "object": {"id": f"https://district.example.org/items/{code}/{day}"},
        "result": {"score": {"scaled": scaled}},
        "context": {"contextActivities": {"other": [{"id": URI[code], "definition": {"type": OBJECTIVE}}]}},
        "timestamp": f"2026-11-{day:02d}T09:00:00Z",
    }


def cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "proficio_cli", *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr


def auth(credential: dict[str, str]) -> httpx.BasicAuth:
    return httpx.BasicAuth(credential["key"], credential["secret"])


async def send(server: RunningServer, statements: list[dict[str, Any]]) -> None:
    from tincan import RemoteLRS, Statement, StatementList

    lrs = RemoteLRS(endpoint=server.endpoint, username=server.key, password=server.secret, version="1.0.3")
    saved = await asyncio.to_thread(lrs.save_statements, StatementList([Statement(s) for s in statements]))
    assert saved.success, saved.data


async def test_the_competency_api_end_to_end(tmp_path: Path, store_url: str) -> None:
    database_url = None if store_url.startswith("sqlite") else store_url  # the embedded default, or PostgreSQL
    env = {**os.environ, "PROFICIO_DATA_DIR": str(tmp_path)}
    env.pop("PROFICIO_DATABASE_URL", None)
    if database_url:
        env["PROFICIO_DATABASE_URL"] = database_url
    await asyncio.to_thread(cli, env, "frameworks", "import", str(EXAMPLE), "--tenant", "default")
    reader = await asyncio.to_thread(create_credential, tmp_path, env, "statements/read")
    with running_server(tmp_path, database_url) as server:
        statements = [
            tagged(ADA, "GP.A.MATH.1", 0.5, 2), tagged(ADA, "GP.A.MATH.1", 0.8, 3), tagged(ADA, "GP.A.MATH.2", 0.9, 3),
            tagged(BEN, "GP.A.MATH.1", 0.25, 2), tagged(BEN, "GP.A.MATH.1", 0.5, 4), tagged(BEN, "GP.A.SCI.1", 1.0, 5),
        ]  # fmt: skip
        await send(server, statements)
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=10) as http:
            agent = orjson.dumps(ADA).decode()

            async def ada_progress(**params: Any) -> Any:
                response = await http.get("/competency/progress", params={"agent": agent, **params})
                assert response.status_code == 200, response.text
                return response.json()

            # The server's projectors fold the framework imported before it started.
            await eventually(
                lambda: http.get("/competency/progress", params={"agent": agent, "framework": FRAMEWORK}),
                lambda r: r.status_code == 200, "the frameworks view",
            )  # fmt: skip

            # A teacher rates Ada's third math indicator from her capstone; a retry with the same id is harmless.
            rating_id = str(uuid.uuid4())
            rating = {"agent": ADA, "competency": URI["GP.A.MATH.3"], "level": "Advanced", "id": rating_id,
                      "comment": "capstone", "timestamp": "2026-11-06T12:00:00Z"}  # fmt: skip
            for _ in range(2):
                rated = await http.post("/competency/ratings", json=rating)
                assert rated.status_code == 201, rated.text
                assert rated.json()["points"] == "4"
            changed = await http.post("/competency/ratings", json={**rating, "level": "Developing"})
            assert changed.status_code == 409, changed.text

            body = await eventually(
                lambda: ada_progress(framework=FRAMEWORK),
                lambda b: sum(c["n_evidence"] for c in b["competencies"]) == 4, "Ada's evidence",
            )  # fmt: skip
            by_code = {c["code"]: c for c in body["competencies"]}
            assert len(by_code) == len(URI)  # every competency of the framework, with evidence or not
            assert (by_code["GP.A.MATH.1"]["score"], by_code["GP.A.MATH.1"]["status"]) == ("3.20", "mastered")
            assert by_code["GP.A.MATH.1"]["mastered_at"] == "2026-11-03T09:00:00.000Z"
            assert by_code["GP.A.SCI.1"]["status"] == "not_started"
            [rated_evidence] = by_code["GP.A.MATH.3"]["evidence"]
            assert (rated_evidence["source"], rated_evidence["points"]) == ("rating", "4")
            assert rated_evidence["authority"]
            assert rated_evidence["statement"] is None
            assert by_code["GP.A.MATH.1"]["evidence"][0]["statement"].startswith("/xapi/statements?statementId=")
            rollups = {r["code"]: r for r in body["rollups"]}
            math = rollups["GP.A.MATH"]
            assert (math["children_total"], math["children_mastered"], math["status"]) == (3, 3, "mastered")
            assert (rollups["GP.A"]["children_mastered"], rollups["GP.A"]["status"]) == (1, "in_progress")
            profile = next(r for r in body["rollups"] if r["competency"] == PROFILE)
            assert (profile["children_total"], profile["status"]) == (2, "in_progress")

            # The same listing in pages, and as CSV.
            first = await ada_progress(framework=FRAMEWORK, limit=10)
            assert [c["code"] for c in first["competencies"]] == [c["code"] for c in body["competencies"][:10]]
            following = (await http.get(first["more"])).json()
            assert [c["code"] for c in following["competencies"]] == [c["code"] for c in body["competencies"][10:20]]
            as_csv = await http.get("/competency/progress", params={"agent": agent, "framework": FRAMEWORK,
                                                                     "format": "csv"})  # fmt: skip
            assert as_csv.headers["content-type"].startswith("text/csv")
            table = list(csv.DictReader(io.StringIO(as_csv.text)))
            assert len(table) == len(URI)
            assert {r["code"]: r["score"] for r in table}["GP.A.MATH.1"] == "3.20"
            mastered_only = await ada_progress(framework=FRAMEWORK, mastered="true")
            assert {c["code"] for c in mastered_only["competencies"]} == {"GP.A.MATH.1", "GP.A.MATH.2", "GP.A.MATH.3"}

            # Voiding a statement withdraws its evidence; the trail shows it, marked, and what voided it.
            voided_id = statements[1]["id"]
            voiding = {"actor": ADA, "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"},
                       "object": {"objectType": "StatementRef", "id": voided_id}}  # fmt: skip
            assert (await http.post("/xapi/statements", json=voiding)).status_code == 200
            trail_params = {"agent": agent, "competency": URI["GP.A.MATH.1"]}

            async def trail() -> Any:
                return (await http.get("/competency/trail", params=trail_params)).json()

            steps = await eventually(trail, lambda t: any(s["voided"] for s in t["evidence"]), "the void")
            assert [(s["points"], s["voided"], s["score_after"]) for s in steps["evidence"]] == [
                ("2.0", False, "2.00"), ("3.2", True, None),
            ]  # fmt: skip
            assert steps["evidence"][1]["voided_by"]
            assert (steps["score"], steps["mastered"]) == ("2.00", False)
            trail_csv = await http.get("/competency/trail", params={**trail_params, "format": "csv"})
            assert len(list(csv.DictReader(io.StringIO(trail_csv.text)))) == 2

            # Withdrawing the rating takes its evidence out; an unknown rating is a 404.
            withdrawn = await http.delete(f"/competency/ratings/{rating_id}", params={"agent": agent})
            assert withdrawn.status_code == 204, withdrawn.text
            after = await eventually(
                lambda: ada_progress(competency=URI["GP.A.MATH.3"]), lambda b: not b["competencies"], "withdrawal"
            )
            assert after["competencies"] == []
            missing = await http.delete(f"/competency/ratings/{uuid.uuid4()}", params={"agent": agent})
            assert missing.status_code == 404

            # A section from agents and learner ids; its grid and its distribution, as JSON and CSV.
            ben = (await http.get("/competency/progress", params={"agent": orjson.dumps(BEN).decode()})).json()
            put = await http.put("/competency/sections/math-7a", json={"title": "Math 7A", "agents": [ADA],
                                                                       "learners": [ben["learner"]]})  # fmt: skip
            assert put.status_code == 204, put.text

            async def grid(**params: Any) -> httpx.Response:
                return await http.get("/competency/sections/math-7a/grid", params=params)

            shown = (await eventually(lambda: grid(framework=FRAMEWORK), lambda r: r.status_code == 200, "grid")).json()
            assert (shown["title"], shown["learners_total"], len(shown["competencies"])) == ("Math 7A", 2, len(URI))
            column = {c["code"]: c for c in shown["competencies"]}["GP.A.MATH.1"]
            # Ada: 2.0 (her 3.2 voided); Ben: the highest of 1.0 and 2.0.
            assert column["levels"] == {"Beginning": 0, "Developing": 2, "Proficient": 0, "Advanced": 0}
            assert (column["no_evidence"], column["mastered"], column["mean"]) == (0, 0, "2.00")
            math_index = [c["code"] for c in shown["competencies"]].index("GP.A.MATH.2")
            cells = {row["learner"]: row["cells"][math_index] for row in shown["learners"]}
            assert cells[ben["learner"]] is None
            assert [c for c in cells.values() if c] == [
                {"score": "3.60", "level": "Proficient", "mastered": True, "stalled": False}
            ]
            paged = (await grid(framework=FRAMEWORK, limit=1)).json()
            assert len(paged["learners"]) == 1
            rest = (await http.get(paged["more"])).json()
            assert [r["learner"] for r in paged["learners"] + rest["learners"]] == [
                r["learner"] for r in shown["learners"]
            ]
            grid_csv = list(csv.reader(io.StringIO((await grid(framework=FRAMEWORK, format="csv")).text)))
            assert grid_csv[0][:2] == ["learner", "mastered"]
            assert sorted(grid_csv[0][2:]) == sorted(URI)
            assert len(grid_csv) == 3
            spread = list(csv.DictReader(io.StringIO((await grid(format="csv", rows="competencies")).text)))
            assert {r["code"] for r in spread} == {"GP.A.MATH.1", "GP.A.MATH.2", "GP.A.SCI.1"}
            roster = (await http.get("/competency/sections/math-7a")).json()["learners"]
            assert sorted(roster) == sorted([ben["learner"], (await ada_progress())["learner"]])

            # Reference data over HTTP: an alignment, a tenant policy, a rollup rule.
            quiz = "https://district.example.org/items/quiz-9"
            assert (await http.put("/competency/alignments", json={"activity": quiz, "competency": URI["GP.A.LIT.1"],
                                                                    "weight": 0.5})).status_code == 204  # fmt: skip
            assert (await http.put("/competency/policies/tenant", json={"method": "latest"})).status_code == 204
            rule = {"rule": "k_of_n", "k": 2}
            assert (
                await http.put(f"/competency/rollup-rules/competency:{URI['GP.A.MATH']}", json=rule)
            ).status_code == 204
            untagged = tagged(ADA, "GP.A.LIT.1", 1.0, 9)
            untagged["object"]["id"] = quiz
            del untagged["context"]
            await send(server, [untagged])
            latest = await eventually(
                lambda: ada_progress(framework=FRAMEWORK),
                lambda b: {c["code"]: c for c in b["competencies"]}["GP.A.LIT.1"]["n_evidence"] == 1
                and {c["code"]: c for c in b["competencies"]}["GP.A.MATH.1"]["method"] == "latest"
                and {r["code"]: r for r in b["rollups"]}["GP.A.MATH"]["rule"] == "k_of_n",
                "reference data",
            )  # fmt: skip
            lit = {c["code"]: c for c in latest["competencies"]}["GP.A.LIT.1"]
            assert [(e["source"], e["weight"]) for e in lit["evidence"]] == [("alignment", "0.5")]
            assert {r["code"]: r for r in latest["rollups"]}["GP.A.MATH"]["k"] == 2
            listed = (await http.get("/competency/alignments")).json()["alignments"]
            assert [(a["activity"], a["weight"]) for a in listed] == [(quiz, "0.5")]
            policies = (await http.get("/competency/policies")).json()
            assert [(p["scope"], p["method"]) for p in policies["policies"]] == [("tenant", "latest")]
            assert [(r["rule"], r["k"]) for r in policies["rollup_rules"]] == [("k_of_n", 2)]
            removed = await http.delete(
                "/competency/alignments", params={"activity": quiz, "competency": URI["GP.A.LIT.1"]}
            )
            assert removed.status_code == 204
            await eventually(
                lambda: http.get("/competency/alignments"), lambda r: r.json()["alignments"] == [], "removal"
            )

            # The OpenAPI document describes the API, one operation id per method.
            document = (await http.get("/openapi.json")).json()
            ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
            assert len(ids) == len(set(ids))
            grid_doc = document["paths"]["/competency/sections/{section_id}/grid"]["get"]
            assert set(grid_doc["responses"]["200"]["content"]) == {"application/json", "text/csv"}
            assert "learners" in document["components"]["schemas"]["GridOut"]["properties"]

            # Bad requests: a clear 4xx naming what is wrong, never a 500.
            bad: list[tuple[str, str, dict[str, Any], int, str]] = [
                ("GET", "/competency/progress", {"params": {"agent": agent, "limit": 0}}, 400, "limit"),
                ("GET", "/competency/progress", {"params": {"agent": agent, "format": "xml"}}, 400, "format"),
                ("GET", "/competency/progress", {"params": {"agent": agent, "framework": "nope"}}, 404, "framework"),
                ("GET", "/competency/progress", {"params": {"agent": "{"}}, 400, "agent"),
                ("GET", "/competency/progress", {"params": {"agent": agent, "method": "best"}}, 400, "mastery policy"),
                ("GET", "/competency/progress", {"params": {"agent": agent, "parameter": 3}}, 400, "parameter"),
                ("GET", "/competency/sections/nope/grid", {}, 404, "section"),
                ("GET", "/competency/sections/math-7a/grid", {"params": {"rows": "cells"}}, 400, "rows"),
                ("POST", "/competency/ratings", {"json": {"agent": ADA, "competency": "https://x.example/c",
                                                          "level": "Advanced"}}, 400, "no competency"),
                ("POST", "/competency/ratings", {"json": {"agent": ADA, "competency": URI["GP.A.SCI.2"],
                                                          "points": 9}}, 400, "top"),
                ("POST", "/competency/ratings", {"json": {"agent": ADA, "competency": URI["GP.A.SCI.2"],
                                                          "level": "Advanced", "timestamp": "2026-11-06T12:00:00"}},
                 400, "time zone"),
                ("POST", "/competency/ratings", {"json": {"agent": ADA, "level": "Advanced"}}, 400, "competency"),
                ("PUT", "/competency/alignments", {"json": {"activity": quiz, "competency": URI["GP.A.LIT.1"],
                                                            "weight": 2}}, 400, "weight"),
                ("PUT", "/competency/policies/tenant", {"json": {"method": "best"}}, 400, "mastery policy"),
                ("PUT", "/competency/policies/everyone", {"json": {"method": "latest"}}, 400, "scope"),
                ("PUT", "/competency/rollup-rules/tenant", {"json": {"rule": "k_of_n"}}, 400, "k_of_n takes k"),
                ("PUT", "/competency/sections/has space", {"json": {"learners": ["x"]}}, 400, "section id"),
            ]  # fmt: skip
            for method, path, options, status, words in bad:
                response = await http.request(method, path, **options)
                assert (response.status_code, words in response.text) == (status, True), (path, response.text)

        # A credential that may only read statements may read progress, but neither rate nor define.
        async with httpx.AsyncClient(base_url=server.base_url, auth=auth(reader), timeout=10) as http:
            assert (await http.get("/competency/progress", params={"agent": agent})).status_code == 200
            refused = await http.post("/competency/ratings", json={**rating, "id": str(uuid.uuid4())})
            assert refused.status_code == 403
            assert "scopes" in refused.text
            assert (await http.put("/competency/policies/tenant", json={"method": "highest"})).status_code == 403
