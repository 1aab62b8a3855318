"""Tenant A's credentials can neither read nor infer tenant B's data through any endpoint: statements (queries,
``more`` links, ids, voided ids, a reused id), documents, activities, the views, competency progress,
sections and reference data, pacing, equity and the audit API. Run through ``proficio serve`` on both
backends, with the same kinds of data in both tenants."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.competency.test_competency_api import EXAMPLE, FRAMEWORK, URI, cli, tagged
from tests.support.server import create_credential, running_server

ANA = {"mbox": "mailto:ana@a.example.org", "name": "Ana"}
BOB = {"mbox": "mailto:bob@b.example.org", "name": "Bob"}
STATE = {"activityId": "https://b.example.org/courses/secret", "stateId": "bookmark"}


async def fill(http: httpx.AsyncClient, actor: dict[str, str], tenant: str, tag: str) -> dict[str, Any]:
    """Statements (one voided), a state document, a section, a plan, an alignment, a policy, a rating."""
    statements = [tagged(actor, code, 0.9, day) for code, day in (("GP.A.MATH.1", 2), ("GP.A.MATH.2", 3))]
    for n, statement in enumerate(statements):
        statement["object"] = {"id": f"https://{tag}.example.org/items/{n}",
                               "definition": {"name": {"en-US": f"{tag}'s secret quiz"}}}  # fmt: skip
    assert (await http.post("/xapi/statements", json=statements)).status_code == 200
    voiding = {"id": str(uuid.uuid4()), "actor": actor, "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"},
               "object": {"objectType": "StatementRef", "id": statements[1]["id"]}}  # fmt: skip
    assert (await http.post("/xapi/statements", json=voiding)).status_code == 200
    state_params = {**STATE, "agent": orjson.dumps(actor).decode()}
    assert (await http.put("/xapi/activities/state", params=state_params, json={"page": tag})).status_code == 204
    # Her learner id, as the learner directory has it since her statements (the API looks her up by agent).
    access = await http.get("/audit/learner/access", params={"agent": orjson.dumps(actor).decode()})
    assert access.status_code == 200, access.text
    learner = access.json()["learner"]
    assert (await http.put(f"/competency/sections/{tag}-sec7", json={"learners": [learner]})).status_code == 204
    plan = {"start": "2026-08-24", "target": "2027-05-28", "sections": [f"{tag}-sec7"],
            "competencies": [{"uri": URI["GP.A.MATH.1"], "tier": "must"}]}  # fmt: skip
    assert (await http.put(f"/pacing/plans/{tag}-plan", json=plan)).status_code == 204
    alignment = {"activity": f"https://{tag}.example.org/items/quiz", "competency": URI["GP.A.LIT.1"]}
    assert (await http.put("/competency/alignments", json=alignment)).status_code == 204
    assert (await http.put(f"/competency/policies/competency:{URI['GP.A.MATH.1']}",
                           json={"method": "latest"})).status_code == 204  # fmt: skip
    deadline = time.monotonic() + 60
    rating_id = str(uuid.uuid4())
    while True:  # the frameworks view folds the import first
        rated = await http.post("/competency/ratings", json={"learner": learner, "competency": URI["GP.A.SCI.1"],
                                                             "level": "Proficient", "id": rating_id})  # fmt: skip
        if rated.status_code == 201:
            break
        assert time.monotonic() < deadline, rated.text
        await asyncio.sleep(0.1)
    return {"statements": statements, "voiding": voiding, "learner": learner, "rating": rating_id}


async def test_one_tenant_cannot_read_or_infer_anothers_data(tmp_path: Path, store_url: str) -> None:
    database_url = None if store_url.startswith("sqlite") else store_url
    env = {**os.environ, "PROFICIO_DATA_DIR": str(tmp_path)}
    env.pop("PROFICIO_DATABASE_URL", None)
    if database_url:
        env["PROFICIO_DATABASE_URL"] = database_url
    for tenant in ("district-a", "district-b"):
        await asyncio.to_thread(cli, env, "frameworks", "import", str(EXAMPLE), "--tenant", tenant)
    a = await asyncio.to_thread(create_credential, tmp_path, env, "all", tenant="district-a")
    b = await asyncio.to_thread(create_credential, tmp_path, env, "all", tenant="district-b")
    with running_server(tmp_path, database_url) as server:
        headers = {"X-Experience-API-Version": "1.0.3"}
        client_a = httpx.AsyncClient(
            base_url=server.base_url, headers=headers, auth=(a["key"], a["secret"]), timeout=10
        )
        client_b = httpx.AsyncClient(
            base_url=server.base_url, headers=headers, auth=(b["key"], b["secret"]), timeout=10
        )
        async with client_a as http_a, client_b as http_b:
            ours = await fill(http_a, ANA, "district-a", "a")
            theirs = await fill(http_b, BOB, "district-b", "b")
            their_ids = {s["id"] for s in theirs["statements"]} | {theirs["voiding"]["id"]}
            secret_texts = [BOB["mbox"], "b.example.org", theirs["learner"], *their_ids, "b-sec7", "b-plan"]

            def clean(response: httpx.Response, asked: str | None = None) -> None:
                """Nothing of B's in the response, besides what A asked about (echoed back)."""
                for text in secret_texts:
                    if text == asked:
                        continue
                    assert text not in response.text, (str(response.url), text)

            # Wait until A's own views have everything (so "nothing of B" is not "nothing yet").
            deadline = time.monotonic() + 60
            while True:
                mine = (await http_a.get("/competency/progress", params={"learner": ours["learner"]})).json()
                if sum(c["n_evidence"] for c in mine["competencies"]) == 2:
                    break
                assert time.monotonic() < deadline, mine
                await asyncio.sleep(0.1)

            # Statements: queries, paging, by id, voided id, by agent, by activity.
            page = await http_a.get("/xapi/statements", params={"limit": 1})
            pages = [page]
            while more := page.json().get("more"):
                page = await http_a.get(more)
                pages.append(page)
            seen = {st["id"] for response in pages for st in response.json()["statements"]}
            assert seen == {ours["statements"][0]["id"], ours["voiding"]["id"]}  # A's own, the voided one left out
            for response in pages:
                clean(response)
            for params in ({"statementId": theirs["statements"][0]["id"]},
                           {"voidedStatementId": theirs["statements"][1]["id"]}):  # fmt: skip
                assert (await http_a.get("/xapi/statements", params=params)).status_code == 404
            for params in ({"agent": orjson.dumps(BOB).decode()}, {"activity": "https://b.example.org/items/0"}):
                response = await http_a.get("/xapi/statements", params=params)
                assert response.json()["statements"] == []

            # Documents and activities.
            bob_state = {**STATE, "agent": orjson.dumps(BOB).decode()}
            assert (await http_a.get("/xapi/activities/state", params=bob_state)).status_code == 404
            assert (await http_b.get("/xapi/activities/state", params=bob_state)).status_code == 200
            activity = await http_a.get("/xapi/activities", params={"activityId": "https://b.example.org/items/0"})
            assert activity.json() == {"objectType": "Activity", "id": "https://b.example.org/items/0"}  # no definition
            theirs_activity = await http_b.get(
                "/xapi/activities", params={"activityId": "https://b.example.org/items/0"}
            )
            assert "b's secret quiz" in theirs_activity.text

            # Views, by listing and by key.
            for name, table in (("learner_activity", "learners"), ("competency_evidence", "observations"),
                                ("competency_evidence", "voids"), ("competency_reference", "sections"),
                                ("competency_reference", "alignments"), ("pacing_reference", "plans")):  # fmt: skip
                listing = await http_a.get(f"/views/{name}/{table}")
                assert listing.status_code == 200, listing.text
                clean(listing)
            assert (await http_a.get(f"/views/learner_activity/learners/{theirs['learner']}")).status_code == 404

            # Competency, pacing, equity and audit, asked directly about B's learner and objects.
            for path, params in (
                ("/competency/progress", {"learner": theirs["learner"]}),
                ("/competency/trail", {"learner": theirs["learner"], "competency": URI["GP.A.MATH.1"]}),
                ("/competency/alignments", {}), ("/competency/policies", {}), ("/competency/sections", {}),
                ("/pacing/reference", {}), ("/pacing/progress", {"learner": theirs["learner"]}),
                ("/audit/learner/history", {"learner": theirs["learner"]}),
                ("/audit/learner/views", {"learner": theirs["learner"]}),
                ("/equity/scopes", {}),
            ):  # fmt: skip
                response = await http_a.get(path, params=params)
                assert response.status_code == 200, (path, response.text)
                clean(response, asked=params.get("learner"))
            assert (await http_a.get("/competency/progress", params={"learner": theirs["learner"]})).json()[
                "competencies"
            ] == []
            assert (await http_a.get("/audit/learner/history", params={"learner": theirs["learner"]})).json()[
                "events"
            ] == []
            for path, params in (
                ("/competency/sections/b-sec7", {}), ("/competency/sections/b-sec7/grid", {}),
                ("/pacing/plans/b-plan/learners", {}), ("/pacing/sections/b-sec7/interventions", {"plan": "b-plan"}),
            ):  # fmt: skip
                assert (await http_a.get(path, params=params)).status_code == 404, path
            withdrawn = await http_a.delete(f"/competency/ratings/{theirs['rating']}",
                                            params={"learner": theirs["learner"]})  # fmt: skip
            assert withdrawn.status_code == 404
            # Reusing B's statement id in A is no conflict: a 409 would tell A the id exists elsewhere.
            reused = {**tagged(ANA, "GP.A.MATH.3", 0.5, 4), "id": theirs["statements"][0]["id"]}
            assert (await http_a.post("/xapi/statements", json=reused)).status_code == 200
            # B's data is all still there for B.
            assert (await http_b.get("/competency/sections/b-sec7")).status_code == 200
            assert theirs["statements"][0]["id"] in (await http_b.get("/xapi/statements", params={
                "statementId": theirs["statements"][0]["id"]})).text  # fmt: skip
            assert FRAMEWORK
