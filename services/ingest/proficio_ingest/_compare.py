"""Statement equivalence under the xAPI "Statement Comparison Requirements" (1.0.3 Data §2.3.1, and 2.0 §4.2.7).

The rule: differences that the exceptions to statement immutability could have caused are ignored, every other
difference counts. Each exception becomes one normalisation below, so that two statements are equivalent exactly when
their canonical forms are byte-equal, and the SHA-256 of that form is a fingerprint that can be stored and compared.

- Properties the LRS may assign (§2.3.1.b1): top-level ``id``, ``authority``, ``stored``, ``timestamp`` and ``version``
  are left out. They are left out whole, not only when one side lacks them: a fingerprint has to be a function of one
  statement, and "ignore it when either side lacks it" is not transitive, so it could not be one.
- Activity Definitions (§2.3.1.b2) and Verb ``display`` (b3) are not part of the statement: left out.
- Timestamps are compared as instants (b4): a SubStatement's ``timestamp`` becomes UTC, truncated to the millisecond,
  the precision an LRS must keep (Data §4.5).
- Group members are an unordered list (b5): sorted.
- Attachments are not part of the statement (b6): ``attachments`` is left out, which signature checks need anyway.
- Case-insensitive values (b7): the ``mailto:`` scheme and domain of an ``mbox``, UUIDs (RFC 4122: case-insensitive on
  input) and the ``context.language`` tag (RFC 5646). Everything else is case-sensitive (§2.2.s3.b4), IRIs included:
  simple string comparison is one of the approaches 2.0 §4.2.7 allows.
- ``contextActivities`` values may arrive as one Activity but the LRS returns arrays (§2.4.6.2.s4.b3): always arrays.
- Default ``objectType`` values (Activity for an object, Agent for an actor) are filled in, since they mean the same.
- ``result.duration`` stays a string (b8) except that seconds beyond 0.01 s precision are dropped, by truncation,
  never rounding (§4.6.s1.b5, 2.0 §4.2.7): ``P1DT12H36M0.1237S`` equals ``P1DT12H36M0.12S``; and leading zeros of
  a component are dropped (``PT01M11S``, as tincan writes durations, equals ``PT1M11S``). Units are never converted:
  ``PT60S`` is not ``PT1M`` (months and days have no fixed length, so no conversion is safe in general).
  (Dropping leading zeros changed the canonical form of such durations only; fingerprints of every other statement
  are as before, so the domain below was kept.)
- JSON numbers are numbers: ``1`` and ``1.0`` are the same value. Object member order never matters.

Other arrays keep their order: the spec names no other unordered list. Shapes the validator would reject (this also
reads unvalidated JWS payloads) are kept as they are rather than raising.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

__all__ = ["statement_fingerprint", "statements_equivalent"]

_FINGERPRINT_DOMAIN = b"proficio:xapi-statement-comparison:1\x00"  # change it if the canonical form ever changes
_LRS_ASSIGNED = frozenset({"id", "authority", "stored", "timestamp", "version"})
_NOT_IN_STATEMENT = frozenset({"attachments"})
_INT64 = (-(2**63), 2**64 - 1)  # orjson's integer range
_EXACT_FLOAT_INT = 2**53
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?"
)
#: Leading zeros of a duration component's integer part (not of its fraction).
_LEADING_ZEROS = re.compile(r"(?<![\d.,])0+(?=\d)")
_DURATION_SECONDS = re.compile(r"(P[^T]*T(?:\d+H)?(?:\d+M)?)(\d+)(?:[.,](\d+))?S")
_DURATIONS: dict[str, str] = {}  # duration -> its compared form (see _duration)
_MAX_DURATIONS = 4096


def statement_fingerprint(statement: dict[str, Any]) -> bytes:
    """A 32-byte digest, equal for two statements exactly when the comparison requirements call them the same."""
    return hashlib.sha256(_FINGERPRINT_DOMAIN + _canonical_bytes(statement)).digest()


def statements_equivalent(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return _canonical_bytes(a) == _canonical_bytes(b)


def _canonical_bytes(statement: dict[str, Any]) -> bytes:
    return orjson.dumps(_statement(statement, sub=False), option=orjson.OPT_SORT_KEYS)


def _statement(value: Any, *, sub: bool) -> Any:
    if not isinstance(value, dict):
        return _json(value)
    out: dict[str, Any] = {}
    left_out = _LEFT_OUT_IN_SUBSTATEMENT if sub else _LEFT_OUT
    for key, item in value.items():
        if key in left_out:
            continue
        part = _PARTS.get(key)
        if part is not None:
            out[key] = part(item)
        elif key == "object":
            out[key] = _object(item, sub=sub)
        else:
            # (A SubStatement's timestamp is one of _PARTS: only the top-level one is the LRS's to assign.)
            out[key] = item if type(item) is str else _json(item)
    return out


def _actor(value: Any) -> Any:
    if isinstance(value, dict) and value.get("objectType") == "Group":
        return _group(value)
    return _agent(value)


def _agent(value: Any) -> Any:
    if not isinstance(value, dict):
        return _json(value)
    out = {
        key: _mbox(item) if key == "mbox" else item if type(item) is str else _json(item) for key, item in value.items()
    }
    out.setdefault("objectType", "Agent")
    return out


def _group(value: dict[str, Any]) -> dict[str, Any]:
    out = {key: _mbox(item) if key == "mbox" else _json(item) for key, item in value.items() if key != "member"}
    members = value.get("member")
    if isinstance(members, list):
        normalised = [_agent(member) for member in members]
        out["member"] = sorted(normalised, key=lambda member: orjson.dumps(member, option=orjson.OPT_SORT_KEYS))
    elif "member" in value:
        out["member"] = _json(members)
    return out


def _verb(value: Any) -> Any:
    if not isinstance(value, dict):
        return _json(value)
    return {key: item if type(item) is str else _json(item) for key, item in value.items() if key != "display"}


def _object(value: Any, *, sub: bool) -> Any:
    if not isinstance(value, dict):
        return _json(value)
    kind = value.get("objectType", "Activity")
    if kind == "Activity":
        return _activity(value)
    if kind == "Agent":
        return _agent(value)
    if kind == "Group":
        return _group(value)
    if kind == "StatementRef":
        return _statement_ref(value)
    if kind == "SubStatement" and not sub:
        return _statement(value, sub=True)
    return _json(value)


def _activity(value: Any) -> Any:
    if not isinstance(value, dict):
        return _json(value)
    out = {key: item if type(item) is str else _json(item) for key, item in value.items() if key != "definition"}
    out.setdefault("objectType", "Activity")
    return out


def _statement_ref(value: Any) -> Any:
    if not isinstance(value, dict):
        return _json(value)
    return {key: _uuid(item) if key == "id" else _json(item) for key, item in value.items()}


def _result(value: Any) -> Any:
    if not isinstance(value, dict):
        return _json(value)
    return {key: _duration(item) if key == "duration" else _json(item) for key, item in value.items()}


def _context(value: Any) -> Any:
    if not isinstance(value, dict):
        return _json(value)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "registration":
            out[key] = _uuid(item)
        elif key in ("instructor", "team"):
            out[key] = _actor(item)
        elif key == "contextActivities":
            out[key] = _context_activities(item)
        elif key == "statement":
            out[key] = _statement_ref(item)
        elif key == "language":
            out[key] = item.lower() if isinstance(item, str) else _json(item)
        elif key == "contextAgents":  # xAPI 2.0
            out[key] = _wrapped_actors(item, "agent")
        elif key == "contextGroups":  # xAPI 2.0
            out[key] = _wrapped_actors(item, "group")
        else:
            out[key] = _json(item)
    return out


def _context_activities(value: Any) -> Any:
    if not isinstance(value, dict):
        return _json(value)
    out: dict[str, Any] = {}
    for key, item in value.items():
        activities = [item] if isinstance(item, dict) else item
        out[key] = [_activity(a) for a in activities] if isinstance(activities, list) else _json(activities)
    return out


def _wrapped_actors(value: Any, member: str) -> Any:
    if not isinstance(value, list):
        return _json(value)
    return [
        {key: _actor(i) if key == member else _json(i) for key, i in item.items()}
        if isinstance(item, dict)
        else _json(item)
        for item in value
    ]


def _mbox(value: Any) -> Any:
    """``mailto:`` is a case-insensitive scheme and an address's domain is case-insensitive; its local part is not."""
    if not isinstance(value, str) or value[:7].lower() != "mailto:":
        return _json(value)
    local, at, domain = value[7:].rpartition("@")
    return f"mailto:{local}{at}{domain.lower()}" if at else "mailto:" + value[7:]


