"""A learner's competency progress over HTTP, as a dashboard reads it, from statements a real xAPI client
(tincan) sent to ``proficio serve`` on the embedded default, with the sample framework imported."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.support.server import running_server

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "graduate-profile.case.json"
OBJECTIVE = "http://adlnet.gov/expapi/activities/objective"


def tagged(code_uri: str, scaled: float, day: int) -> dict[str, Any]:
    return {
        "actor": {"mbox": "mailto:ada@district.example.org", "name": "Ada"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
        "object": {"id": f"https://district.example.org/items/{day}"},
        "result": {"score": {"scaled": scaled}},
        "context": {"contextActivities": {"other": [{"id": code_uri, "definition": {"type": OBJECTIVE}}]}},
        "timestamp": f"2026-11-{day:02d}T09:00:00Z",
    }


async def test_progress_of_a_learner_over_http(tmp_path: Path) -> None:
    package = orjson.loads(EXAMPLE.read_bytes())
    uri = next(i["uri"] for i in package["CFItems"] if i["humanCodingScheme"] == "GP.A.MATH.1")
    env = {**os.environ, "PROFICIO_DATA_DIR": str(tmp_path)}
    env.pop("PROFICIO_DATABASE_URL", None)
    imported = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "proficio_cli", "frameworks", "import", str(EXAMPLE), "--tenant", "default"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    with running_server(tmp_path) as server:
        from tincan import RemoteLRS, Statement

        lrs = RemoteLRS(endpoint=server.endpoint, username=server.key, password=server.secret, version="1.0.3")
        for scaled, day in ((0.5, 2), (0.85, 3), (0.6, 4)):
            saved = await asyncio.to_thread(lrs.save_statement, Statement(tagged(uri, scaled, day)))
            assert saved.success, saved.data
        agent = orjson.dumps({"mbox": "mailto:ada@district.example.org"}).decode()
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=10) as http:
            deadline = time.monotonic() + 20
            while True:
                response = await http.get("/competency/progress", params={"agent": agent})
                assert response.status_code == 200, response.text
                body = response.json()
                if body["competencies"] and len(body["competencies"][0]["evidence"]) == 3:
                    break
                assert time.monotonic() < deadline, body
                await asyncio.sleep(0.1)
            [math] = body["competencies"]
            assert (math["competency"], math["code"]) == (uri, "GP.A.MATH.1")
            assert (math["score"], math["level"], math["mastered"]) == ("3.40", "Proficient", True)
            assert [e["points"] for e in math["evidence"]] == ["2.0", "3.40", "2.4"]
            assert response.headers["X-Experience-API-Consistent-Through"].endswith("Z")

            latest_response = await http.get("/competency/progress", params={"agent": agent, "method": "latest"})
            assert latest_response.status_code == 200, latest_response.text
            latest = latest_response.json()
            assert (latest["competencies"][0]["score"], latest["competencies"][0]["mastered"]) == ("2.40", False)
            assert latest["competencies"][0]["mastered_at_us"] == math["mastered_at_us"]  # reached on day 3

            # A tenant policy and an alignment, recorded from the command line, apply to the next read.
            ratios = next(i["uri"] for i in package["CFItems"] if i["humanCodingScheme"] == "GP.A.MATH.2")
            for args in (
                ("policies", "set", "tenant", "--method", "latest"),
                ("alignments", "set", "https://district.example.org/items/quiz-9", ratios, "--weight", "0.5"),
            ):
                done = await asyncio.to_thread(
                    subprocess.run, [sys.executable, "-m", "proficio_cli", *args],
                    capture_output=True, text=True, env=env, timeout=60, check=False,
                )  # fmt: skip
                assert done.returncode == 0, done.stderr
            untagged = tagged(uri, 0.9, 5)
            untagged["object"]["id"] = "https://district.example.org/items/quiz-9"
            del untagged["context"]
            saved = await asyncio.to_thread(lrs.save_statement, Statement(untagged))
            assert saved.success
            deadline = time.monotonic() + 20
            while True:
                found = {c["code"]: c for c in (await http.get("/competency/progress", params={"agent": agent}))
                         .json()["competencies"]}  # fmt: skip
                if "GP.A.MATH.2" in found and found["GP.A.MATH.1"]["method"] == "latest":
                    break
                assert time.monotonic() < deadline, found
                await asyncio.sleep(0.1)
            assert (found["GP.A.MATH.1"]["score"], found["GP.A.MATH.1"]["mastered"]) == ("2.40", False)
            assert found["GP.A.MATH.2"]["score"] == "3.60"
            assert [e["source"] for e in found["GP.A.MATH.2"]["evidence"]] == ["alignment"]

            nobody = await http.get("/competency/progress", params={"learner": "learner:nobody"})
            assert nobody.json()["competencies"] == []
            both = await http.get("/competency/progress", params={"learner": "x", "agent": agent})
            assert both.status_code == 400
            bad = await http.get("/competency/progress", params={"agent": agent, "method": "median_recent",
                                                                   "parameter": 0})  # fmt: skip
            assert bad.status_code == 400
            assert "from 1 to 100" in bad.text
