"""Validation of xAPI statements against the data model of xAPI 1.0.3 and 2.0.0 (IEEE 9274.1.1).

Every rule the LRS must enforce when it receives a statement is checked here, and the first
violation raises :class:`StatementValidationError` with the property path (``actor.mbox``,
``context.contextActivities.parent[0].id``) and a reason meant for the developer who sent it.
Paths are relative to the statement; the caller prefixes ``statements[i].`` for batches.

The checks are hand-written rather than schema-driven because they run on every statement: one
pass over the JSON with precompiled regular expressions, building little more than path strings.

Sources: the xAPI 1.0.3 Data spec (sections 2.2, 2.4, 4.x; section numbers cited below are from
it), and for 2.0.0 (IEEE 9274.1.1) its data-model additions as the ADL LRS conformance suite's
v2_0 tests exercise them: contextAgents/contextGroups and 2.0.x statement versions. The suite
also pins down the ambiguous 1.0.3 cases (e.g. revision/platform with a StatementRef object).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal, NoReturn

import orjson

from proficio_ingest._errors import StatementValidationError

__all__ = [
    "XAPIVersion",
    "is_uuid",
    "parse_timestamp",
    "validate_agent_json",
    "validate_statement",
]

XAPIVersion = Literal["1.0.3", "2.0.0"]

# A JSON object as produced by the parser; values are whatever JSON allows.
_JSONObject = dict[str, object]

# ---------------------------------------------------------------------------------------------
# Formats. All patterns are ASCII-only ([0-9], not \d, which also matches other scripts' digits).

_UUID_RE = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")

# Absolute IRI, best effort as the spec allows (Data 2.2.s4.b6): a scheme, a colon, and a non-empty
# rest without whitespace, controls or the characters RFC 3987 never allows unescaped.
_IRI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\x00-\x20\x7f-\x9f<>\"{}|\\^`]+")
_BAD_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")

# mailto IRI holding a single address: something@something, nothing that cannot be in an address.
_MAILTO_RE = re.compile(r"mailto:[^\x00-\x20\x7f@<>\"(),:;\[\]\\]+@[^\x00-\x20\x7f@<>\"(),:;\[\]\\]+")

_SHA1_RE = re.compile(r"[0-9A-Fa-f]{40}")
# SHA-224/256/384/512 in hex, the encoding the multipart X-Experience-API-Hash header uses too.
_SHA2_RE = re.compile(r"[0-9A-Fa-f]{56}|[0-9A-Fa-f]{64}|[0-9A-Fa-f]{96}|[0-9A-Fa-f]{128}")

# RFC 2045/6838 media type: type "/" subtype, then optional parameters (not parsed further).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z\-]+"
_MEDIA_TYPE_RE = re.compile(rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;.*)?", re.DOTALL)

# Timestamp in ISO 8601 extended format (the profile RFC 3339 describes); the zone is optional
# because 1.0.3 only says a timestamp SHOULD include one (Data 4.5.s1.b4).
_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2})(?::?([0-9]{2}))?)?"
)

# ISO 8601:2004 4.4.3.2 durations (the alternative 4.4.3.3 format is forbidden, Data 4.6.s1.b1).
# Weeks stand alone ("P4W1D" is invalid); a decimal fraction is only allowed on the last component.
_NUM = r"[0-9]+(?:\.[0-9]+)?"
_DURATION_RE = re.compile(
    rf"P(?:(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}D)?(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?|{_NUM}W)"
)
_FRACTION_LAST_RE = re.compile(r"\.[0-9]+[YMWDHS]\Z")

_VERSION_103_RE = re.compile(r"1\.0(?:\.[0-9]+)?")
_VERSION_200_RE = re.compile(r"(?:1|2)\.0(?:\.[0-9]+)?")

# RFC 5646 section 2.2.8: tags that predate the current syntax.
_GRANDFATHERED = frozenset(
    {
        "en-gb-oed", "i-ami", "i-bnn", "i-default", "i-enochian", "i-hak", "i-klingon", "i-lux",
        "i-mingo", "i-navajo", "i-pwn", "i-tao", "i-tay", "i-tsu", "sgn-be-fr", "sgn-be-nl",
        "sgn-ch-de", "art-lojban", "cel-gaulish", "no-bok", "no-nyn", "zh-guoyu", "zh-hakka",
        "zh-min", "zh-min-nan", "zh-xiang",
    }
)  # fmt: skip

# ---------------------------------------------------------------------------------------------
# Vocabulary.

_VOIDED_VERB = "http://adlnet.gov/expapi/verbs/voided"

_STATEMENT_KEYS = frozenset(
    {"id", "actor", "verb", "object", "result", "context", "timestamp", "stored", "authority", "version", "attachments"}
)
# Data 2.4.4.3.s8: a SubStatement is validated as a Statement but has no id/stored/version/authority.
_SUBSTATEMENT_KEYS = frozenset(
    {"objectType", "actor", "verb", "object", "result", "context", "timestamp", "attachments"}
)
_SUBSTATEMENT_FORBIDDEN = ("id", "stored", "version", "authority")

_IFI_KEYS = ("mbox", "mbox_sha1sum", "openid", "account")
_AGENT_KEYS = frozenset({"objectType", "name", *_IFI_KEYS})
_GROUP_KEYS = _AGENT_KEYS | {"member"}
_ACCOUNT_KEYS = frozenset({"homePage", "name"})
_VERB_KEYS = frozenset({"id", "display"})
_ACTIVITY_KEYS = frozenset({"objectType", "id", "definition"})
_STATEMENT_REF_KEYS = frozenset({"objectType", "id"})
_COMPONENT_LISTS = ("choices", "scale", "source", "target", "steps")
_DEFINITION_KEYS = frozenset(
    {"name", "description", "type", "moreInfo", "extensions", "interactionType", "correctResponsesPattern"}
    | set(_COMPONENT_LISTS)
)
_COMPONENT_KEYS = frozenset({"id", "description"})
# Data 2.4.4.1.s15 table 2: which component lists each interactionType supports.
_INTERACTION_LISTS: dict[str, frozenset[str]] = {
    "true-false": frozenset(),
    "choice": frozenset({"choices"}),
    "fill-in": frozenset(),
    "long-fill-in": frozenset(),
    "matching": frozenset({"source", "target"}),
    "performance": frozenset({"steps"}),
    "sequencing": frozenset({"choices"}),
    "likert": frozenset({"scale"}),
    "numeric": frozenset(),
    "other": frozenset(),
}
_RESULT_KEYS = frozenset({"score", "success", "completion", "response", "duration", "extensions"})
_SCORE_KEYS = frozenset({"scaled", "raw", "min", "max"})
_CONTEXT_KEYS_103 = frozenset(
    {
        "registration",
        "instructor",
        "team",
        "contextActivities",
        "revision",
        "platform",
        "language",
        "statement",
        "extensions",
    }
)
_CONTEXT_KEYS_200 = _CONTEXT_KEYS_103 | {"contextAgents", "contextGroups"}
_CONTEXT_ACTIVITY_KEYS = frozenset({"parent", "grouping", "category", "other"})
_CONTEXT_AGENT_KEYS = frozenset({"objectType", "agent", "relevantTypes"})
_CONTEXT_GROUP_KEYS = frozenset({"objectType", "group", "relevantTypes"})
_ATTACHMENT_KEYS = frozenset({"usageType", "display", "description", "contentType", "length", "sha2", "fileUrl"})
_ATTACHMENT_REQUIRED = ("usageType", "display", "contentType", "length", "sha2")

_A_OBJECT = {
    "Agent": "an Agent",
    "Group": "a Group",
    "StatementRef": "a StatementRef",
    "SubStatement": "a SubStatement",
}

# Hints for properties that are known elsewhere, so the reason says what is really wrong.
_MISPLACED_HINTS = {
    "member": "only a Group has members; set objectType to 'Group'",
    "contextAgents": "contextAgents only exists in xAPI 2.0.0",
    "contextGroups": "contextGroups only exists in xAPI 2.0.0",
}

# ---------------------------------------------------------------------------------------------
# Public API.


def validate_statement(statement: object, *, version: XAPIVersion = "1.0.3") -> None:
    """Check a statement as received by PUT/POST; raise StatementValidationError on the first violation."""
    v2 = version == "2.0.0"
    stmt = _object(statement, "", "a statement")
    _keys(stmt, "", _STATEMENT_KEYS, "a Statement")
    _required(stmt, "", ("actor", "verb", "object"))
    if "id" in stmt:
        _uuid(stmt["id"], "id")
    _check_core(stmt, "", v2, in_substatement=False)
    if "stored" in stmt:
        _timestamp(stmt["stored"], "stored")
    if "authority" in stmt:
        _authority(stmt["authority"], "authority")
    if "version" in stmt:
        _version(stmt["version"], "version", v2)


def validate_agent_json(value: object, *, path: str = "agent", version: XAPIVersion = "1.0.3") -> None:
    """Check the JSON of an ``agent`` query parameter: an Agent or an identified Group."""
    obj = _object(value, path, "an Agent or identified Group")
    object_type = _object_type(obj, path, "Agent")
    if object_type == "Agent":
        _agent_body(obj, path)
    elif object_type == "Group":
        if _group_body(obj, path) == 0:
            _fail(path, "must be an Agent or an identified Group (a Group with an inverse functional identifier)")
    else:
        _fail(_join(path, "objectType"), "must be 'Agent' or 'Group'")


def parse_timestamp(value: str, *, path: str, version: XAPIVersion = "1.0.3") -> datetime:
    """Parse an xAPI timestamp and return it as an aware UTC datetime.

    ISO 8601 extended date-time (RFC 3339 profile) with optional fraction and zone. A missing zone
    is read as UTC. The offsets -00, -0000 and -00:00 (RFC 3339 "unknown local offset") are rejected
    as both specs require. Leap seconds and 24:00 are not representable, so they are rejected too.
    Both versions accept the same forms; ``version`` is there so callers need not special-case.
    """
    if not isinstance(value, str):
        _fail(path, f"must be an ISO 8601 timestamp string, not {_kind(value)}")
    match = _TIMESTAMP_RE.fullmatch(value)
    if match is None:
        _fail(path, "must be an ISO 8601 timestamp like '2024-05-04T12:00:00.000Z'")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    offset = timedelta(0)
    if sign is not None:
        if sign == "-" and off_h == "00" and (off_m is None or off_m == "00"):
            _fail(path, "must not use the offset -00:00 (unknown local offset); use 'Z' or +00:00")
        minutes = int(off_h) * 60 + (int(off_m) if off_m is not None else 0)
        if int(off_h) > 23 or (off_m is not None and int(off_m) > 59):
            _fail(path, "has an invalid UTC offset")
        offset = timedelta(minutes=minutes if sign == "+" else -minutes)
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=timezone(offset)
        )
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        pass  # fail outside the handler so the error carries no chained traceback
    _fail(path, "is not a valid date and time")


def is_uuid(value: object) -> bool:
    """Whether ``value`` is a UUID in standard string form (8-4-4-4-12 hex digits, any case)."""
    return isinstance(value, str) and _UUID_RE.fullmatch(value) is not None


# ---------------------------------------------------------------------------------------------
# Generic helpers.


def _fail(path: str, reason: str) -> NoReturn:
    raise StatementValidationError(path, reason)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _kind(value: object) -> str:
    """The JSON type of ``value``, for reasons like 'must be a string, not a number'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _object(value: object, path: str, what: str) -> _JSONObject:
    if not isinstance(value, dict):
        _fail(path, f"must be {what} (a JSON object), not {_kind(value)}")
    return value


