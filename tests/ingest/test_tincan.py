"""A real xAPI client (the ``tincan`` package's RemoteLRS) against ``proficio serve``."""

from __future__ import annotations

import uuid

import pytest
from tincan import (
    Activity,
    ActivityDefinition,
    Agent,
    Context,
    LanguageMap,
    RemoteLRS,
    Result,
    Score,
    Statement,
    StatementRef,
    Verb,
)

from tests.support.server import RunningServer

from .conftest import tincan_lrs


@pytest.fixture
def lrs(served: tuple[RunningServer, str]) -> RemoteLRS:
    return tincan_lrs(served[0])


def learner(n: int) -> Agent:
    return Agent(name=f"Learner {n}", mbox=f"mailto:learner{n}@school.example.org")


def answered(n: int, score: float, registration: str | None = None) -> Statement:
    return Statement(
        actor=learner(n),
        verb=Verb(id="http://adlnet.gov/expapi/verbs/answered", display=LanguageMap({"en-US": "answered"})),
        object=Activity(
            id="https://school.example.org/items/fractions-1",
            definition=ActivityDefinition(name=LanguageMap({"en-US": "Fractions 1"})),
        ),
        result=Result(score=Score(scaled=score), success=score >= 0.7),
        context=Context(registration=registration) if registration else None,
    )


def test_save_retrieve_query_void_and_page(lrs: RemoteLRS) -> None:
    # Not lrs.about(): tincan 1.0.0 refuses an About that lists a version newer than it knows (2.0.0).
    one = lrs.save_statement(answered(1, 0.9))
    assert one.success, one.data
    saved = one.content
    assert saved.id is not None

    registration = str(uuid.uuid4())
    many = lrs.save_statements([answered(2, 0.4, registration), answered(2, 0.8, registration), answered(3, 0.5)])
    assert many.success, many.data
    ids = [str(s.id) for s in many.content]
    assert len(ids) == 3

    got = lrs.retrieve_statement(str(saved.id))
    assert got.success, got.data
    assert got.content.actor.mbox == "mailto:learner1@school.example.org"
    assert got.content.result.score.scaled == 0.9
    assert got.content.stored is not None

    by_agent = lrs.query_statements({"agent": learner(2)})
    assert by_agent.success, by_agent.data
    assert [str(s.id) for s in by_agent.content.statements] == [ids[1], ids[0]]
    by_registration = lrs.query_statements({"registration": registration, "ascending": True})
    assert by_registration.success, by_registration.data
    assert [str(s.id) for s in by_registration.content.statements] == ids[:2]
    by_verb = lrs.query_statements({"verb": Verb(id="http://adlnet.gov/expapi/verbs/answered")})
    assert len(by_verb.content.statements) == 4

    voiding = Statement(
        actor=learner(3),
        verb=Verb(id="http://adlnet.gov/expapi/verbs/voided", display=LanguageMap({"en-US": "voided"})),
        object=StatementRef(id=ids[2]),
    )
    assert lrs.save_statement(voiding).success
    assert not lrs.retrieve_statement(ids[2]).success
    voided = lrs.retrieve_voided_statement(ids[2])
    assert voided.success, voided.data
    assert str(voided.content.id) == ids[2]

    page = lrs.query_statements({"limit": 2})
    assert page.success, page.data
    seen = [str(s.id) for s in page.content.statements]
    while page.content.more:
        page = lrs.more_statements(page.content)
        assert page.success, page.data
        seen += [str(s.id) for s in page.content.statements]
    assert len(seen) == 4  # five stored, one voided
    assert ids[2] not in seen


def test_a_statement_sent_by_tincan_and_again_by_another_client_is_one_statement(
    lrs: RemoteLRS, served: tuple[RunningServer, str]
) -> None:
    """tincan writes ``PT1M11S`` as ``PT01M11S``; the same statement from a client that does not is no conflict."""
    import httpx

    statement = answered(7, 0.75)
    statement.id = uuid.uuid4()
    statement.result.duration = "PT1M11S"
    saved = lrs.save_statement(statement)
    assert saved.success, saved.data
    sent = lrs.retrieve_statement(str(statement.id))
    assert sent.success
    running = served[0]
    # The same statement as a client that writes its duration as given: the same content, so no conflict.
    body = {
        "id": str(statement.id),
        "actor": {"objectType": "Agent", "name": "Learner 7", "mbox": "mailto:learner7@school.example.org"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered", "display": {"en-US": "answered"}},
        "object": {"objectType": "Activity", "id": "https://school.example.org/items/fractions-1",
                   "definition": {"name": {"en-US": "Fractions 1"}}},
        "result": {"score": {"scaled": 0.75}, "success": True, "duration": "PT1M11S"},
    }  # fmt: skip
    again = httpx.put(
        f"{running.endpoint}statements", params={"statementId": str(statement.id)}, json=body,
        headers=running.headers, timeout=30,
    )  # fmt: skip
    assert again.status_code == 204, again.text
    other = httpx.put(
        f"{running.endpoint}statements", params={"statementId": str(statement.id)},
        json={**body, "result": {**body["result"], "duration": "PT1M12S"}}, headers=running.headers, timeout=30,
    )  # fmt: skip
    assert other.status_code == 409, other.text
