"""An auditor's view of one learner through ``proficio serve``: her history in log order, her views replayed as
of any moment (equal to the live views now), and the diff of two moments naming the evidence that changed
each conclusion."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.competency.test_competency_api import ADA, EXAMPLE, FRAMEWORK, URI, cli, send, tagged
from tests.support.polling import json_when
from tests.support.server import create_credential, running_server


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def wait_for(http: httpx.AsyncClient, params: dict[str, Any], ready: Any) -> Any:
    return await json_when(lambda: http.get("/competency/progress", params=params), ready, "her progress")


async def test_a_learners_history_views_as_of_and_diff(tmp_path: Path) -> None:
    env = {**os.environ, "PROFICIO_DATA_DIR": str(tmp_path)}
    env.pop("PROFICIO_DATABASE_URL", None)
    await asyncio.to_thread(cli, env, "frameworks", "import", str(EXAMPLE))
    reader = await asyncio.to_thread(create_credential, tmp_path, env, "statements/read")
    with running_server(tmp_path) as server:
        agent = orjson.dumps(ADA).decode()
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=10) as http:
            # The framework folded first (asked about a learner id no one has: her agent is no learner before she
            # sends anything, a 404).
            assert (await http.get("/competency/progress", params={"agent": agent})).status_code == 404
            nobody = "learner:" + "0" * 32
            await wait_for(http, {"learner": nobody, "framework": FRAMEWORK}, lambda b: bool(b["competencies"]))
            first = [tagged(ADA, "GP.A.MATH.1", 0.5, 2), tagged(ADA, "GP.A.MATH.1", 0.9, 3)]
            await send(server, first)
            await wait_for(http, {"agent": agent}, lambda b: sum(c["n_evidence"] for c in b["competencies"]) == 2)
            await asyncio.sleep(0.01)
            before = now()
            await asyncio.sleep(0.01)
            # Then: the 0.9 is voided, and a teacher rates the second indicator.
            voiding = {"actor": ADA, "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"},
                       "object": {"objectType": "StatementRef", "id": first[1]["id"]}}  # fmt: skip
            assert (await http.post("/xapi/statements", json=voiding)).status_code == 200
            rating = {"agent": ADA, "competency": URI["GP.A.MATH.2"], "level": "Proficient", "id": str(uuid.uuid4())}
            assert (await http.post("/competency/ratings", json=rating)).status_code == 201
            live = await wait_for(http, {"agent": agent},
                                  lambda b: {c["code"]: c["n_evidence"] for c in b["competencies"]}
                                  == {"GP.A.MATH.1": 1, "GP.A.MATH.2": 1})  # fmt: skip

            history = (await http.get("/audit/learner/history", params={"agent": agent})).json()
            kinds = [e["type"] for e in history["events"]]
            assert kinds == ["StatementStored", "StatementStored", "StatementVoided", "TeacherRatingRecorded"]
            assert [e["position"] for e in history["events"]] == sorted(e["position"] for e in history["events"])
            assert history["events"][2]["object"] == first[1]["id"]

            replayed_now = (await http.get("/audit/learner/views", params={"agent": agent})).json()
            assert replayed_now["competencies"] == live["competencies"]
            assert replayed_now["rollups"] == live["rollups"]

            earlier = (await http.get("/audit/learner/views", params={"agent": agent, "at": before})).json()
            math1 = {c["code"]: c for c in earlier["competencies"]}["GP.A.MATH.1"]
            assert (math1["score"], math1["mastered"], math1["n_evidence"]) == ("3.60", True, 2)
            assert "GP.A.MATH.2" not in {c["code"] for c in earlier["competencies"]}

            changes = (await http.get("/audit/learner/diff", params={"agent": agent, "from": before})).json()
            by_code = {c["code"]: c for c in changes["competencies"]}
            assert by_code["GP.A.MATH.1"]["evidence_withdrawn"] == [first[1]["id"]]
            assert by_code["GP.A.MATH.1"]["changed"]["mastered"] == {"from": True, "to": False}
            assert by_code["GP.A.MATH.2"]["evidence_added"]
            assert by_code["GP.A.MATH.2"]["changed"]["status"]["to"] == ("mastered")

            for params, words in (({"agent": agent, "at": "yesterday"}, "ISO 8601"),
                                  ({"agent": agent, "at": "2026-11-20T09:00:00"}, "time zone")):  # fmt: skip
                bad = await http.get("/audit/learner/views", params=params)
                assert (bad.status_code, words in bad.text) == (400, True)
            backwards = await http.get("/audit/learner/diff", params={"agent": agent, "from": now(), "to": before})
            assert backwards.status_code == 400
        reader_auth = (reader["key"], reader["secret"])
        read_headers = {"X-Experience-API-Version": "1.0.3"}
        async with httpx.AsyncClient(base_url=server.base_url, auth=reader_auth, headers=read_headers) as http:
            refused = await http.get("/audit/learner/history", params={"agent": agent})
            assert (refused.status_code, "all" in refused.text) == (403, True)
            # Reads of her data by this credential: her progress, her statements.
            assert (await http.get("/competency/progress", params={"agent": agent})).status_code == 200
            assert (await http.get("/xapi/statements", params={"agent": agent})).status_code == 200
            # And the generic view API: a page of rows about learners, then her row.
            listed = (await http.get("/views/learner_activity/learners")).json()["rows"]
            (her_id,) = {row["learner"] for row in listed}
            one = await http.get(f"/views/learner_activity/learners/{her_id}")
            assert one.status_code == 200
            assert (await http.get("/views/frameworks/frameworks")).status_code == 200  # about no learner
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=10) as http:
            deadline = time.monotonic() + 30
            while True:  # the record of access is appended a few times a second
                record = (await http.get("/audit/learner/access", params={"agent": agent})).json()
                mine = [a for a in record["accesses"] if a["credential"] == reader["key"]]
                if len(mine) == 4:
                    break
                assert time.monotonic() < deadline, record
                await asyncio.sleep(0.1)
            assert [a["what"] for a in mine] == [
                "/competency/progress", "/xapi/statements", "/views/learner_activity/learners",
                f"/views/learner_activity/learners/{her_id}",
            ]  # fmt: skip
            assert all(a["at_us"] > 0 and "agent=" in a["query"] for a in mine[:2])
            # The auditor's own reads are on the record too.
            assert any(a["what"] == "/audit/learner/views" for a in record["accesses"])
