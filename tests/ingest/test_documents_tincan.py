"""A cmi5/SCORM-style player keeping its state with ``tincan``'s RemoteLRS against ``proficio serve``.

tincan 1.0.0 (the newest release) has three faults on Python 3 that a player works around, and so does
this test: ``Document.content`` refuses ``bytes`` (so every ``retrieve_state`` raises TypeError; patched
below to accept them), ``retrieve_state`` never reads the response headers (the player takes the ETag
from the HTTP response itself) and ``save_state`` sends its request twice and answers the second
response (with If-Match, that duplicate is refused with 412: the first copy already changed the
document, so the tag is stale, which is the lost-update protection doing its job).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import pytest
from tincan import Activity, Agent, RemoteLRS
from tincan.documents import StateDocument
from tincan.documents.document import Document

from proficio_events import open_event_log
from proficio_ingest._documents import DOCUMENT_EVENTS
from tests.support.server import RunningServer

from .conftest import tincan_lrs

COURSE = Activity(id="https://school.example.org/courses/fractions/au/1")
LEARNER = Agent(name="Ada", mbox="mailto:ada@school.example.org")


@dataclass
class Player:
    lrs: RemoteLRS
    log_url: str


def _content(self: Document, value: bytes | bytearray | str | None) -> None:
    if isinstance(value, bytes):
        value = bytearray(value)
    elif isinstance(value, str):
        value = bytearray(value, "utf-8")
    self._content = value


@pytest.fixture
def player(served: tuple[RunningServer, str], monkeypatch: pytest.MonkeyPatch) -> Player:
    monkeypatch.setattr(Document, "content", property(Document.content.fget, _content))
    running, store_url = served
    return Player(tincan_lrs(running), store_url)


def suspend_data(page: int, answers: dict[str, str]) -> str:
    return json.dumps({"location": f"page-{page}", "answers": answers})


def retrieve(lrs: RemoteLRS, state_id: str) -> tuple[int, StateDocument, str | None]:
    """What the player does on launch and on resume: the state, its HTTP status and its ETag."""
    response = lrs.retrieve_state(COURSE, LEARNER, state_id)
    assert response.success, response.data
    return response.response.status, response.content, response.response.getheader("ETag")


def document_event_types(log_url: str) -> list[str]:
    async def read() -> list[str]:
        log = await open_event_log(log_url, migrate=False)
        try:
            return [e.event_type for e in await log.read_after(0, 10_000) if e.event_type in DOCUMENT_EVENTS]
        finally:
            await log.close()

    return asyncio.run(read())


def test_player_saves_resumes_and_is_protected_from_a_stale_tab(player: Player) -> None:
    lrs = player.lrs
    # First launch: nothing saved yet.
    status, _doc, etag = retrieve(lrs, "suspend_data")
    assert (status, etag) == (404, None)

    # The player saves its suspend data (no ETag yet: State PUTs may go without one in 1.0.3).
    first = StateDocument(
        id="suspend_data",
        activity=COURSE,
        agent=LEARNER,
        content=suspend_data(1, {}),
        content_type="application/json",
    )
    assert lrs.save_state(first).success

    # Relaunch on another device: resume where the learner stopped.
    status, resumed, etag = retrieve(lrs, "suspend_data")
    assert status == 200
    assert json.loads(bytes(resumed.content)) == {"location": "page-1", "answers": {}}
    assert etag is not None
    assert etag.startswith('"')
    assert len(etag) == 42

    # Progress, saved with the ETag it resumed from.
    resumed.etag = etag
    resumed.content_type = "application/json"
    resumed.content = suspend_data(2, {"q1": "3/4"})
    saved = lrs.save_state(resumed)
    assert saved.response.status in (204, 412)  # 412: tincan's duplicate send, refused as stale
    status, now, newer = retrieve(lrs, "suspend_data")
    assert json.loads(bytes(now.content)) == {"location": "page-2", "answers": {"q1": "3/4"}}
    assert newer != etag

    # A second tab still holding the old ETag cannot overwrite the newer progress.
    stale = StateDocument(
        id="suspend_data",
        activity=COURSE,
        agent=LEARNER,
        content=suspend_data(1, {}),
        content_type="application/json",
        etag=etag,
    )
    refused = lrs.save_state(stale)
    assert not refused.success
    assert refused.response.status == 412
    status, still, _ = retrieve(lrs, "suspend_data")
    assert json.loads(bytes(still.content))["location"] == "page-2"

    # A bookmark beside it, listed with it, then cleared when the learner restarts the course.
    bookmark = StateDocument(id="bookmark", activity=COURSE, agent=LEARNER, content="page-2", content_type="text/plain")
    assert lrs.save_state(bookmark).success
    ids = lrs.retrieve_state_ids(COURSE, LEARNER)
    assert ids.success, ids.data
    assert sorted(ids.content) == ["bookmark", "suspend_data"]
    status, mark, _ = retrieve(lrs, "bookmark")
    assert (status, bytes(mark.content)) == (200, b"page-2")
    assert lrs.clear_state(COURSE, LEARNER).success
    assert lrs.retrieve_state_ids(COURSE, LEARNER).content == []
    assert retrieve(lrs, "suspend_data")[0] == 404

    # Every write the LRS accepted is one event; refused ones left no trace.
    # tincan sends each save twice: the first save twice (both accepted, State PUTs need no header),
    # the progress once accepted and once refused, the stale tab twice refused, the bookmark twice.
    assert document_event_types(player.log_url) == ["DocumentPut"] * 5 + ["DocumentDeleted"] * 2