def _uuid(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else _json(value)


def _timestamp(value: Any) -> Any:
    """The instant in UTC, to the millisecond; a string that is not an ISO 8601 date-time stays as it is."""
    if not isinstance(value, str):
        return _json(value)
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        return value
    year, month, day, hour, minute, second, fraction, _zulu, sign, offset_hours, offset_minutes = match.groups()
    offset = timedelta(hours=int(offset_hours or 0), minutes=int(offset_minutes or 0))
    zone = timezone(-offset if sign == "-" else offset) if sign else UTC  # no zone given: read as UTC, as stored
    try:
        instant = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=zone)
        instant = instant.astimezone(UTC)
    except (ValueError, OverflowError):
        return value  # e.g. a leap second or month 13: nothing to normalise
    millis = (fraction or "").ljust(3, "0")[:3]
    return instant.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis}Z"


def _duration(value: Any) -> Any:
    """Seconds truncated (never rounded) to 0.01 s; the rest of the string is compared as it is (§2.3.1.b8)."""
    if not isinstance(value, str):
        return _json(value)
    # Most statements of a source repeat a few durations: each is worked out once (a bounded memo).
    known = _DURATIONS.get(value)
    if known is None:
        if len(_DURATIONS) >= _MAX_DURATIONS:
            _DURATIONS.clear()
        known = _DURATIONS[value] = _normal_duration(value)
    return known


