"""The district demo as a district would run it, through ``proficio serve`` on the embedded default: the command
line generates the district, imports its OneRoster package, records its pacing plan and mastery policy and posts
the statements; then teachers read the plan's learners and their section's intervention queue on the judging day,
and the public and staff read the equity views the server refreshed. The planted stalled and disengaged learners
must be flagged and queued, the planted gap shown, and each school's small group hidden from the public only."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from proficio_cli._demo_district import DISENGAGED, STALLED
from proficio_events import sqlite_url
from tests.equity.district_demo import (
    LEARNERS,
    METHOD,
    SEED,
    STALLED_PRECISION,
    STALLED_RECALL,
    by_learner_id,
    detection,
    district_demo,
    planted,
)
from tests.support.server import running_server

TENANT = "default"  # the server credential's
PLAN_ID = "demo-course"


async def proficio(env: dict[str, str], *args: str) -> str:
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "proficio_cli", *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def caught_up(http: httpx.AsyncClient) -> None:
    """Wait until every projector has folded the whole log, then for an equity refresh that saw all of it (the
    refresh time unchanged over more than the server's refresh interval)."""
    deadline = time.monotonic() + 120
    while any(view["lag"] for view in (await http.get("/views/status")).json()):
        assert time.monotonic() < deadline, "the projectors did not catch up"
        await asyncio.sleep(0.3)
    before = None
    while True:
        status = (await http.get("/equity/status")).json()
        if status.get("learners") == LEARNERS and before is not None and status["refreshed_us"] == before:
            return
        before = status.get("refreshed_us")
        assert time.monotonic() < deadline, status
        await asyncio.sleep(2.5)


async def test_a_district_runs_the_demo_and_reads_its_pacing_and_equity_views(tmp_path: Path) -> None:
    env = {**os.environ, "PROFICIO_DATA_DIR": str(tmp_path)}
    env.pop("PROFICIO_DATABASE_URL", None)
    demo = district_demo()
    assert demo.district is not None
    day = demo.district.as_of.isoformat()
    out = tmp_path / "demo"
    options = ["--learners", str(LEARNERS), "--seed", str(SEED), "--schools", "2"]
    await proficio(env, "demo", "generate", *options, "--out", str(out))
    assert (out / "truth.json").read_bytes() == demo.truth_json()
    start = demo.settings.start.isoformat()
    imported = await proficio(env, "roster", "import", str(out / "oneroster"), "--effective", start)
    assert "140 learners" in imported
    truths = await by_learner_id(sqlite_url(tmp_path), demo, TENANT)  # the ids the roster import gave them
    await proficio(env, "pacing", "set", "plan", str(out / "pacing-plan.json"))
    await proficio(env, "policies", "set", "tenant", "--method", METHOD)
    with running_server(tmp_path) as server:
        posted = await proficio(env, "demo", "generate", *options, "--post", server.endpoint, "--key", server.key,
                                "--secret", server.secret)  # fmt: skip
        assert f"posted {len(demo.statements)} statements" in posted
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=60) as http:
            await caught_up(http)

            # A teacher reads the plan's learners on the judging day: the planted ones are flagged.
            response = await http.get(f"/pacing/plans/{PLAN_ID}/learners", params={"as_of": day, "limit": 500})
            assert response.status_code == 200, response.text
            listed = {item["learner"]: item for item in response.json()["learners"]}
            assert set(listed) == set(truths)
            stalled = detection(truths, {x for x, item in listed.items() if item["stalled_learner"]}, STALLED)
            assert stalled.recall >= STALLED_RECALL and stalled.precision >= STALLED_PRECISION, str(stalled)  # noqa: PT018
            disengaged = detection(truths, {x for x, item in listed.items() if item["disengaged"]}, DISENGAGED)
            assert (disengaged.recall, disengaged.precision) == (1.0, 1.0), str(disengaged)

            # Each school's intervention queue holds its planted learners, stalled ones with what they are stuck on.
            for school in ("school-1", "school-2"):
                response = await http.get(f"/pacing/sections/class-{school}/interventions",
                                          params={"plan": PLAN_ID, "as_of": day})  # fmt: skip
                assert response.status_code == 200, response.text
                queue = {item["learner"]: item for item in response.json()["queue"]}
                mine = {x for x, t in truths.items() if t.district and t.district.profile.school == school}
                for learner in (planted(truths, STALLED) | planted(truths, DISENGAGED)) & mine:
                    assert learner in queue, truths[learner].learner
                for learner in planted(truths, STALLED) & stalled.flagged & mine:
                    stuck = truths[learner].district
                    assert stuck is not None
                    assert stuck.stuck_on in [c["competency"] for c in queue[learner]["stalled"]]
                    assert "active but no new mastery in the last 3 active weeks" in queue[learner]["reasons"]
                for learner in planted(truths, DISENGAGED) & mine:
                    assert queue[learner]["disengaged"], truths[learner].learner

            # The public sees the gap; each small group is hidden from it at its school and the district, not from
            # staff. (The server judges the equity views on today; percent mastered does not depend on the day.)
            async def groups(factor: str, level: str, audience: str = "public") -> dict[str, dict[str, Any]]:
                params = {"scope": f"plan:{PLAN_ID}", "factor": factor, "level": level, "audience": audience}
                response = await http.get("/equity", params=params)
                assert response.status_code == 200, response.text
                return {group["value"]: group for group in response.json()["groups"]}

            english = await groups("english_learner", "district")
            assert english["true"]["gap_vs_all"]["pct_mastered"] < 0
            medians = {value: group["metrics"]["pct_mastered"]["value"] for value, group in english.items()}
            assert medians["true"] < medians["false"], medians
            for level, value in (("school:school-1", "american_indian_or_alaska_native"),
                                 ("school:school-2", "native_hawaiian_or_other_pacific_islander")):  # fmt: skip
                for place in (level, "district"):
                    hidden = (await groups("race_ethnicity", place))[value]
                    assert (hidden["n"], hidden["hidden"], hidden["label"]) == (None, "primary", "*")
                    assert (await groups("race_ethnicity", place, "staff"))[value]["n"] == 3
