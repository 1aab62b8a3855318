"""Property-based tests of the statement validator.

Strategies build valid xAPI statements (both versions); the tests check they are accepted, then
break them in targeted ways (drop required properties, wrong JSON types, unknown keys, nulls, bad
IRIs/UUIDs/timestamps) and check the validator rejects them with StatementValidationError. Fuzz
tests feed it arbitrary JSON, deep nesting and huge strings: whatever comes in, the only exception
that may come out is StatementValidationError.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import string
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proficio_ingest._errors import StatementValidationError
from proficio_ingest._validation import XAPIVersion, parse_timestamp, validate_statement

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VERSIONS: st.SearchStrategy[XAPIVersion] = st.sampled_from(["1.0.3", "2.0.0"])

# ------------------------------------------------------------------------------------------------
# Leaf strategies.

_SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "-._~", min_size=1, max_size=12)
# Simple builders rather than st.from_regex: generation dominates these tests' runtime.
_LABEL = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8)
_HOST = st.builds("{}.{}".format, _LABEL, st.sampled_from(["com", "org", "example", "co.uk", "xn--bcher-kva.de"]))

iris = st.one_of(
    st.builds(
        lambda scheme, host, parts: f"{scheme}://{host}/{'/'.join(parts)}",
        st.sampled_from(["http", "https"]),
        _HOST,
        st.lists(_SEGMENT, max_size=3),
    ),
    st.builds("urn:{}:{}".format, _LABEL, _SEGMENT),
)
irls = st.builds(lambda host, part: f"https://{host}/{part}", _HOST, _SEGMENT)
uuids = st.uuids().map(str)
language_tags = st.one_of(
    st.sampled_from(["en", "en-US", "en-GB", "fr-FR", "zh-Hant-TW", "es-419", "de-CH-1996", "x-private", "i-klingon"]),
    st.builds(
        "{}{}".format,
        st.text(alphabet=string.ascii_lowercase, min_size=2, max_size=3),
        st.sampled_from(["", "-US", "-gb", "-419", "-Latn", "-x-a1"]),
    ),
)
language_maps = st.dictionaries(language_tags, st.text(max_size=20), max_size=3)
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10))
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)
# Extension values may be any JSON; a shallow mix keeps generation cheap (the fuzz tests go deep).
extension_values = st.one_of(
    json_leaves, st.lists(json_leaves, max_size=2), st.dictionaries(st.text(max_size=5), json_leaves, max_size=2)
)
extensions = st.dictionaries(iris, extension_values, max_size=2)
emails = st.builds(
    "{}@{}".format, st.text(alphabet=string.ascii_lowercase + string.digits + "._+-", min_size=1, max_size=10), _HOST
)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)))
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    digits = draw(st.integers(0, 9))
    if digits:
        text += "." + draw(st.text(alphabet=string.digits, min_size=digits, max_size=digits))
    minutes = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
    if minutes == 0:
        return text + draw(st.sampled_from(["Z", "+00:00", "+0000", "+00", ""]))
    sign = "+" if minutes > 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    style = draw(st.sampled_from(["colon", "basic", "hour"]))
    if style == "hour" and mins == 0:
        return f"{text}{sign}{hours:02d}"
    return f"{text}{sign}{hours:02d}{':' if style == 'colon' else ''}{mins:02d}"


@st.composite
def durations(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return f"P{draw(st.integers(0, 500))}W"
    number = st.integers(0, 10_000).map(str)
    date_part = "".join(
        f"{draw(number)}{designator}" for designator in "YMD" if draw(st.booleans())
    )  # the fraction only ever goes on the last component, added below
    time_part = "".join(f"{draw(number)}{designator}" for designator in "HMS" if draw(st.booleans()))
    if not date_part and not time_part:
        time_part = f"{draw(number)}S"
    text = "P" + date_part + ("T" + time_part if time_part else "")
    if draw(st.booleans()):
        text = text[:-1] + "." + draw(st.text(alphabet=string.digits, min_size=1, max_size=6)) + text[-1]
    return text


# ------------------------------------------------------------------------------------------------
# Object strategies.


@st.composite
def agents(draw: st.DrawFn, *, object_type: bool | None = None) -> dict[str, Any]:
    ifi = draw(st.sampled_from(["mbox", "mbox_sha1sum", "openid", "account"]))
    agent: dict[str, Any] = {}
    if object_type or (object_type is None and draw(st.booleans())):
        agent["objectType"] = "Agent"
    if draw(st.booleans()):
        agent["name"] = draw(st.text(max_size=20))
    email = draw(emails)
    if ifi == "mbox":
        agent["mbox"] = "mailto:" + email
    elif ifi == "mbox_sha1sum":
        agent["mbox_sha1sum"] = hashlib.sha1(f"mailto:{email}".encode()).hexdigest()
    elif ifi == "openid":
        agent["openid"] = draw(irls)
    else:
        agent["account"] = {"homePage": draw(irls), "name": draw(st.text(min_size=1, max_size=12))}
    return agent


@st.composite
def groups(draw: st.DrawFn) -> dict[str, Any]:
    identified = draw(st.booleans())
    group: dict[str, Any] = draw(agents()) if identified else {}
    group["objectType"] = "Group"
    if not identified or draw(st.booleans()):
        group["member"] = draw(st.lists(agents(), min_size=0 if identified else 1, max_size=2))
    return group


actors = st.one_of(agents(), groups())
verbs = st.fixed_dictionaries({"id": iris}, optional={"display": language_maps})
components = st.lists(
    st.fixed_dictionaries({"id": st.text(min_size=1, max_size=6)}, optional={"description": language_maps}),
    max_size=3,
    unique_by=lambda component: str(component["id"]),
)
_LISTS = {
    "choice": ("choices",),
    "sequencing": ("choices",),
    "likert": ("scale",),
    "matching": ("source", "target"),
    "performance": ("steps",),
    "true-false": (),
    "fill-in": (),
    "long-fill-in": (),
    "numeric": (),
    "other": (),
}


@st.composite
def definitions(draw: st.DrawFn) -> dict[str, Any]:
    definition: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "name": language_maps,
                "description": language_maps,
                "type": iris,
                "moreInfo": irls,
                "extensions": extensions,
            },
        )
    )
    if draw(st.booleans()):
        interaction_type = draw(st.sampled_from(sorted(_LISTS)))
        definition["interactionType"] = interaction_type
        if draw(st.booleans()):
            definition["correctResponsesPattern"] = draw(st.lists(st.text(max_size=10), max_size=3))
        for list_name in _LISTS[interaction_type]:
            if draw(st.booleans()):
                definition[list_name] = draw(components)
    return definition


activities = st.fixed_dictionaries(
    {"id": iris}, optional={"objectType": st.just("Activity"), "definition": definitions()}
)
statement_refs = st.fixed_dictionaries({"objectType": st.just("StatementRef"), "id": uuids})
scores = st.one_of(
    st.fixed_dictionaries({}, optional={"scaled": st.floats(-1, 1), "raw": st.floats(-1e6, 1e6)}),
    st.lists(st.integers(-1000, 1000), min_size=3, max_size=3)
    .map(sorted)
    .map(lambda bounds: {"min": bounds[0], "raw": bounds[1], "max": bounds[2]}),
)
results = st.fixed_dictionaries(
    {},
    optional={
        "score": scores,
        "success": st.booleans(),
        "completion": st.booleans(),
        "response": st.text(max_size=20),
        "duration": durations(),
        "extensions": extensions,
    },
)
attachments = st.lists(
    st.fixed_dictionaries(
        {
            "usageType": iris,
            "display": language_maps,
            "contentType": st.sampled_from(["text/plain", "application/octet-stream", "image/jpeg; q=1"]),
            "length": st.integers(0, 10**9),
            "sha2": st.binary(max_size=16).map(lambda data: hashlib.sha256(data).hexdigest()),
        },
        optional={"description": language_maps, "fileUrl": irls},
    ),
    max_size=2,
)
relevant_types = st.lists(iris, min_size=1, max_size=2)


@st.composite
def contexts(draw: st.DrawFn, *, version: str, object_type: str) -> dict[str, Any]:
    # Plain Activities here: the statement's object already exercises definitions, and this is cheaper.
    plain = st.fixed_dictionaries({"id": iris}, optional={"objectType": st.just("Activity")})
    activity_list = st.one_of(plain, st.lists(plain, max_size=2))
    optional: dict[str, st.SearchStrategy[Any]] = {
        "registration": uuids,
        "instructor": actors,
        "team": groups(),
        "contextActivities": st.fixed_dictionaries(
            {}, optional={kind: activity_list for kind in ("parent", "grouping", "category", "other")}
        ),
        "language": language_tags,
        "statement": statement_refs,
        "extensions": extensions,
    }
    if object_type == "Activity":
        optional["revision"] = st.text(max_size=10)
        optional["platform"] = st.text(max_size=10)
    if version == "2.0.0":
        optional["contextAgents"] = st.lists(
            st.fixed_dictionaries(
                {"objectType": st.just("contextAgent"), "agent": agents()}, optional={"relevantTypes": relevant_types}
            ),
            max_size=2,
        )
        optional["contextGroups"] = st.lists(
            st.fixed_dictionaries(
                {"objectType": st.just("contextGroup"), "group": groups()}, optional={"relevantTypes": relevant_types}
            ),
            max_size=2,
        )
    return draw(st.fixed_dictionaries({}, optional=optional))


@st.composite
def statement_bodies(draw: st.DrawFn, *, version: str, substatement: bool) -> dict[str, Any]:
    """actor/verb/object plus the optional parts a Statement and a SubStatement share."""
    kinds = ["Activity", "Agent", "Group", "StatementRef"] + ([] if substatement else ["SubStatement"])
    kind = draw(st.sampled_from(kinds))
    target: Any
    if kind == "Activity":
        target = draw(activities)
    elif kind == "Agent":
        target = draw(agents(object_type=True))
    elif kind == "Group":
        target = draw(groups())
    elif kind == "StatementRef":
        target = draw(statement_refs)
    else:
        target = {"objectType": "SubStatement", **draw(statement_bodies(version=version, substatement=True))}
    body: dict[str, Any] = {"actor": draw(actors), "verb": draw(verbs), "object": target}
    if draw(st.booleans()):
        body["result"] = draw(results)
    if draw(st.booleans()):
        body["context"] = draw(contexts(version=version, object_type=kind))
    if draw(st.booleans()):
        body["timestamp"] = draw(timestamps())
    if draw(st.booleans()):
        body["attachments"] = draw(attachments)
    return body


@st.composite
def statements(draw: st.DrawFn, version: str) -> dict[str, Any]:
    statement = draw(statement_bodies(version=version, substatement=False))
    if draw(st.booleans()):
        statement["id"] = draw(uuids)
    if draw(st.booleans()):
        statement["stored"] = draw(timestamps())
    if draw(st.booleans()):
        statement["authority"] = draw(
            st.one_of(
                agents(),
                st.builds(
                    lambda consumer, user: {"objectType": "Group", "member": [consumer, user]},
                    st.builds(lambda home, key: {"account": {"homePage": home, "name": key}}, irls, _SEGMENT),
                    agents(),
                ),
            )
        )
    if draw(st.booleans()):
        versions = ["1.0.0", "1.0.3", "1.0"] + (["2.0.0"] if version == "2.0.0" else [])
        statement["version"] = draw(st.sampled_from(versions))
    return statement


@st.composite
def versioned_statements(draw: st.DrawFn) -> tuple[XAPIVersion, dict[str, Any]]:
    version: XAPIVersion = draw(VERSIONS)
    return version, draw(statements(version))


# ------------------------------------------------------------------------------------------------
# Walking a generated statement: every position with the role of the value found there.


@dataclass
class Position:
    container: Any  # the dict or list holding the value
    key: Any  # its key or index
    role: str  # what the value at container[key] is: "iri", "uuid", "agent", "langmap", ...


_REQUIRED = {
    "statement": ("actor", "verb", "object"),
    "substatement": ("actor", "verb", "object"),
    "verb": ("id",),
    "activity": ("id",),
    "statementref": ("id", "objectType"),
    "account": ("homePage", "name"),
    "component": ("id",),
    "attachment": ("usageType", "display", "contentType", "length", "sha2"),
    "contextagent": ("objectType", "agent"),
    "contextgroup": ("objectType", "group"),
}
_LEAF_ROLES = {
    "id": "uuid",
    "registration": "uuid",
    "timestamp": "timestamp",
    "stored": "timestamp",
    "version": "version",
    "duration": "duration",
    "mbox": "mbox",
    "mbox_sha1sum": "sha1",
    "openid": "iri",
    "homePage": "iri",
    "moreInfo": "iri",
    "type": "iri",
    "usageType": "iri",
    "fileUrl": "iri",
    "language": "language",
    "sha2": "sha2",
    "contentType": "mediatype",
    "length": "int",
    "success": "bool",
    "completion": "bool",
    "interactionType": "enum",
    "objectType": "enum",
}


def positions(statement: dict[str, Any]) -> Iterator[Position]:
    """Every mutable place in a statement built by the strategies above, outside extension values."""
    yield from _walk_object(statement, "statement")


def _walk_object(obj: dict[str, Any], role: str) -> Iterator[Position]:
    for key, value in obj.items():
        child = _child_role(role, key, value)
        yield Position(obj, key, child)
        yield from _walk_value(value, child)


def _walk_value(value: Any, role: str) -> Iterator[Position]:
    if role in ("extensions", "langmap"):
        for key in value:
            yield Position(value, key, "ext_value" if role == "extensions" else "string")
    elif isinstance(value, dict):
        yield from _walk_object(value, role)
    elif isinstance(value, list):
        item_role = {
            "members": "agent",
            "activities": "activity",
            "components": "component",
            "attachments": "attachment",
            "patterns": "string",
            "relevanttypes": "iri",
            "contextagents": "contextagent",
            "contextgroups": "contextgroup",
        }[role]
        for index, item in enumerate(value):
            yield Position(value, index, item_role)
            yield from _walk_value(item, item_role)


def _child_role(parent: str, key: str, value: Any) -> str:
    if key == "extensions":
        return "extensions"
    if key in ("display", "description") or (key == "name" and parent == "definition"):
        return "langmap"
    if key in ("actor", "instructor", "team", "authority", "group"):
        return "group" if isinstance(value, dict) and value.get("objectType") == "Group" else "agent"
    if key == "agent":
        return "agent"
    if key == "object":
        object_type = value.get("objectType", "Activity")
        return {"Agent": "agent", "Group": "group", "StatementRef": "statementref", "SubStatement": "substatement"}.get(
            object_type, "activity"
        )
    if key == "statement":
        return "statementref"
    if key in ("parent", "grouping", "category", "other"):
        return "activities" if isinstance(value, list) else "activity"
    if key == "id" and parent in ("activity", "verb"):
        return "iri"
    if key == "id" and parent == "component":
        return "string"
    if key == "member":
        return "members"
    if key in ("choices", "scale", "source", "target", "steps"):
        return "components"
    if key == "correctResponsesPattern":
        return "patterns"
    if key in ("relevantTypes", "attachments", "contextAgents", "contextGroups"):
        return key.lower()
    if key in ("verb", "definition", "account", "result", "score", "context", "contextActivities"):
        return key.lower()
    if key in ("scaled", "raw", "min", "max"):
        return "number"
    if key in ("name", "response", "revision", "platform"):
        return "string"
    return _LEAF_ROLES[key]


_WRONG_TYPE = {
    "number": ["1", True, [1], {}],
    "int": ["1", True, 1.5, []],
    "bool": ["true", 1, 0, None],
}
_BAD_FORMAT = {
    "iri": ["not an iri", "example.com/path", "", "http://exa mple.com/", "http://example.com/%zz"],
    "uuid": ["not-a-uuid", "", "fd41c918b88b4b20a0a5a4c32391aaa0", "fd41c918-b88b-4b20-a0a5-a4c32391aaa0x"],
    "timestamp": ["yesterday", "2020-13-01T00:00:00Z", "2020-01-01T00:00:00-00:00", "2020-01-01", ""],
    "duration": ["PT", "P", "1H", "P4W1D", "PT1.5H1M", "P1.5Y2M"],
    "mbox": ["bob@example.com", "mailto:", "mailto:bob", "MAILTO:bob@example.com"],
    "sha1": ["xyz", "a" * 39, "g" * 40],
    "version": ["3.0.0", "1.1.0", "0.9.9", "v1.0.0", ""],
    "language": ["englishlanguage", "en_US", "e", "-en", ""],
    "sha2": ["zz", "a" * 63, ""],
    "mediatype": ["text", "", "/plain"],
    "enum": ["nonsense", ""],
}


def _apply(position: Position, value: object) -> None:
    position.container[position.key] = value


def _rejected(statement: object, version: XAPIVersion) -> StatementValidationError:
    with pytest.raises(StatementValidationError) as caught:
        validate_statement(statement, version=version)
    return caught.value


def _validate_or_reject(statement: object, version: XAPIVersion) -> None:
    """Either accepted or rejected with StatementValidationError: any other exception fails the test."""
    with contextlib.suppress(StatementValidationError):
        validate_statement(statement, version=version)


# ------------------------------------------------------------------------------------------------
# Valid statements are accepted.


@SETTINGS
@given(versioned_statements())
def test_generated_statements_are_accepted(case: tuple[XAPIVersion, dict[str, Any]]) -> None:
    version, statement = case
    before = copy.deepcopy(statement)
    validate_statement(statement, version=version)
    assert statement == before  # validation never rewrites its input
    if version == "1.0.3":
        # The 2.0.0 data model is a superset: nothing valid in 1.0.3 is rejected under 2.0.0.
        validate_statement(statement, version="2.0.0")


@SETTINGS
@given(timestamps())
def test_generated_timestamps_parse_to_utc(text: str) -> None:
    parsed = parse_timestamp(text, path="timestamp")
    assert parsed.tzinfo is UTC
    local = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    rest = text[19:].lstrip(".0123456789")
    offset = timedelta(0)
    if rest and rest[0] in "+-":
        hours, minutes = int(rest[1:3]), int(rest[3:].lstrip(":") or 0)
        offset = timedelta(hours=hours, minutes=minutes) * (1 if rest[0] == "+" else -1)
    expected = local.replace(tzinfo=timezone(offset)).astimezone(UTC)
    assert parsed.replace(microsecond=0) == expected


# ------------------------------------------------------------------------------------------------
# Targeted breakage of valid statements is rejected.


@SETTINGS
@given(versioned_statements(), st.data())
def test_null_anywhere_outside_extensions_is_rejected(
    case: tuple[XAPIVersion, dict[str, Any]], data: st.DataObject
) -> None:
    version, statement = case
    targets = [p for p in positions(statement) if p.role != "ext_value"]
    _apply(data.draw(st.sampled_from(targets)), None)
    _rejected(statement, version)


@SETTINGS
@given(versioned_statements(), st.data())
def test_unknown_property_is_rejected(case: tuple[XAPIVersion, dict[str, Any]], data: st.DataObject) -> None:
    version, statement = case
    # Every JSON object outside extension values; a key that is neither a property name, an IRI
    # nor a language tag must be refused whatever kind of object it lands in.
    objects: list[dict[str, Any]] = [statement]
    objects += [
        p.container[p.key]
        for p in positions(statement)
        if p.role != "ext_value" and isinstance(p.container[p.key], dict)
    ]
    target = data.draw(st.sampled_from(objects))
    target[data.draw(st.sampled_from(["dummy key", "not valid!", "Actor "]))] = 1
    _rejected(statement, version)


@SETTINGS
@given(versioned_statements(), st.data())
def test_dropping_a_required_property_is_rejected(
    case: tuple[XAPIVersion, dict[str, Any]], data: st.DataObject
) -> None:
    version, statement = case
    objects: list[tuple[dict[str, Any], tuple[str, ...]]] = [(statement, _REQUIRED["statement"])]
    for position in positions(statement):
        value = position.container[position.key]
        if isinstance(value, dict) and position.role in _REQUIRED:
            objects.append((value, _REQUIRED[position.role]))
        elif isinstance(value, dict) and position.role == "agent":
            objects.append((value, tuple(k for k in ("mbox", "mbox_sha1sum", "openid", "account") if k in value)))
        elif isinstance(value, dict) and position.role == "group" and "member" in value:
            ifis = [k for k in ("mbox", "mbox_sha1sum", "openid", "account") if k in value]
            if not ifis:  # an anonymous Group needs its members
                objects.append((value, ("member",)))
    target, required = data.draw(st.sampled_from(objects))
    del target[data.draw(st.sampled_from(required))]
    _rejected(statement, version)


@SETTINGS
@given(versioned_statements(), st.data())
def test_wrong_json_type_is_rejected(case: tuple[XAPIVersion, dict[str, Any]], data: st.DataObject) -> None:
    version, statement = case
    targets = [p for p in positions(statement) if p.role != "ext_value"]
    position = data.draw(st.sampled_from(targets))
    current = position.container[position.key]
    if position.role in _WRONG_TYPE:
        replacement = data.draw(st.sampled_from(_WRONG_TYPE[position.role]))
    elif isinstance(current, str):
        replacement = data.draw(st.sampled_from([12345, 1.5, True, [current], {"value": current}]))
    elif isinstance(current, dict):
        replacement = data.draw(st.sampled_from(["text", 7, False, [1]]))
    else:  # arrays
        replacement = data.draw(st.sampled_from(["text", 7, True, {"": 1}]))
    _apply(position, replacement)
    _rejected(statement, version)


@SETTINGS
@given(versioned_statements(), st.data())
def test_badly_formatted_values_are_rejected(case: tuple[XAPIVersion, dict[str, Any]], data: st.DataObject) -> None:
    version, statement = case
    targets = [p for p in positions(statement) if p.role in _BAD_FORMAT]
    position = data.draw(st.sampled_from(targets))
    _apply(position, data.draw(st.sampled_from(_BAD_FORMAT[position.role])))
    _rejected(statement, version)


@SETTINGS
@given(versioned_statements(), st.data())
def test_bad_language_tag_is_rejected(case: tuple[XAPIVersion, dict[str, Any]], data: st.DataObject) -> None:
    version, statement = case
    maps = [p.container[p.key] for p in positions(statement) if p.role == "langmap"]
    if not maps:
        statement["verb"]["display"] = {}
        maps = [statement["verb"]["display"]]
    bad = data.draw(st.sampled_from(["en_US", "e", "en--US", "123", "en-US-", "x", "a12345"]))
    data.draw(st.sampled_from(maps))[bad] = "text"
    error = _rejected(statement, version)
    assert "RFC 5646" in error.reason


@SETTINGS
@given(versioned_statements())
def test_substatement_cannot_nest_or_carry_statement_only_properties(case: tuple[XAPIVersion, dict[str, Any]]) -> None:
    version, statement = case
    inner = {key: statement[key] for key in ("actor", "verb", "object") if key in statement}
    nested = {"objectType": "SubStatement", **copy.deepcopy(inner)}
    if inner["object"].get("objectType") == "SubStatement":
        _rejected({**inner, "object": {**inner["object"], "object": nested}}, version)
    else:
        _rejected({**inner, "object": {**nested, "id": "fd41c918-b88b-4b20-a0a5-a4c32391aaa0"}}, version)


# ------------------------------------------------------------------------------------------------
# Fuzzing: never any exception other than StatementValidationError.


@SETTINGS
@given(json_values, VERSIONS)
def test_arbitrary_json_never_crashes(value: object, version: XAPIVersion) -> None:
    _validate_or_reject(value, version)


@SETTINGS
@given(
    st.fixed_dictionaries(
        {"actor": json_values, "verb": json_values, "object": json_values},
        optional={key: json_values for key in ("result", "context", "timestamp", "authority", "attachments", "id")},
    ),
    VERSIONS,
)
def test_statement_shaped_junk_never_crashes(value: dict[str, Any], version: XAPIVersion) -> None:
    _validate_or_reject(value, version)


@SETTINGS
@given(versioned_statements(), st.data())
def test_junk_replacing_any_value_never_crashes(case: tuple[XAPIVersion, dict[str, Any]], data: st.DataObject) -> None:
    version, statement = case
    position = data.draw(st.sampled_from(list(positions(statement))))
    _apply(position, data.draw(json_values))
    _validate_or_reject(statement, version)


def _deep(depth: int, leaf: object) -> object:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@FEW
@given(versioned_statements(), st.data(), st.integers(100, 5000))
def test_deeply_nested_junk(case: tuple[XAPIVersion, dict[str, Any]], data: st.DataObject, depth: int) -> None:
    version, statement = case
    # Inside extension values deep nesting is legal JSON and must not trip the validator.
    statement.setdefault("result", {}).setdefault("extensions", {})["http://example.com/deep"] = _deep(depth, 1)
    validate_statement(statement, version=version)
    # Anywhere else it is junk, and rejected.
    targets = [p for p in positions(statement) if p.role != "ext_value"]
    _apply(data.draw(st.sampled_from(targets)), _deep(depth, "x"))
    _rejected(statement, version)


@FEW
@given(versioned_statements(), st.data(), st.sampled_from(["a", "é", " ", "-", "%", "x" * 7 + "-", "\U0001f600"]))
def test_huge_strings(case: tuple[XAPIVersion, dict[str, Any]], data: st.DataObject, unit: str) -> None:
    version, statement = case
    targets = [p for p in positions(statement) if isinstance(p.container[p.key], str)]
    targets.append(Position(statement["verb"], "id", "iri"))
    position = data.draw(st.sampled_from(targets))
    _apply(position, unit * (200_000 // len(unit)))
    _validate_or_reject(statement, version)