def _array(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        _fail(path, f"must be an array, not {_kind(value)}")
    return value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        _fail(path, f"must be a string, not {_kind(value)}")
    return value


def _keys(obj: _JSONObject, path: str, allowed: frozenset[str], what: str) -> None:
    """Reject unknown properties (Data 2.2.s4.b1.b7) and null values (Data 2.2.s4.b1.b1)."""
    for key, value in obj.items():
        if key not in allowed:
            _unknown(key, path, allowed, what)
        if value is None:
            _fail(_join(path, key), "must not be null")


def _unknown(key: object, path: str, allowed: frozenset[str], what: str) -> NoReturn:
    reason = f"unknown property {str(key)!r} in {what}"
    hint = _MISPLACED_HINTS.get(key) if isinstance(key, str) else None
    if hint is None and isinstance(key, str):
        # Keys are case-sensitive (Data 2.2.s4.b1.b5); point at the intended one.
        same = [name for name in allowed if name.lower() == key.lower()]
        if same:
            hint = f"property names are case-sensitive: did you mean {same[0]!r}?"
    _fail(_join(path, key), f"{reason} ({hint})" if hint else reason)


def _required(obj: _JSONObject, path: str, names: tuple[str, ...]) -> None:
    for name in names:
        if name not in obj:
            _fail(_join(path, name), "is required")


def _object_type(obj: _JSONObject, path: str, default: str) -> str:
    if "objectType" not in obj:
        return default
    return _string(obj["objectType"], _join(path, "objectType"))


#: IRIs already found valid: the same verbs, activities and types come in over and over (a set lookup is a
#: fraction of the regular expressions' cost). Bounded: emptied when full.
_VALID_IRIS: set[str] = set()


def _is_iri(text: str) -> bool:
    if text in _VALID_IRIS:
        return True
    valid = _IRI_RE.fullmatch(text) is not None and ("%" not in text or _BAD_PERCENT_RE.search(text) is None)
    if valid and len(text) <= 512:
        if len(_VALID_IRIS) >= 16384:
            _VALID_IRIS.clear()
        _VALID_IRIS.add(text)
    return valid


def _iri(value: object, path: str, what: str = "IRI") -> str:
    text = _string(value, path)
    if not _is_iri(text):
        _fail(path, f"must be an absolute {what} with a scheme (like 'http://example.com/x'), not {_show(text)}")
    return text


def _show(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:77] + "...")


