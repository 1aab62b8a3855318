"""The demo generator as the people who use it would run it: ``proficio demo generate --post`` into ``proficio serve``
on the embedded default (and a tincan client posting part of a demo), with the progress API read back. The views
must recover the hidden mastery within the stated tolerance, every method must match its formula on the evidence
the API shows, and a replay of the evidence view from position 0 must give byte-identical responses."""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson

from proficio_cli._demo import Demo, DemoSettings, generate_demo
from proficio_cli._demo_io import batches, record_reference_data
from proficio_projector.competency import (
    Level,
    MasteryPolicy,
    Method,
    is_mastered,
    level_for,
    mastery_score,
    on_scale,
    parse_package,
)
from tests.competency.demo_support import expected_evidence, recovery
from tests.support.server import running_server

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "graduate-profile.case.json"
PACKAGE = EXAMPLE.read_bytes()
SCALE = [Level(Decimal(v["points"]), v["label"], v["mastery"]) for v in parse_package(PACKAGE).data["scale"]]
#: Each method with a parameter other than its default where it takes one.
METHODS: list[tuple[Method, int | None]] = [
    (Method.HIGHEST, None), (Method.LATEST, None), (Method.AVERAGE, None), (Method.N_MASTERY, 3),
    (Method.WEIGHTED_AVERAGE, 70), (Method.DECAYING_AVERAGE, 80), (Method.MODE, None), (Method.MEDIAN_RECENT, 4),
    (Method.AVERAGE_RECENT, 2), (Method.AVERAGE_HIGHEST, 3), (Method.POWER_LAW, None), (Method.BKT, None),
]  # fmt: skip
Views = dict[str, dict[str, Any]]