def _normal_duration(value: str) -> str:
    # A number is a number: PT01M11S (as tincan writes it) is PT1M11S. Units are never converted.
    value = _LEADING_ZEROS.sub("", value)
    match = _DURATION_SECONDS.fullmatch(value)
    if match is None:
        return value
    head, whole, fraction = match.groups()
    hundredths = (fraction or "")[:2].rstrip("0")
    return f"{head}{whole}.{hundredths}S" if hundredths else f"{head}{whole}S"


#: A Statement's properties with a normalisation of their own (``object``, which depends on the level, aside).
_PARTS = {"actor": _actor, "verb": _verb, "result": _result, "context": _context, "timestamp": _timestamp}
_LEFT_OUT = _NOT_IN_STATEMENT | _LRS_ASSIGNED
_LEFT_OUT_IN_SUBSTATEMENT = _NOT_IN_STATEMENT


def _json(value: Any) -> Any:
    """Any JSON value with its numbers in one form: integral floats as ints, ints beyond orjson's range kept exact."""
    # The exact types orjson parses to first (most values are strings): one type() instead of four isinstance calls.
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is float:
        return int(value) if value.is_integer() and abs(value) < _EXACT_FLOAT_INT else value
    if kind is int:
        return value if _INT64[0] <= value <= _INT64[1] else orjson.Fragment(str(value).encode("ascii"))
    if kind is dict:
        return {key: item if type(item) is str else _json(item) for key, item in value.items()}
    if kind is list:
        return [item if type(item) is str else _json(item) for item in value]
    return _json_other(value)


def _json_other(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_FLOAT_INT:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        return orjson.Fragment(str(value).encode("ascii"))
    return value
