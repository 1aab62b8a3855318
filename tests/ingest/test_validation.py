"""Table-driven tests of the xAPI statement validator (1.0.3 and 2.0.0).

Each rejected case names the property path the error must point at, so a regression that
rejects for the wrong reason (or at the wrong place) fails too.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from proficio_ingest._errors import StatementValidationError
from proficio_ingest._validation import (
    XAPIVersion,
    is_uuid,
    parse_timestamp,
    validate_agent_json,
    validate_statement,
)

BOTH: tuple[XAPIVersion, ...] = ("1.0.3", "2.0.0")
V1: tuple[XAPIVersion, ...] = ("1.0.3",)
V2: tuple[XAPIVersion, ...] = ("2.0.0",)

UUID = "fd41c918-b88b-4b20-a0a5-a4c32391aaa0"
SHA256 = "495395e777cd98da653df9615d09c0fd6bb2f8d4788394cd53c56a3bfdcd848a"
AGENT = {"objectType": "Agent", "name": "Ann", "mbox": "mailto:ann@example.com"}
OTHER_AGENT = {"mbox": "mailto:bob@example.com"}
OAUTH_CONSUMER = {"account": {"homePage": "http://example.com/xAPI/OAuth/Token", "name": "oauth_consumer_x75db"}}
GROUP = {"objectType": "Group", "name": "Team", "mbox": "mailto:team@example.com", "member": [AGENT, OTHER_AGENT]}
ANON_GROUP = {"objectType": "Group", "member": [AGENT, OTHER_AGENT]}
ACTIVITY = {"objectType": "Activity", "id": "http://example.com/activities/1"}
ATTACHMENT = {
    "usageType": "http://example.com/attachment-usage/test",
    "display": {"en-US": "A test attachment"},
    "description": {"en-US": "A test attachment (description)"},
    "contentType": "text/plain; charset=ascii",
    "length": 27,
    "sha2": SHA256,
    "fileUrl": "http://over.there.com/file.txt",
}
BASE: dict[str, Any] = {
    "actor": {"mbox": "mailto:ann@example.com"},
    "verb": {"id": "http://adlnet.gov/expapi/verbs/completed", "display": {"en-US": "completed"}},
    "object": {"id": "http://example.com/activities/1"},
}
SUBSTATEMENT: dict[str, Any] = {
    "objectType": "SubStatement",
    "actor": AGENT,
    "verb": {"id": "http://example.com/verbs/planned"},
    "object": {"id": "http://example.com/activities/2"},
}


class _Delete:
    """Marks a property to remove; survives deepcopy so nested markers are still recognised."""

    def __deepcopy__(self, memo: dict[int, object]) -> _Delete:
        return self


DELETE = _Delete()


def stmt(**changes: object) -> dict[str, Any]:
    """BASE with dotted-path changes, e.g. stmt(**{"actor.mbox": "x", "object.definition": DELETE})."""
    result = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        target: Any = result
        *parents, last = dotted.split(".")
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        if value is DELETE:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = copy.deepcopy(value)
        else:
            target[last] = copy.deepcopy(value)
    return result


def interaction(interaction_type: str, **lists: object) -> dict[str, Any]:
    definition: dict[str, Any] = {"interactionType": interaction_type, "correctResponsesPattern": ["a"]}
    definition.update(lists)
    return stmt(**{"object.definition": definition})


COMPONENTS = [{"id": "a", "description": {"en-US": "A"}}, {"id": "b"}]

# ------------------------------------------------------------------------------------------------
# Accepted statements.

ACCEPTED: list[Any] = [
    pytest.param(BASE, BOTH, id="minimal"),
    pytest.param(
        stmt(
            id=UUID,
            actor=AGENT,
            result={
                "score": {"scaled": 0.95, "raw": 95, "min": 0, "max": 100},
                "success": True,
                "completion": False,
                "response": "We agreed on some example actions.",
                "duration": "PT1H0M0S",
                "extensions": {"http://example.com/ext": {"nested": [1, None, "x"]}},
            },
            context={
                "registration": "ec531277-b57b-4c15-8d91-d292c5b2b8f7",
                "instructor": GROUP,
                "team": ANON_GROUP,
                "contextActivities": {
                    "parent": [{"id": "http://example.com/course"}],
                    "grouping": [ACTIVITY],
                    "category": [{"id": "https://w3id.org/xapi/cmi5/context/categories/cmi5"}],
                    "other": [],
                },
                "revision": "1.2",
                "platform": "Example LMS",
                "language": "en-US",
                "statement": {"objectType": "StatementRef", "id": UUID},
                "extensions": {"http://example.com/altitude": None},
            },
            timestamp="2024-05-04T12:00:00.123Z",
            stored="2024-05-04T12:00:01.000Z",
            authority={"objectType": "Group", "member": [OAUTH_CONSUMER, OTHER_AGENT]},
            version="1.0.0",
            attachments=[ATTACHMENT],
        ),
        BOTH,
        id="every-property",
    ),
    pytest.param(stmt(actor={"mbox_sha1sum": "ebd31e95054c018b10727ccffd2ef2ec3a016ee9"}), BOTH, id="actor-sha1"),
    pytest.param(stmt(actor={"openid": "http://toby.openid.example.org/"}), BOTH, id="actor-openid"),
    pytest.param(
        stmt(actor={"account": {"homePage": "http://www.example.com", "name": "13936749"}}), BOTH, id="account"
    ),
    pytest.param(stmt(actor=GROUP), BOTH, id="identified-group"),
    pytest.param(stmt(actor={"objectType": "Group", "openid": "http://example.com/g"}), BOTH, id="group-no-members"),
    pytest.param(stmt(actor=ANON_GROUP), BOTH, id="anonymous-group"),
    pytest.param(stmt(**{"verb.display": DELETE}), BOTH, id="verb-without-display"),
    pytest.param(stmt(object=AGENT), BOTH, id="object-agent"),
    pytest.param(stmt(object=GROUP), BOTH, id="object-group"),
    pytest.param(stmt(object={"objectType": "StatementRef", "id": UUID.upper()}), BOTH, id="statementref-uppercase"),
    pytest.param(
        stmt(
            object={
                **SUBSTATEMENT,
                "context": {"revision": "2", "platform": "p"},
                "timestamp": "2999-01-01T00:00:00Z",
                "result": {"success": True},
                "attachments": [ATTACHMENT],
            }
        ),
        BOTH,
        id="substatement",
    ),
    pytest.param(
        stmt(
            verb={"id": "http://adlnet.gov/expapi/verbs/voided", "display": {"en-US": "voided"}},
            object={"objectType": "StatementRef", "id": UUID},
        ),
        BOTH,
        id="voiding",
    ),
    pytest.param(interaction("true-false", correctResponsesPattern=["true"]), BOTH, id="true-false"),
    pytest.param(interaction("choice", choices=COMPONENTS), BOTH, id="choice"),
    pytest.param(interaction("sequencing", choices=COMPONENTS), BOTH, id="sequencing"),
    pytest.param(interaction("likert", scale=COMPONENTS), BOTH, id="likert"),
    pytest.param(interaction("matching", source=COMPONENTS, target=COMPONENTS), BOTH, id="matching"),
    pytest.param(interaction("performance", steps=COMPONENTS), BOTH, id="performance"),
    pytest.param(interaction("numeric", correctResponsesPattern=["1[:]3"]), BOTH, id="numeric"),
    pytest.param(interaction("other", correctResponsesPattern=[]), BOTH, id="other-empty-pattern"),
    pytest.param(
        stmt(
            **{
                "object.definition": {
                    "name": {"en-US": "n", "zh-Hant-TW": "n", "sr-Latn-RS": "n", "de-CH-1996": "n", "es-419": "n"},
                    "description": {"x-private": "d", "i-klingon": "d", "en-US-x-twain": "d", "EN-us": "d"},
                    "type": "http://adlnet.gov/expapi/activities/cmi.interaction",
                    "moreInfo": "https://example.com/more?x=1#top",
                    "extensions": {"urn:example:ext": [], "http://example.com/%C3%A9": 1},
                }
            }
        ),
        BOTH,
        id="definition-language-tags",
    ),
    pytest.param(stmt(**{"object.id": "http://example.com/path/../x"}), BOTH, id="iri-with-dot-segments"),
    pytest.param(stmt(**{"object.id": "http://example.com/فعل/خواندن"}), BOTH, id="iri-non-ascii"),
    pytest.param(stmt(**{"object.id": "urn:uuid:" + UUID}), BOTH, id="iri-urn"),
    pytest.param(
        stmt(context={"contextActivities": {"parent": {"id": "http://example.com/p"}}}), BOTH, id="ctx-single"
    ),
    pytest.param(stmt(timestamp="2023-05-04T12:00:00-05:00"), BOTH, id="timestamp-offset"),
    pytest.param(stmt(timestamp="2008-09-15T15:53:00.601+00:00"), BOTH, id="timestamp-rfc3339"),
    pytest.param(stmt(timestamp="2008-09-15T15:53:00+0530"), BOTH, id="timestamp-basic-offset"),
    pytest.param(stmt(timestamp="2008-09-15T15:53:00.123456789+05"), BOTH, id="timestamp-hour-offset"),
    pytest.param(stmt(timestamp="2008-09-15T15:53:00"), BOTH, id="timestamp-no-zone"),
    pytest.param(stmt(timestamp="2099-11-22T09:27:29.495Z"), BOTH, id="timestamp-future"),
    pytest.param(stmt(result={"duration": "P1DT12H36M0.12567S"}), BOTH, id="duration-fine-precision"),
    pytest.param(stmt(result={"duration": "PT16559.14S"}), BOTH, id="duration-seconds"),
    pytest.param(stmt(result={"duration": "P3Y1M29DT4H35M59.14S"}), BOTH, id="duration-full"),
    pytest.param(stmt(result={"duration": "P4W"}), BOTH, id="duration-weeks"),
    pytest.param(stmt(result={"duration": "P0D"}), BOTH, id="duration-zero"),
    pytest.param(stmt(result={"score": {"min": 5, "raw": 5, "max": 5, "scaled": -1}}), BOTH, id="score-bounds"),
    pytest.param(stmt(result={"score": {"raw": -1e10}}), BOTH, id="score-raw-unbounded"),
    pytest.param(stmt(version="1.0"), BOTH, id="version-1.0"),
    pytest.param(stmt(version="1.0.9"), BOTH, id="version-1.0.9"),
    pytest.param(stmt(version="2.0.0"), V2, id="version-2.0.0"),
    pytest.param(stmt(authority=AGENT), BOTH, id="authority-agent"),
    pytest.param(
        stmt(attachments=[{**ATTACHMENT, "fileUrl": DELETE, "length": 0, "sha2": "ab" * 64}]),
        BOTH,
        id="attachment-sha512-no-url",
    ),
    pytest.param(stmt(**{"attachments": [{k: v for k, v in ATTACHMENT.items() if k != "fileUrl"}]}), BOTH, id="att"),
    pytest.param(
        stmt(
            context={
                "contextAgents": [
                    {"objectType": "contextAgent", "agent": AGENT, "relevantTypes": ["https://example.com/t/coach"]},
                    {"objectType": "contextAgent", "agent": OTHER_AGENT},
                ],
                "contextGroups": [
                    {"objectType": "contextGroup", "group": GROUP, "relevantTypes": ["https://example.com/t/a"]},
                    {"objectType": "contextGroup", "group": ANON_GROUP},
                ],
            }
        ),
        V2,
        id="context-agents-and-groups",
    ),
]


def _strip_deleted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_deleted(v) for k, v in value.items() if v is not DELETE}
    if isinstance(value, list):
        return [_strip_deleted(v) for v in value]
    return value


@pytest.mark.parametrize(("statement", "versions"), ACCEPTED)
def test_accepted(statement: dict[str, Any], versions: tuple[XAPIVersion, ...]) -> None:
    for version in versions:
        validate_statement(_strip_deleted(statement), version=version)


# ------------------------------------------------------------------------------------------------
# Rejected statements: (statement, versions, path, fragment of the reason).

REJECTED: list[Any] = [
    # Statement level
    pytest.param([BASE], BOTH, "", "JSON object", id="not-an-object"),
    pytest.param(stmt(dummy=1), BOTH, "dummy", "unknown property 'dummy'", id="unknown-top-level"),
    pytest.param(stmt(Version="1.0.3"), BOTH, "Version", "case-sensitive", id="wrong-case-key"),
    pytest.param(stmt(actor=DELETE), BOTH, "actor", "is required", id="no-actor"),
    pytest.param(stmt(verb=DELETE), BOTH, "verb", "is required", id="no-verb"),
    pytest.param(stmt(object=DELETE), BOTH, "object", "is required", id="no-object"),
    pytest.param(stmt(id="AA97B177-9383-4934-8543-0F91A7A028368"), BOTH, "id", "UUID", id="id-too-long"),
    pytest.param(stmt(id="MA97B177-9383-4934-8543-0F91A7A02836"), BOTH, "id", "UUID", id="id-non-hex"),
    pytest.param(stmt(id=12345), BOTH, "id", "must be a string", id="id-number"),
    pytest.param(stmt(id=None), BOTH, "id", "must not be null", id="id-null"),
    # Actor
    pytest.param(stmt(actor="ann"), BOTH, "actor", "JSON object", id="actor-string"),
    pytest.param(stmt(**{"actor.objectType": "agent"}), BOTH, "actor.objectType", "'Agent' or 'Group'", id="agent-c"),
    pytest.param(stmt(**{"actor.objectType": 1}), BOTH, "actor.objectType", "must be a string", id="ot-number"),
    pytest.param(stmt(actor={"name": "x"}), BOTH, "actor", "exactly one of", id="actor-no-ifi"),
    pytest.param(
        stmt(**{"actor.openid": "http://example.com/me"}), BOTH, "actor", "found 2: mbox, openid", id="two-ifis"
    ),
    pytest.param(stmt(**{"actor.mbox": "ann@example.com"}), BOTH, "actor.mbox", "'mailto:' IRI", id="mbox-no-mailto"),
    pytest.param(stmt(**{"actor.mbox": "mailto:"}), BOTH, "actor.mbox", "'mailto:' IRI", id="mbox-empty"),
    pytest.param(stmt(**{"actor.mbox": 42}), BOTH, "actor.mbox", "must be a string", id="mbox-number"),
    pytest.param(stmt(actor={"mbox_sha1sum": "abc"}), BOTH, "actor.mbox_sha1sum", "40 hex", id="sha1-short"),
    pytest.param(stmt(actor={"openid": "open.id.com/me"}), BOTH, "actor.openid", "absolute URI", id="openid-no-scheme"),
    pytest.param(stmt(actor={"account": {"name": "x"}}), BOTH, "actor.account.homePage", "is required", id="acct-home"),
    pytest.param(
        stmt(actor={"account": {"homePage": "http://x.com"}}), BOTH, "actor.account.name", "is required", id="acct-name"
    ),
    pytest.param(
        stmt(actor={"account": {"homePage": "homePage.com/u", "name": "1"}}),
        BOTH,
        "actor.account.homePage",
        "absolute IRL",
        id="acct-homepage-no-scheme",
    ),
    pytest.param(
        stmt(actor={"account": {"homePage": "http://x.com", "name": "1", "id": 2}}),
        BOTH,
        "actor.account.id",
        "unknown property 'id'",
        id="acct-extra",
    ),
    pytest.param(stmt(**{"actor.name": None}), BOTH, "actor.name", "must not be null", id="name-null"),
    pytest.param(stmt(**{"actor.name": 7}), BOTH, "actor.name", "must be a string", id="name-number"),
    pytest.param(
        stmt(**{"actor.member": [AGENT]}), BOTH, "actor.member", "only a Group has members", id="agent-member"
    ),
    # Groups
    pytest.param(stmt(actor={"objectType": "Group", "name": "g"}), BOTH, "actor.member", "anonymous", id="anon-no-mem"),
    pytest.param(
        stmt(actor={"objectType": "Group", "member": [GROUP]}),
        BOTH,
        "actor.member[0]",
        "must be an Agent, not a Group",
        id="group-in-group",
    ),
    pytest.param(
        stmt(actor={"objectType": "Group", "member": [AGENT, {"name": "x"}]}),
        BOTH,
        "actor.member[1]",
        "exactly one of",
        id="member-no-ifi",
    ),
    pytest.param(stmt(actor={**GROUP, "member": AGENT}), BOTH, "actor.member", "must be an array", id="member-obj"),
    pytest.param(stmt(actor={**GROUP, "openid": "http://x.com"}), BOTH, "actor", "found 2", id="group-two-ifis"),
    # Verb
    pytest.param(stmt(**{"verb.id": DELETE}), BOTH, "verb.id", "is required", id="verb-no-id"),
    pytest.param(stmt(**{"verb.id": "adlnet.gov/expapi/verbs/x"}), BOTH, "verb.id", "absolute IRI", id="verb-iri"),
    pytest.param(stmt(**{"verb.id": "http://example.com/a b"}), BOTH, "verb.id", "absolute IRI", id="verb-space"),
    pytest.param(stmt(**{"verb.id": "http://example.com/%zz"}), BOTH, "verb.id", "absolute IRI", id="verb-bad-pct"),
    pytest.param(stmt(**{"verb.display": {"en_US": "x"}}), BOTH, "verb.display.en_US", "RFC 5646", id="display-tag"),
    pytest.param(stmt(**{"verb.display": {"a12345": "x"}}), BOTH, "verb.display.a12345", "RFC 5646", id="tag-alnum"),
    pytest.param(stmt(**{"verb.display": {"en-US": 1}}), BOTH, "verb.display.en-US", "must be a string", id="disp-1"),
    pytest.param(stmt(**{"verb.display": "completed"}), BOTH, "verb.display", "language map", id="display-string"),
    pytest.param(stmt(**{"verb.name": "x"}), BOTH, "verb.name", "unknown property 'name'", id="verb-extra"),
    # Object
    pytest.param(stmt(object=OTHER_AGENT), BOTH, "object.mbox", "unknown property 'mbox'", id="agent-obj-no-type"),
    pytest.param(stmt(**{"object.objectType": "activity"}), BOTH, "object.objectType", "must be 'Activity'", id="ot"),
    pytest.param(stmt(**{"object.id": DELETE}), BOTH, "object.id", "is required", id="activity-no-id"),
    pytest.param(stmt(**{"object.definition": "x"}), BOTH, "object.definition", "JSON object", id="def-string"),
    pytest.param(stmt(**{"object.definition.name": {"en-US": None}}), BOTH, "object.definition.name.en-US", "null"),
    pytest.param(stmt(**{"object.definition.type": "course"}), BOTH, "object.definition.type", "IRI", id="type-iri"),
    pytest.param(stmt(**{"object.definition.moreInfo": "x.com/y"}), BOTH, "object.definition.moreInfo", "IRL"),
    pytest.param(
        stmt(**{"object.definition.interactionType": "multiple-choice"}),
        BOTH,
        "object.definition.interactionType",
        "must be one of",
        id="bad-interaction-type",
    ),
    pytest.param(
        stmt(**{"object.definition.correctResponsesPattern": ["a"]}),
        BOTH,
        "object.definition.correctResponsesPattern",
        "requires 'interactionType'",
        id="pattern-without-type",
    ),
    pytest.param(
        interaction("choice", correctResponsesPattern="a"),
        BOTH,
        "object.definition.correctResponsesPattern",
        "must be an array",
        id="pattern-string",
    ),
    pytest.param(
        interaction("choice", correctResponsesPattern=[1]),
        BOTH,
        "object.definition.correctResponsesPattern[0]",
        "must be a string",
        id="pattern-number",
    ),
    pytest.param(
        interaction("true-false", choices=COMPONENTS),
        BOTH,
        "object.definition.choices",
        "not allowed for interactionType 'true-false'",
        id="choices-for-true-false",
    ),
    pytest.param(
        interaction("choice", scale=COMPONENTS),
        BOTH,
        "object.definition.scale",
        "not allowed for interactionType 'choice'",
        id="scale-for-choice",
    ),
    pytest.param(
        stmt(**{"object.definition.steps": COMPONENTS}),
        BOTH,
        "object.definition.steps",
        "requires 'interactionType'",
        id="steps-without-type",
    ),
    pytest.param(
        interaction("choice", choices=[{"id": "a"}, {"id": "a"}]),
        BOTH,
        "object.definition.choices[1].id",
        "duplicate",
        id="duplicate-component",
    ),
    pytest.param(
        interaction("likert", scale=[{"description": {"en": "x"}}]),
        BOTH,
        "object.definition.scale[0].id",
        "is required",
        id="component-no-id",
    ),
    pytest.param(
        interaction("matching", source=[{"id": "a", "name": "x"}]),
        BOTH,
        "object.definition.source[0].name",
        "unknown property",
        id="component-extra",
    ),
    pytest.param(
        stmt(**{"object.definition.extensions": {"not.valid.com/extension": 1}}),
        BOTH,
        "object.definition.extensions.not.valid.com/extension",
        "absolute IRI",
        id="extension-key",
    ),
    pytest.param(stmt(object={"objectType": "StatementRef", "id": "x"}), BOTH, "object.id", "UUID", id="ref-uuid"),
    pytest.param(
        stmt(object={"objectType": "StatementRef", "id": UUID, "definition": {}}),
        BOTH,
        "object.definition",
        "unknown property",
        id="ref-extra",
    ),
    pytest.param(
        stmt(verb={"id": "http://adlnet.gov/expapi/verbs/voided"}),
        BOTH,
        "object",
        "must be a StatementRef",
        id="voiding-activity",
    ),
    # SubStatement
    pytest.param(stmt(object={**SUBSTATEMENT, "id": UUID}), BOTH, "object.id", "must not have 'id'", id="sub-id"),
    pytest.param(stmt(object={**SUBSTATEMENT, "version": "1.0.0"}), BOTH, "object.version", "must not", id="sub-ver"),
    pytest.param(stmt(object={**SUBSTATEMENT, "stored": "2020-01-01T00:00:00Z"}), BOTH, "object.stored", "must not"),
    pytest.param(stmt(object={**SUBSTATEMENT, "authority": AGENT}), BOTH, "object.authority", "must not"),
    pytest.param(
        stmt(object={**SUBSTATEMENT, "object": SUBSTATEMENT}),
        BOTH,
        "object.object.objectType",
        "must not contain another SubStatement",
        id="nested-substatement",
    ),
    pytest.param(stmt(object={**SUBSTATEMENT, "verb": DELETE}), BOTH, "object.verb", "is required", id="sub-no-verb"),
    pytest.param(
        stmt(object={**SUBSTATEMENT, "object": AGENT, "context": {"platform": "p"}}),
        BOTH,
        "object.context.platform",
        "not an Agent",
        id="sub-platform-agent",
    ),
    pytest.param(
        stmt(object={**SUBSTATEMENT, "actor": {"mbox": "bob"}}), BOTH, "object.actor.mbox", "mailto", id="sub-mbox"
    ),
    # Result
    pytest.param(stmt(result="passed"), BOTH, "result", "JSON object", id="result-string"),
    pytest.param(stmt(result={"score": {"scaled": 1.01}}), BOTH, "result.score.scaled", "between -1 and 1"),
    pytest.param(stmt(result={"score": {"scaled": -1.00001}}), BOTH, "result.score.scaled", "between -1 and 1"),
    pytest.param(stmt(result={"score": {"raw": 11, "max": 10}}), BOTH, "result.score.raw", "greater than max"),
    pytest.param(stmt(result={"score": {"raw": 1, "min": 2}}), BOTH, "result.score.raw", "less than min"),
    pytest.param(stmt(result={"score": {"min": 3, "max": 2}}), BOTH, "result.score.min", "greater than max"),
    pytest.param(stmt(result={"score": {"raw": "95"}}), BOTH, "result.score.raw", "must be a number", id="raw-str"),
    pytest.param(stmt(result={"score": {"raw": True}}), BOTH, "result.score.raw", "not a boolean", id="raw-bool"),
    pytest.param(stmt(result={"score": {"max": float("nan")}}), BOTH, "result.score.max", "finite", id="nan"),
    pytest.param(stmt(result={"score": {"total": 1}}), BOTH, "result.score.total", "unknown property", id="score-x"),
    pytest.param(stmt(result={"success": "true"}), BOTH, "result.success", "boolean", id="success-string"),
    pytest.param(stmt(result={"completion": 1}), BOTH, "result.completion", "boolean", id="completion-int"),
    pytest.param(stmt(result={"response": 5}), BOTH, "result.response", "must be a string", id="response-number"),
    pytest.param(stmt(result={"duration": "P4W1D"}), BOTH, "result.duration", "ISO 8601 duration", id="dur-weeks"),
    pytest.param(stmt(result={"duration": "PT"}), BOTH, "result.duration", "ISO 8601 duration", id="dur-pt"),
    pytest.param(stmt(result={"duration": "P"}), BOTH, "result.duration", "ISO 8601 duration", id="dur-p"),
    pytest.param(stmt(result={"duration": "PT1.5H30M"}), BOTH, "result.duration", "duration", id="dur-fraction"),
    pytest.param(stmt(result={"duration": "PA1H0M0S"}), BOTH, "result.duration", "duration", id="dur-junk"),
    pytest.param(stmt(result={"duration": "P0001-02-03T04:05:06"}), BOTH, "result.duration", "duration", id="alt"),
    pytest.param(stmt(result={"duration": "pt1h"}), BOTH, "result.duration", "duration", id="dur-lowercase"),
    pytest.param(stmt(result={"duration": 3600}), BOTH, "result.duration", "must be a string", id="dur-number"),
    pytest.param(stmt(result={"extensions": []}), BOTH, "result.extensions", "extensions map", id="result-ext"),
    # Context
    pytest.param(stmt(context={"registration": "x"}), BOTH, "context.registration", "UUID", id="registration"),
    pytest.param(stmt(context={"registration": None}), BOTH, "context.registration", "null", id="registration-null"),
    pytest.param(stmt(context={"instructor": {"name": "x"}}), BOTH, "context.instructor", "exactly one of"),
    pytest.param(stmt(context={"team": AGENT}), BOTH, "context.team.objectType", "must be 'Group'", id="team-agent"),
    pytest.param(
        stmt(context={"team": {"mbox": "mailto:t@x.com"}}), BOTH, "context.team.objectType", "is required", id="team-ot"
    ),
    pytest.param(
        stmt(context={"contextActivities": {"consequences": [ACTIVITY]}}),
        BOTH,
        "context.contextActivities.consequences",
        "unknown property",
        id="ctx-activities-key",
    ),
    pytest.param(
        stmt(context={"contextActivities": {"parent": [{"id": "not an iri"}]}}),
        BOTH,
        "context.contextActivities.parent[0].id",
        "absolute IRI",
        id="ctx-parent-id",
    ),
    pytest.param(
        stmt(context={"contextActivities": {"other": "x"}}),
        BOTH,
        "context.contextActivities.other",
        "an Activity or an array",
        id="ctx-activities-string",
    ),
    pytest.param(
        stmt(context={"contextActivities": {"grouping": [AGENT]}}),
        BOTH,
        "context.contextActivities.grouping[0].objectType",
        "must be 'Activity'",
        id="ctx-activities-agent",
    ),
    pytest.param(
        stmt(object=AGENT, context={"revision": "1"}), BOTH, "context.revision", "not an Agent", id="revision-agent"
    ),
    pytest.param(
        stmt(object={"objectType": "StatementRef", "id": UUID}, context={"platform": "p"}),
        BOTH,
        "context.platform",
        "not a StatementRef",
        id="platform-statementref",
    ),
    pytest.param(stmt(context={"revision": 1}), BOTH, "context.revision", "must be a string", id="revision-number"),
    pytest.param(stmt(context={"language": "en_US"}), BOTH, "context.language", "RFC 5646", id="language"),
    pytest.param(stmt(context={"language": "something"}), BOTH, "context.language", "RFC 5646", id="language-long"),
    pytest.param(
        stmt(context={"statement": {"id": UUID}}), BOTH, "context.statement.objectType", "is required", id="ctx-ref"
    ),
    pytest.param(
        stmt(context={"statement": {"objectType": "statementref", "id": UUID}}),
        BOTH,
        "context.statement.objectType",
        "must be 'StatementRef'",
        id="ctx-ref-case",
    ),
    pytest.param(
        stmt(context={"contextAgents": []}),
        V1,
        "context.contextAgents",
        "only exists in xAPI 2.0.0",
        id="v1-ctx-agents",
    ),
    pytest.param(stmt(context={"contextGroups": []}), V1, "context.contextGroups", "2.0.0", id="v1-ctx-groups"),
    # 2.0.0 contextAgents / contextGroups
    pytest.param(
        stmt(context={"contextAgents": [{"objectType": "Should fail", "agent": AGENT}]}),
        V2,
        "context.contextAgents[0].objectType",
        "'contextAgent'",
        id="ctx-agent-type",
    ),
    pytest.param(
        stmt(context={"contextAgents": [{"agent": AGENT}]}),
        V2,
        "context.contextAgents[0].objectType",
        "is required",
        id="ctx-agent-no-type",
    ),
    pytest.param(
        stmt(context={"contextAgents": [{"objectType": "contextAgent", "agent": {"key": "Should fail"}}]}),
        V2,
        "context.contextAgents[0].agent.key",
        "unknown property",
        id="ctx-agent-invalid",
    ),
    pytest.param(
        stmt(context={"contextAgents": [{"objectType": "contextAgent", "agent": GROUP}]}),
        V2,
        "context.contextAgents[0].agent",
        "not a Group",
        id="ctx-agent-group",
    ),
    pytest.param(
        stmt(context={"contextAgents": [{"objectType": "contextAgent", "agent": AGENT, "relevantTypes": []}]}),
        V2,
        "context.contextAgents[0].relevantTypes",
        "at least one",
        id="relevant-types-empty",
    ),
    pytest.param(
        stmt(context={"contextAgents": [{"objectType": "contextAgent", "agent": AGENT, "relevantTypes": ["abc"]}]}),
        V2,
        "context.contextAgents[0].relevantTypes[0]",
        "absolute IRI",
        id="relevant-types-iri",
    ),
    pytest.param(
        stmt(context={"contextAgents": {"objectType": "contextAgent", "agent": AGENT}}),
        V2,
        "context.contextAgents",
        "must be an array",
        id="ctx-agents-object",
    ),
    pytest.param(
        stmt(context={"contextGroups": [{"objectType": "contextGroup"}]}),
        V2,
        "context.contextGroups[0].group",
        "is required",
        id="ctx-group-missing",
    ),
    pytest.param(
        stmt(context={"contextGroups": [{"objectType": "contextGroup", "group": {"mbox": "mailto:g@x.com"}}]}),
        V2,
        "context.contextGroups[0].group.objectType",
        "is required",
        id="ctx-group-no-type",
    ),
    # Timestamp and stored
    pytest.param(stmt(timestamp="2008-09-15T15:53:00.601-00:00"), BOTH, "timestamp", "-00:00", id="ts-minus-00-00"),
    pytest.param(stmt(timestamp="2008-09-15T15:53:00.601-0000"), BOTH, "timestamp", "-00:00", id="ts-minus-0000"),
    pytest.param(stmt(timestamp="2008-09-15T15:53:00.601-00"), BOTH, "timestamp", "-00:00", id="ts-minus-00"),
    pytest.param(stmt(timestamp="01/011/2015"), BOTH, "timestamp", "ISO 8601", id="ts-us-date"),
    pytest.param(stmt(timestamp="2023-02-30T00:00:00Z"), BOTH, "timestamp", "not a valid date", id="ts-feb-30"),
    pytest.param(stmt(timestamp="2023-02-01 00:00:00Z"), BOTH, "timestamp", "ISO 8601", id="ts-space"),
    pytest.param(stmt(timestamp="2023-02-01T25:00:00Z"), BOTH, "timestamp", "not a valid date", id="ts-hour-25"),
    pytest.param(stmt(timestamp="2023-02-01T10:00:00+24:00"), BOTH, "timestamp", "offset", id="ts-offset-24"),
    pytest.param(stmt(timestamp=1700000000), BOTH, "timestamp", "timestamp string", id="ts-number"),
    pytest.param(stmt(stored="yesterday"), BOTH, "stored", "ISO 8601", id="stored-invalid"),
    pytest.param(
        stmt(object={**SUBSTATEMENT, "timestamp": "should fail"}), BOTH, "object.timestamp", "ISO 8601", id="sub-ts"
    ),
    # Authority
    pytest.param(stmt(authority={"objectType": "agent"}), BOTH, "authority.objectType", "'Agent' or 'Group'"),
    pytest.param(
        stmt(authority={"objectType": "Group", "member": [OAUTH_CONSUMER, OTHER_AGENT], "mbox": "mailto:g@x.com"}),
        BOTH,
        "authority",
        "must be anonymous",
        id="authority-identified",
    ),
    pytest.param(
        stmt(authority={"objectType": "Group", "member": [OAUTH_CONSUMER]}),
        BOTH,
        "authority.member",
        "exactly two",
        id="authority-one-member",
    ),
    pytest.param(
        stmt(authority={"objectType": "Group", "member": [OAUTH_CONSUMER, AGENT, OTHER_AGENT]}),
        BOTH,
        "authority.member",
        "exactly two",
        id="authority-three-members",
    ),
    pytest.param(
        stmt(authority={"objectType": "Group", "member": [AGENT, OTHER_AGENT]}),
        BOTH,
        "authority.member",
        "OAuth consumer",
        id="authority-no-consumer",
    ),
    pytest.param(stmt(authority={"objectType": "Group"}), BOTH, "authority.member", "is required", id="auth-no-mem"),
    # Version
    pytest.param(stmt(version="1.1.0"), BOTH, "version", "1.0.x", id="version-1.1.0"),
    pytest.param(stmt(version="0.9.9"), BOTH, "version", "1.0.x", id="version-0.9.9"),
    pytest.param(stmt(version="should fail"), BOTH, "version", "1.0.x", id="version-text"),
    pytest.param(stmt(version="2.0.0"), V1, "version", "must be a 1.0.x version", id="version-2-in-1.0.3"),
    pytest.param(stmt(version="2.1.0"), V2, "version", "2.0.x", id="version-2.1"),
    pytest.param(stmt(version=1.0), BOTH, "version", "must be a string", id="version-number"),
    # Attachments
    pytest.param(stmt(attachments=ATTACHMENT), BOTH, "attachments", "must be an array", id="att-object"),
    pytest.param(stmt(attachments=["x"]), BOTH, "attachments[0]", "JSON object", id="att-string"),
    pytest.param(
        stmt(attachments=[{**ATTACHMENT, "sha2": DELETE}]), BOTH, "attachments[0].sha2", "is required", id="att-sha2"
    ),
    pytest.param(
        stmt(attachments=[{**ATTACHMENT, "display": DELETE}]), BOTH, "attachments[0].display", "is required", id="a-d"
    ),
    pytest.param(
        stmt(attachments=[{**ATTACHMENT, "usageType": "should fail"}]), BOTH, "attachments[0].usageType", "IRI"
    ),
    pytest.param(
        stmt(attachments=[{**ATTACHMENT, "contentType": 5}]), BOTH, "attachments[0].contentType", "string", id="ct-5"
    ),
    pytest.param(
        stmt(attachments=[{**ATTACHMENT, "contentType": "text"}]), BOTH, "attachments[0].contentType", "media type"
    ),
    pytest.param(stmt(attachments=[{**ATTACHMENT, "length": "27"}]), BOTH, "attachments[0].length", "integer"),
    pytest.param(stmt(attachments=[{**ATTACHMENT, "length": 2.5}]), BOTH, "attachments[0].length", "integer"),
    pytest.param(stmt(attachments=[{**ATTACHMENT, "length": True}]), BOTH, "attachments[0].length", "integer"),
    pytest.param(stmt(attachments=[{**ATTACHMENT, "length": -1}]), BOTH, "attachments[0].length", "negative"),
    pytest.param(stmt(attachments=[{**ATTACHMENT, "sha2": 123}]), BOTH, "attachments[0].sha2", "string", id="sha2-n"),
    pytest.param(stmt(attachments=[{**ATTACHMENT, "sha2": "abc"}]), BOTH, "attachments[0].sha2", "SHA-2", id="sha2"),
    pytest.param(
        stmt(attachments=[{**ATTACHMENT, "fileUrl": "over.there.com/f"}]), BOTH, "attachments[0].fileUrl", "IRL"
    ),
    pytest.param(stmt(attachments=[{**ATTACHMENT, "x": 1}]), BOTH, "attachments[0].x", "unknown property", id="att-x"),
]


@pytest.mark.parametrize(("statement", "versions", "path", "reason"), REJECTED)
def test_rejected(statement: Any, versions: tuple[XAPIVersion, ...], path: str, reason: str) -> None:
    for version in versions:
        with pytest.raises(StatementValidationError) as caught:
            validate_statement(_strip_deleted(statement), version=version)
        assert caught.value.path == path, caught.value.message
        assert reason in caught.value.reason, caught.value.message
        assert caught.value.status == 400


def test_error_message_joins_path_and_reason() -> None:
    with pytest.raises(StatementValidationError) as caught:
        validate_statement(stmt(**{"actor.mbox": "ann@example.com"}))
    assert caught.value.message.startswith("actor.mbox: must be a 'mailto:' IRI")


def test_validation_does_not_modify_the_statement() -> None:
    statement = stmt(context={"contextActivities": {"parent": {"id": "http://example.com/p"}}})
    before = copy.deepcopy(statement)
    validate_statement(statement)
    assert statement == before


# ------------------------------------------------------------------------------------------------
# parse_timestamp, is_uuid, validate_agent_json.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-05-04T12:00:00-05:00", datetime(2023, 5, 4, 17, 0, tzinfo=UTC)),
        ("2023-05-04T12:00:00.5+0130", datetime(2023, 5, 4, 10, 30, 0, 500000, tzinfo=UTC)),
        ("2023-05-04T12:00:00.123456789Z", datetime(2023, 5, 4, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2023-05-04t12:00:00z", datetime(2023, 5, 4, 12, 0, tzinfo=UTC)),
        ("2023-05-04T12:00:00", datetime(2023, 5, 4, 12, 0, tzinfo=UTC)),
        ("2023-12-31T23:30:00-01", datetime(2024, 1, 1, 0, 30, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_returns_utc(text: str, expected: datetime) -> None:
    for version in BOTH:
        parsed = parse_timestamp(text, path="since", version=version)
        assert parsed == expected
        assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2023-05-04",
        "2023-05-04T12:00Z",
        "2023-05-04T12:00:00-00:00",
        "0000-01-01T00:00:00Z",
        "٢٠٢٣-05-04T12:00:00Z",
    ],
)
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(StatementValidationError) as caught:
        parse_timestamp(text, path="since")
    assert caught.value.path == "since"


def test_parse_timestamp_rejects_overflowing_offset() -> None:
    with pytest.raises(StatementValidationError):
        parse_timestamp("0001-01-01T00:00:00+05:00", path="t")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (UUID, True),
        (UUID.upper(), True),
        ("12345678-1234-5678-1234-567812345678", True),
        (UUID + "0", False),
        (UUID.replace("-", ""), False),
        ("{" + UUID + "}", False),
        (UUID + "\n", False),
        (1234, False),
        (None, False),
    ],
)
def test_is_uuid(value: object, expected: bool) -> None:
    assert is_uuid(value) is expected


@pytest.mark.parametrize("agent", [AGENT, OTHER_AGENT, GROUP, {"objectType": "Group", "openid": "http://x.com/g"}])
def test_agent_json_accepted(agent: dict[str, Any]) -> None:
    validate_agent_json(agent)


@pytest.mark.parametrize(
    ("agent", "path", "reason"),
    [
        ("wrong", "agent", "JSON object"),
        ({"name": "x"}, "agent", "exactly one of"),
        (ANON_GROUP, "agent", "identified Group"),
        ({"objectType": "Person", "mbox": "mailto:a@b.c"}, "agent.objectType", "'Agent' or 'Group'"),
        ({"mbox": "mailto:a@b.c", "foo": 1}, "agent.foo", "unknown property"),
        ({**GROUP, "member": [GROUP]}, "agent.member[0]", "not a Group"),
    ],
)
def test_agent_json_rejected(agent: object, path: str, reason: str) -> None:
    with pytest.raises(StatementValidationError) as caught:
        validate_agent_json(agent)
    assert caught.value.path == path
    assert reason in caught.value.reason


def test_agent_json_uses_the_given_path() -> None:
    with pytest.raises(StatementValidationError) as caught:
        validate_agent_json({"mbox": "nope"}, path="params.agent", version="2.0.0")
    assert caught.value.path == "params.agent.mbox"


def test_iris_found_valid_are_remembered_and_invalid_ones_never() -> None:
    """``_is_iri`` remembers IRIs it found valid (bounded, emptied when full); a rejected IRI is rejected every time,
    including after the memory is full and emptied, and a remembered one is still accepted."""
    from proficio_ingest import _validation

    verb = {"id": "http://example.com/verbs/planned"}
    bad = {**ACTIVITY, "id": "http://example.com/a b"}
    for _ in range(2):
        with pytest.raises(StatementValidationError) as caught:
            validate_statement({"actor": AGENT, "verb": verb, "object": bad}, version="1.0.3")
        assert caught.value.path == "object.id"
    assert "http://example.com/a b" not in _validation._VALID_IRIS
    validate_statement({"actor": AGENT, "verb": verb, "object": ACTIVITY}, version="1.0.3")
    assert ACTIVITY["id"] in _validation._VALID_IRIS
    for n in range(16384 + 10):
        assert _validation._is_iri(f"http://example.com/many/{n}")
    assert len(_validation._VALID_IRIS) <= 16384
    assert not _validation._is_iri("not an iri")
    assert _validation._is_iri("http://example.com/many/0")


def test_verbs_and_activities_found_valid_are_remembered_as_json_and_nothing_else_is() -> None:
    """``_check_core`` does not check again a Verb or an Activity object whose JSON it found valid before; any other
    JSON (an invalid variant, a number of another type) is checked, in either version and inside a SubStatement."""
    from proficio_ingest import _validation

    verb = {"id": "http://example.com/verbs/remembered", "display": {"en-US": "remembered"}}
    activity = {"id": "http://example.com/activities/remembered", "definition": {"name": {"en-US": "Remembered"}}}
    for version in BOTH:
        validate_statement({"actor": AGENT, "verb": verb, "object": activity}, version=version)
    assert b"verb:" + orjson.dumps(verb) in _validation._VALID_PARTS
    assert b"activity:" + orjson.dumps(activity) in _validation._VALID_PARTS
    invalid: list[tuple[dict[str, Any], str]] = [
        ({"verb": {**verb, "display": {"en-US": None}}}, "verb.display.en-US"),
        ({"verb": {**verb, "extra": 1}}, "verb.extra"),
        ({"object": {**activity, "definition": {"name": {"en-US": 1}}}}, "object.definition.name.en-US"),
        ({"object": {**activity, "definition": {"moreInfo": "not an iri"}}}, "object.definition.moreInfo"),
        ({"object": {**activity, "objectType": "Activity", "extra": True}}, "object.extra"),
    ]
    for version in BOTH:
        for change, path in invalid:
            for holder in ("top", "sub"):
                statement = {"actor": AGENT, "verb": verb, "object": activity, **change}
                if holder == "sub":
                    statement = {"actor": AGENT, "verb": verb, "object": {"objectType": "SubStatement", **statement}}
                    path = f"object.{path}"
                with pytest.raises(StatementValidationError) as caught:
                    validate_statement(statement, version=version)
                assert caught.value.path == path
    # The voided verb still needs a StatementRef, remembered or not.
    voided = {"id": "http://adlnet.gov/expapi/verbs/voided"}
    validate_statement({"actor": AGENT, "verb": voided, "object": {"objectType": "StatementRef", "id": UUID}})
    with pytest.raises(StatementValidationError) as caught:
        validate_statement({"actor": AGENT, "verb": voided, "object": activity})
    assert caught.value.path == "object"
    for n in range(_validation._MAX_VALID_PARTS + 10):
        validate_statement({"actor": AGENT, "verb": {"id": f"http://example.com/verbs/{n}"}, "object": activity})
    assert len(_validation._VALID_PARTS) <= _validation._MAX_VALID_PARTS