async def proficio(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "proficio_cli", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def embedded(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "PROFICIO_DATA_DIR": str(data_dir)}
    env.pop("PROFICIO_DATABASE_URL", None)
    return env


async def read_views(
    http: httpx.AsyncClient, generated: Demo, *, learners: int | None = None, **query: str
) -> dict[str, httpx.Response]:
    """Each learner's progress response (by account name); of the first ``learners`` only, when given."""
    found: dict[str, httpx.Response] = {}
    for learner in generated.truth[:learners]:
        response = await http.get("/competency/progress", params={"agent": orjson.dumps(learner.agent).decode(),
                                                                  **query})  # fmt: skip
        assert response.status_code == 200, response.text
        found[learner.learner] = response
    return found


def shown_evidence(views: dict[str, httpx.Response]) -> dict[tuple[str, str], list[tuple[str, Decimal]]]:
    return {
        (learner, c["competency"]): [(e["statement_id"], Decimal(e["points"])) for e in c["evidence"]]
        for learner, response in views.items()
        for c in response.json()["competencies"]
    }


async def wait_for_evidence(http: httpx.AsyncClient, generated: Demo, method: str | None = None) -> Views:
    """The progress of every learner once the views hold exactly the evidence the statements give (and, when given,
    the tenant policy's method applies): every genuine attempt once, nothing voided, aligned items included."""
    expected = expected_evidence(generated)
    deadline = time.monotonic() + 60
    while True:
        views = await read_views(http, generated)
        bodies = {learner: response.json() for learner, response in views.items()}
        methods = {c["method"] for body in bodies.values() for c in body["competencies"]}
        if shown_evidence(views) == expected and (method is None or methods == {method}):
            return bodies
        assert time.monotonic() < deadline, "the views did not reach the expected evidence"
        await asyncio.sleep(0.2)


def check_formula(competency: dict[str, Any], method: Method, parameter: int | None) -> None:
    """The API's score, mastery, level and mastery date are the method's formula on the evidence points it shows."""
    policy = on_scale(MasteryPolicy(method, parameter), SCALE)
    points = [Decimal(e["points"]) for e in competency["evidence"]]
    score = mastery_score(policy, points)
    assert competency["method"] == method.value
    assert competency["score"] == (None if score is None else str(score))
    assert competency["mastered"] == is_mastered(policy, score)
    level = level_for(score, SCALE)
    assert competency["level"] == (None if level is None else level.label)
    reached = [e["timestamp_us"] for n, e in enumerate(competency["evidence"], start=1)
               if is_mastered(policy, mastery_score(policy, points[:n]))]  # fmt: skip
    assert competency["mastered_at_us"] == (reached[0] if reached else None)


async def test_the_views_recover_the_hidden_mastery_match_the_formulas_and_replay_identically(tmp_path: Path) -> None:
    env = embedded(tmp_path)
    generated = generate_demo(PACKAGE, DemoSettings(learners=30, seed=1))
    out = tmp_path / "demo"
    with running_server(tmp_path) as server:
        posted = await proficio(
            env, "demo", "generate", "--learners", "30", "--seed", "1", "--out", str(out),
            "--post", server.endpoint, "--key", server.key, "--secret", server.secret,
        )  # fmt: skip
        assert f"posted {len(generated.statements)} statements" in posted.stdout
        assert "imported Proficio Sample Graduate Profile for default; 30 alignments defined" in posted.stdout
        assert (out / "truth.json").read_bytes() == generated.truth_json()
        # Canvas's decaying average (65 %): recent evidence counts most, as learning makes old failures stale,
        # while one slip or lucky guess does not decide alone.
        await proficio(env, "policies", "set", "tenant", "--method", "decaying_average")
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=30) as http:
            bodies = await wait_for_evidence(http, generated, "decaying_average")
            codes = {c["code"] for body in bodies.values() for c in body["competencies"]}
            assert len(codes) == 15  # the framework's indicators, named from the imported framework
            under_policy = recovery(generated.truth, {
                learner: {c["competency"]: (c["mastered"], c["mastered_at_us"]) for c in body["competencies"]}
                for learner, body in bodies.items()
            })  # fmt: skip
            assert under_policy.pairs == 450
            assert under_policy.meets_tolerance(), str(under_policy)

            expected = expected_evidence(generated)
            for method, parameter in METHODS:
                query = {"method": method.value} | ({"parameter": str(parameter)} if parameter is not None else {})
                # A third of the learners (150 competencies) per method keeps the test short; BKT reads them all.
                views = await read_views(http, generated, learners=None if method is Method.BKT else 10, **query)
                shown = shown_evidence(views)
                assert len(shown) == 15 * len(views)
                assert shown == {pair: expected[pair] for pair in shown}
                for response in views.values():
                    for competency in response.json()["competencies"]:
                        check_formula(competency, method, parameter)
                if method is Method.BKT:  # the model the hidden state follows recovers it too
                    by_bkt = recovery(generated.truth, {
                        learner: {c["competency"]: (c["mastered"], c["mastered_at_us"])
                                  for c in response.json()["competencies"]}
                        for learner, response in views.items()
                    })  # fmt: skip
                    assert by_bkt.meets_tolerance(), str(by_bkt)

            before = {learner: r.content for learner, r in (await read_views(http, generated)).items()}
            before_bkt = {
                learner: r.content for learner, r in (await read_views(http, generated, method="bkt")).items()
            }
            rebuilt = await proficio(env, "rebuild", "competency_evidence")
            assert "competency_evidence: generation 2 built from the log and swapped in" in rebuilt.stdout
            after = {learner: r.content for learner, r in (await read_views(http, generated)).items()}
            after_bkt = {learner: r.content for learner, r in (await read_views(http, generated, method="bkt")).items()}
            assert after == before
            assert after_bkt == before_bkt


async def test_a_tincan_client_posts_part_of_a_demo_and_the_progress_api_reads_it_back(tmp_path: Path) -> None:
    generated = generate_demo(PACKAGE, DemoSettings(learners=3, seed=4))
    assert any(s["verb"]["id"].endswith("/voided") for s in generated.statements)
    assert len({s["id"] for s in generated.statements}) < len(generated.statements)  # retries to send again
    with running_server(tmp_path) as server:
        from tincan import RemoteLRS, Statement, StatementList

        lrs = RemoteLRS(endpoint=server.endpoint, username=server.key, password=server.secret, version="1.0.3")
        for batch in batches(generated.statements, 100):
            # tincan rewrites the dicts it is given (object_type): hand it copies.
            statements = StatementList([Statement(copy.deepcopy(s)) for s in batch])
            saved = await asyncio.to_thread(lrs.save_statements, statements)
            assert saved.success, saved.data
        await record_reference_data(tmp_path, "default", generated, PACKAGE, str(EXAMPLE))
        async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=30) as http:
            bodies = await wait_for_evidence(http, generated)
            for body in bodies.values():
                assert len(body["competencies"]) == 15
                for competency in body["competencies"]:
                    check_formula(competency, Method.HIGHEST, None)  # no policy set: Canvas's default method
            sources = {e["source"] for body in bodies.values() for c in body["competencies"] for e in c["evidence"]}
            assert sources == {"statement", "alignment"}