def _uuid(value: object, path: str) -> None:
    text = _string(value, path)
    if _UUID_RE.fullmatch(text) is None:
        _fail(path, f"must be a UUID in standard form (8-4-4-4-12 hex digits), not {_show(text)}")


def _number(value: object, path: str) -> float:
    # bool is an int subclass in Python but not a JSON number (Data 2.2.s4.b1.b2).
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(path, f"must be a number, not {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        _fail(path, "must be a finite number")
    return value


def _boolean(value: object, path: str) -> None:
    if not isinstance(value, bool):
        _fail(path, f"must be a boolean, not {_kind(value)}")


def _language_map(value: object, path: str) -> None:
    obj = _object(value, path, "a language map")
    for tag, text in obj.items():
        if not isinstance(tag, str) or not _is_language_tag(tag):
            _fail(_join(path, tag), f"{str(tag)!r} is not an RFC 5646 language tag")
        if not isinstance(text, str):
            _fail(_join(path, tag), f"must be a string, not {_kind(text)}")


def _extensions(value: object, path: str) -> None:
    # Keys must be IRIs; values may be any JSON, null included (Data 2.2.s4.b1.b1, 4.1.s3.b2).
    obj = _object(value, path, "an extensions map")
    for key in obj:
        if not isinstance(key, str) or not _is_iri(key):
            _fail(_join(path, key), f"extension key {str(key)!r} must be an absolute IRI")


_LANG_TAG_CACHE: dict[str, bool] = {}


def _is_language_tag(tag: str) -> bool:
    """Well-formedness per the RFC 5646 ABNF (section 2.1), case-insensitive.

    A subtag scanner rather than one large regex: linear on any input, and exact about the
    order language, extlang, script, region, variant, extension, private use. Results are
    cached because the same few tags ('en-US') come in over and over.
    """
    known = _LANG_TAG_CACHE.get(tag)
    if known is not None:
        return known
    result = _scan_language_tag(tag)
    if len(tag) <= 64:
        if len(_LANG_TAG_CACHE) >= 4096:
            _LANG_TAG_CACHE.clear()
        _LANG_TAG_CACHE[tag] = result
    return result


def _scan_language_tag(tag: str) -> bool:
    if not tag.isascii():
        return False
    if tag.lower() in _GRANDFATHERED:
        return True
    parts = tag.split("-")
    for part in parts:
        if not part or len(part) > 8 or not part.isalnum():
            return False
    count = len(parts)
    first = parts[0]
    if first in ("x", "X"):  # privateuse as the whole tag
        return count > 1
    if not first.isalpha() or len(first) < 2:
        return False
    i = 1
    if len(first) <= 3:  # up to three extlang subtags follow a 2-3 letter language
        extlangs = 0
        while i < count and extlangs < 3 and len(parts[i]) == 3 and parts[i].isalpha():
            i += 1
            extlangs += 1
    if i < count and len(parts[i]) == 4 and parts[i].isalpha():  # script
        i += 1
    if i < count and (
        (len(parts[i]) == 2 and parts[i].isalpha()) or (len(parts[i]) == 3 and parts[i].isdigit())
    ):  # region
        i += 1
    while i < count and (len(parts[i]) >= 5 or (len(parts[i]) == 4 and parts[i][0].isdigit())):  # variants
        i += 1
    while i < count and len(parts[i]) == 1 and parts[i] not in ("x", "X"):  # extensions
        i += 1
        start = i
        while i < count and len(parts[i]) >= 2:
            i += 1
        if i == start:
            return False
    if i < count and parts[i] in ("x", "X"):  # privateuse
        return count > i + 1
    return i == count


# ---------------------------------------------------------------------------------------------
# Statement parts.


#: Verbs and Activity objects found valid, as their JSON (the bytes orjson writes, which tell every JSON value
#: apart): statements name the same few over and over, and whether one is valid depends on nothing else (not the
#: version, not where it is). A part seen before is not checked again. Bounded: emptied when full.
_VALID_PARTS: set[bytes] = set()
_MAX_VALID_PARTS = 4096


def _part_key(kind: bytes, value: object) -> bytes | None:
    try:
        return kind + orjson.dumps(value)
    except TypeError:  # not JSON (keys that are not strings, integers past 64 bits): checked every time
        return None


def _valid_part(key: bytes | None) -> None:
    if key is not None:
        if len(_VALID_PARTS) >= _MAX_VALID_PARTS:
            _VALID_PARTS.clear()
        _VALID_PARTS.add(key)


def _check_core(stmt: _JSONObject, path: str, v2: bool, *, in_substatement: bool) -> None:
    """The properties a Statement and a SubStatement share."""
    _actor(stmt["actor"], _join(path, "actor"))
    verb = stmt["verb"]
    key = _part_key(b"verb:", verb)
    if key is not None and key in _VALID_PARTS:
        verb_id = verb["id"]  # type: ignore[index]  # a valid Verb: a JSON object with an IRI id
    else:
        verb_id = _verb(verb, _join(path, "verb"))
        _valid_part(key)
    object_path = _join(path, "object")
    target = stmt["object"]
    is_activity = type(target) is dict and target.get("objectType", "Activity") == "Activity"
    key = _part_key(b"activity:", target) if is_activity else None
    if key is not None and key in _VALID_PARTS:
        object_type = "Activity"
    else:
        object_type = _statement_object(target, object_path, v2, in_substatement=in_substatement)
        if object_type == "Activity":
            _valid_part(key)
    if verb_id == _VOIDED_VERB and object_type != "StatementRef":
        # Data 2.3.2: a voiding statement's object must be a StatementRef to the voided statement.
        _fail(object_path, "must be a StatementRef when the verb is 'http://adlnet.gov/expapi/verbs/voided'")
    if "result" in stmt:
        _result(stmt["result"], _join(path, "result"))
    if "context" in stmt:
        _context(stmt["context"], _join(path, "context"), v2, object_type)
    if "timestamp" in stmt:
        _timestamp(stmt["timestamp"], _join(path, "timestamp"))
    if "attachments" in stmt:
        _attachments(stmt["attachments"], _join(path, "attachments"))


def _timestamp(value: object, path: str) -> None:
    if not isinstance(value, str):
        _fail(path, f"must be an ISO 8601 timestamp string, not {_kind(value)}")
    parse_timestamp(value, path=path)


def _version(value: object, path: str, v2: bool) -> None:
    text = _string(value, path)
    if v2:
        if _VERSION_200_RE.fullmatch(text) is None:
            _fail(path, f"must be a 1.0.x or 2.0.x version, not {_show(text)}")
    elif _VERSION_103_RE.fullmatch(text) is None:
        # Data 2.4.10.s3.b2: reject any version that does not start with 1.0.
        _fail(path, f"must be a 1.0.x version, not {_show(text)}")


# Actors -----------------------------------------------------------------------------------------


def _actor(value: object, path: str) -> None:
    """An Agent or a Group (actor, context.instructor, object of type Agent/Group)."""
    obj = _object(value, path, "an Agent or Group")
    object_type = _object_type(obj, path, "Agent")
    if object_type == "Agent":
        _agent_body(obj, path)
    elif object_type == "Group":
        _group_body(obj, path)
    else:
        _fail(_join(path, "objectType"), f"must be 'Agent' or 'Group', not {_show(object_type)}")


def _agent(value: object, path: str) -> None:
    obj = _object(value, path, "an Agent")
    object_type = _object_type(obj, path, "Agent")
    if object_type == "Group":
        _fail(path, "must be an Agent, not a Group")
    if object_type != "Agent":
        _fail(_join(path, "objectType"), f"must be 'Agent', not {_show(object_type)}")
    _agent_body(obj, path)


def _group(value: object, path: str) -> int:
    obj = _object(value, path, "a Group")
    if "objectType" not in obj:
        _fail(_join(path, "objectType"), "is required and must be 'Group'")
    object_type = _object_type(obj, path, "Group")
    if object_type != "Group":
        _fail(_join(path, "objectType"), f"must be 'Group', not {_show(object_type)}")
    return _group_body(obj, path)


def _agent_body(obj: _JSONObject, path: str) -> None:
    _keys(obj, path, _AGENT_KEYS, "an Agent")
    if "name" in obj:
        _string(obj["name"], _join(path, "name"))
    found = _ifis(obj, path)
    if found == 0:
        _fail(path, "an Agent must have exactly one of 'mbox', 'mbox_sha1sum', 'openid' or 'account'")


def _group_body(obj: _JSONObject, path: str) -> int:
    """Check a Group (objectType already known to be 'Group'); return how many IFIs it has (0 or 1)."""
    _keys(obj, path, _GROUP_KEYS, "a Group")
    if "name" in obj:
        _string(obj["name"], _join(path, "name"))
    found = _ifis(obj, path)
    if "member" in obj:
        members_path = _join(path, "member")
        for index, member in enumerate(_array(obj["member"], members_path)):
            _agent(member, f"{members_path}[{index}]")
    elif found == 0:
        _fail(_join(path, "member"), "is required for an anonymous Group (one without an identifier)")
    return found


def _ifis(obj: _JSONObject, path: str) -> int:
    """Check the inverse functional identifiers present; more than one is an error (Data 2.4.2.1.s2.b2)."""
    present = [key for key in _IFI_KEYS if key in obj]
    if len(present) > 1:
        _fail(path, f"must have exactly one inverse functional identifier, found {len(present)}: {', '.join(present)}")
    if not present:
        return 0
    key = present[0]
    value = obj[key]
    key_path = _join(path, key)
    if key == "mbox":
        text = _string(value, key_path)
        if _MAILTO_RE.fullmatch(text) is None:
            _fail(key_path, f"must be a 'mailto:' IRI with an email address, not {_show(text)}")
    elif key == "mbox_sha1sum":
        text = _string(value, key_path)
        if _SHA1_RE.fullmatch(text) is None:
            _fail(key_path, "must be the SHA-1 of a mailto IRI as 40 hex digits")
    elif key == "openid":
        _iri(value, key_path, "URI")
    else:
        account = _object(value, key_path, "an account")
        _keys(account, key_path, _ACCOUNT_KEYS, "an account")
        _required(account, key_path, ("homePage", "name"))
        _iri(account["homePage"], _join(key_path, "homePage"), "IRL")
        _string(account["name"], _join(key_path, "name"))
    return 1


def _authority(value: object, path: str) -> None:
    """An Agent, or for 3-legged OAuth a Group of two Agents (Data 2.4.9.s3.b1, 2.4.9.s7)."""
    obj = _object(value, path, "an Agent or Group")
    object_type = _object_type(obj, path, "Agent")
    if object_type == "Agent":
        _agent_body(obj, path)
        return
    if object_type != "Group":
        _fail(_join(path, "objectType"), f"must be 'Agent' or 'Group', not {_show(object_type)}")
    if _group_body(obj, path) != 0:
        _fail(path, "an authority Group must be anonymous: the OAuth consumer and user pair, without an identifier")
    members = _array(obj["member"], _join(path, "member"))  # present: an anonymous Group requires it
    if len(members) != 2:
        _fail(_join(path, "member"), f"an authority Group must have exactly two Agents, not {len(members)}")
    if not any(isinstance(member, dict) and "account" in member for member in members):
        # Data 2.4.9.s7.b2: the Agent for the OAuth consumer is identified by account.
        _fail(
            _join(path, "member"), "one member of an authority Group must be the OAuth consumer, identified by account"
        )


# Verb and object ------------------------------------------------------------------------------------


def _verb(value: object, path: str) -> str:
    obj = _object(value, path, "a Verb")
    _keys(obj, path, _VERB_KEYS, "a Verb")
    _required(obj, path, ("id",))
    verb_id = _iri(obj["id"], _join(path, "id"))
    if "display" in obj:
        _language_map(obj["display"], _join(path, "display"))
    return verb_id


def _statement_object(value: object, path: str, v2: bool, *, in_substatement: bool) -> str:
    obj = _object(value, path, "an Activity, Agent, Group, StatementRef or SubStatement")
    object_type = _object_type(obj, path, "Activity")
    if object_type == "Activity":
        _activity_body(obj, path)
    elif object_type == "Agent":
        _agent_body(obj, path)
    elif object_type == "Group":
        _group_body(obj, path)
    elif object_type == "StatementRef":
        _statement_ref_body(obj, path)
    elif object_type == "SubStatement":
        if in_substatement:
            _fail(_join(path, "objectType"), "a SubStatement must not contain another SubStatement")
        _substatement_body(obj, path, v2)
    else:
        _fail(
            _join(path, "objectType"),
            f"must be 'Activity', 'Agent', 'Group', 'StatementRef' or 'SubStatement', not {_show(object_type)}",
        )
    return object_type


def _substatement_body(obj: _JSONObject, path: str, v2: bool) -> None:
    for name in _SUBSTATEMENT_FORBIDDEN:
        if name in obj:
            _fail(_join(path, name), f"a SubStatement must not have '{name}'")
    _keys(obj, path, _SUBSTATEMENT_KEYS, "a SubStatement")
    _required(obj, path, ("actor", "verb", "object"))
    _check_core(obj, path, v2, in_substatement=True)


def _statement_ref(value: object, path: str) -> None:
    obj = _object(value, path, "a StatementRef")
    if "objectType" not in obj:
        _fail(_join(path, "objectType"), "is required and must be 'StatementRef'")
    object_type = _object_type(obj, path, "StatementRef")
    if object_type != "StatementRef":
        _fail(_join(path, "objectType"), f"must be 'StatementRef', not {_show(object_type)}")
    _statement_ref_body(obj, path)


def _statement_ref_body(obj: _JSONObject, path: str) -> None:
    _keys(obj, path, _STATEMENT_REF_KEYS, "a StatementRef")
    _required(obj, path, ("id",))
    _uuid(obj["id"], _join(path, "id"))


def _activity(value: object, path: str) -> None:
    obj = _object(value, path, "an Activity")
    object_type = _object_type(obj, path, "Activity")
    if object_type != "Activity":
        _fail(_join(path, "objectType"), f"must be 'Activity', not {_show(object_type)}")
    _activity_body(obj, path)


def _activity_body(obj: _JSONObject, path: str) -> None:
    _keys(obj, path, _ACTIVITY_KEYS, "an Activity")
    _required(obj, path, ("id",))
    _iri(obj["id"], _join(path, "id"))
    if "definition" in obj:
        _definition(obj["definition"], _join(path, "definition"))


def _definition(value: object, path: str) -> None:
    obj = _object(value, path, "an Activity definition")
    _keys(obj, path, _DEFINITION_KEYS, "an Activity definition")
    if "name" in obj:
        _language_map(obj["name"], _join(path, "name"))
    if "description" in obj:
        _language_map(obj["description"], _join(path, "description"))
    if "type" in obj:
        _iri(obj["type"], _join(path, "type"))
    if "moreInfo" in obj:
        _iri(obj["moreInfo"], _join(path, "moreInfo"), "IRL")
    if "extensions" in obj:
        _extensions(obj["extensions"], _join(path, "extensions"))
    interaction_type: str | None = None
    if "interactionType" in obj:
        type_path = _join(path, "interactionType")
        interaction_type = _string(obj["interactionType"], type_path)
        if interaction_type not in _INTERACTION_LISTS:
            _fail(type_path, f"must be one of {', '.join(repr(t) for t in _INTERACTION_LISTS)}")
    if "correctResponsesPattern" in obj:
        pattern_path = _join(path, "correctResponsesPattern")
        if interaction_type is None:
            _fail(pattern_path, "requires 'interactionType' in the same definition")
        for index, pattern in enumerate(_array(obj["correctResponsesPattern"], pattern_path)):
            _string(pattern, f"{pattern_path}[{index}]")
    for list_name in _COMPONENT_LISTS:
        if list_name not in obj:
            continue
        list_path = _join(path, list_name)
        if interaction_type is None:
            _fail(list_path, "requires 'interactionType' in the same definition")
        if list_name not in _INTERACTION_LISTS[interaction_type]:
            _fail(list_path, f"is not allowed for interactionType {interaction_type!r}")
        _components(obj[list_name], list_path)


def _components(value: object, path: str) -> None:
    seen: set[str] = set()
    for index, item in enumerate(_array(value, path)):
        item_path = f"{path}[{index}]"
        component = _object(item, item_path, "an interaction component")
        _keys(component, item_path, _COMPONENT_KEYS, "an interaction component")
        _required(component, item_path, ("id",))
        component_id = _string(component["id"], _join(item_path, "id"))
        if component_id in seen:
            # Data 2.4.4.1.s16.b1: ids within one component list are distinct.
            _fail(_join(item_path, "id"), f"duplicate interaction component id {_show(component_id)}")
        seen.add(component_id)
        if "description" in component:
            _language_map(component["description"], _join(item_path, "description"))


# Result ---------------------------------------------------------------------------------------------


def _result(value: object, path: str) -> None:
    obj = _object(value, path, "a Result")
    _keys(obj, path, _RESULT_KEYS, "a Result")
    if "score" in obj:
        _score(obj["score"], _join(path, "score"))
    if "success" in obj:
        _boolean(obj["success"], _join(path, "success"))
    if "completion" in obj:
        _boolean(obj["completion"], _join(path, "completion"))
    if "response" in obj:
        _string(obj["response"], _join(path, "response"))
    if "duration" in obj:
        _duration(obj["duration"], _join(path, "duration"))
    if "extensions" in obj:
        _extensions(obj["extensions"], _join(path, "extensions"))


def _score(value: object, path: str) -> None:
    obj = _object(value, path, "a Score")
    _keys(obj, path, _SCORE_KEYS, "a Score")
    if "scaled" in obj:
        scaled = _number(obj["scaled"], _join(path, "scaled"))
        if not -1 <= scaled <= 1:
            _fail(_join(path, "scaled"), "must be between -1 and 1 inclusive")
    low = _number(obj["min"], _join(path, "min")) if "min" in obj else None
    high = _number(obj["max"], _join(path, "max")) if "max" in obj else None
    if low is not None and high is not None and low > high:
        _fail(_join(path, "min"), "must not be greater than max")
    if "raw" in obj:
        raw = _number(obj["raw"], _join(path, "raw"))
        if low is not None and raw < low:
            _fail(_join(path, "raw"), "must not be less than min")
        if high is not None and raw > high:
            _fail(_join(path, "raw"), "must not be greater than max")


def _duration(value: object, path: str) -> None:
    text = _string(value, path)
    if (
        _DURATION_RE.fullmatch(text) is None
        or len(text) == 1  # "P" alone
        or text.endswith("T")  # "P1DT": a time part needs a component
        or ("." in text and (text.count(".") > 1 or _FRACTION_LAST_RE.search(text) is None))
    ):
        _fail(path, f"must be an ISO 8601 duration like 'PT1H30M2.5S' or 'P4W', not {_show(text)}")


# Context -------------------------------------------------------------------------------------------


def _context(value: object, path: str, v2: bool, object_type: str) -> None:
    obj = _object(value, path, "a Context")
    _keys(obj, path, _CONTEXT_KEYS_200 if v2 else _CONTEXT_KEYS_103, "a Context")
    if "registration" in obj:
        _uuid(obj["registration"], _join(path, "registration"))
    if "instructor" in obj:
        _actor(obj["instructor"], _join(path, "instructor"))
    if "team" in obj:
        _group(obj["team"], _join(path, "team"))
    if "contextActivities" in obj:
        _context_activities(obj["contextActivities"], _join(path, "contextActivities"))
    for name in ("revision", "platform"):
        if name in obj:
            _string(obj[name], _join(path, name))
            if object_type != "Activity":
                # Data 2.4.6.s4.b1/b2: only meaningful for an Activity object.
                _fail(
                    _join(path, name), f"must only be used when the object is an Activity, not {_A_OBJECT[object_type]}"
                )
    if "language" in obj:
        language_path = _join(path, "language")
        language = _string(obj["language"], language_path)
        if not _is_language_tag(language):
            _fail(language_path, f"must be an RFC 5646 language tag, not {_show(language)}")
    if "statement" in obj:
        _statement_ref(obj["statement"], _join(path, "statement"))
    if "extensions" in obj:
        _extensions(obj["extensions"], _join(path, "extensions"))
    if "contextAgents" in obj:
        _context_agents(obj["contextAgents"], _join(path, "contextAgents"))
    if "contextGroups" in obj:
        _context_groups(obj["contextGroups"], _join(path, "contextGroups"))


def _context_activities(value: object, path: str) -> None:
    obj = _object(value, path, "a contextActivities object")
    _keys(obj, path, _CONTEXT_ACTIVITY_KEYS, "contextActivities")
    for kind, activities in obj.items():
        kind_path = _join(path, kind)
        # A single Activity is still allowed on input (Data 2.4.6.2.s4.b2); the caller normalises.
        if isinstance(activities, dict):
            _activity(activities, kind_path)
        elif isinstance(activities, list):
            for index, activity in enumerate(activities):
                _activity(activity, f"{kind_path}[{index}]")
        else:
            _fail(kind_path, f"must be an Activity or an array of Activities, not {_kind(activities)}")


def _context_agents(value: object, path: str) -> None:
    for index, item in enumerate(_array(value, path)):
        item_path = f"{path}[{index}]"
        obj = _object(item, item_path, "a contextAgent")
        if obj.get("objectType") != "contextAgent":
            _fail(_join(item_path, "objectType"), "is required and must be 'contextAgent'")
        _keys(obj, item_path, _CONTEXT_AGENT_KEYS, "a contextAgent")
        _required(obj, item_path, ("agent",))
        _agent(obj["agent"], _join(item_path, "agent"))
        if "relevantTypes" in obj:
            _relevant_types(obj["relevantTypes"], _join(item_path, "relevantTypes"))


def _context_groups(value: object, path: str) -> None:
    for index, item in enumerate(_array(value, path)):
        item_path = f"{path}[{index}]"
        obj = _object(item, item_path, "a contextGroup")
        if obj.get("objectType") != "contextGroup":
            _fail(_join(item_path, "objectType"), "is required and must be 'contextGroup'")
        _keys(obj, item_path, _CONTEXT_GROUP_KEYS, "a contextGroup")
        _required(obj, item_path, ("group",))
        _group(obj["group"], _join(item_path, "group"))
        if "relevantTypes" in obj:
            _relevant_types(obj["relevantTypes"], _join(item_path, "relevantTypes"))


def _relevant_types(value: object, path: str) -> None:
    types = _array(value, path)
    if not types:
        _fail(path, "must contain at least one IRI")
    for index, item in enumerate(types):
        _iri(item, f"{path}[{index}]")


# Attachments ---------------------------------------------------------------------------------------


def _attachments(value: object, path: str) -> None:
    for index, item in enumerate(_array(value, path)):
        item_path = f"{path}[{index}]"
        obj = _object(item, item_path, "an Attachment")
        _keys(obj, item_path, _ATTACHMENT_KEYS, "an Attachment")
        _required(obj, item_path, _ATTACHMENT_REQUIRED)
        _iri(obj["usageType"], _join(item_path, "usageType"))
        _language_map(obj["display"], _join(item_path, "display"))
        if "description" in obj:
            _language_map(obj["description"], _join(item_path, "description"))
        content_type_path = _join(item_path, "contentType")
        content_type = _string(obj["contentType"], content_type_path)
        if _MEDIA_TYPE_RE.fullmatch(content_type) is None:
            _fail(content_type_path, f"must be an Internet media type like 'text/plain', not {_show(content_type)}")
        length = obj["length"]
        if isinstance(length, bool) or not isinstance(length, int):
            _fail(_join(item_path, "length"), f"must be an integer (octets), not {_kind(length)}")
        if length < 0:
            _fail(_join(item_path, "length"), "must not be negative")
        sha2_path = _join(item_path, "sha2")
        if _SHA2_RE.fullmatch(_string(obj["sha2"], sha2_path)) is None:
            _fail(sha2_path, "must be a SHA-2 hash in hex (64 hex digits for SHA-256)")
        if "fileUrl" in obj:
            _iri(obj["fileUrl"], _join(item_path, "fileUrl"), "IRL")
