"""Which parts of a statement are personal data, split off to be sealed under the learner's key.

A ``StatementStored`` event's payload keeps the *redacted* statement: everything the views need (id, verb,
the object activity, result score/success/completion/duration, timestamps, context activities,
registration, platform, language, statement refs, attachments' metadata) and nothing that names or
describes a person. The *personal* part goes in the event's sealed body, encrypted with the learner's data
key (``proficio_events._keyring``): a JSON list of ``[path, value]`` pairs, each the value removed from
the statement at that path. Erasing the learner destroys her key; the redacted statement stays, and GET
answers it with a pseudonymous actor (``pseudonymous_agent``).

Personal, so sealed:

- ``actor``, and an Agent/Group ``object``: identifiers and names;
- ``context.instructor``, ``context.team``, ``context.contextAgents``, ``context.contextGroups``: other
  people named in her statement (sealed under *her* key: erasing her also removes them from her
  statements; they stay readable in statements of their own);
- ``result.response``: free text she wrote;
- ``result.extensions`` and ``context.extensions``: free-form values that may carry identifiers or text
  (a profile may put an email address or an essay there); no view reads them;
- the same inside a SubStatement.

Kept clear: ``authority`` (the credential's agent: it names the sending system, an LMS, not a learner;
queries by authority and the `statements/read/mine` scope depend on it), activity definitions (they
describe the activity, shared by every learner), attachment metadata (``display``/``description`` name
the attachment; attachment content is a separate, content-addressed event: see docs/privacy.md).
"""

from __future__ import annotations

from typing import Any

import orjson

Path = tuple[str, ...]

#: Where personal data may sit, relative to a statement (or a SubStatement).
_CONTEXT_PERSONAL: tuple[Path, ...] = (
    ("context", "instructor"),
    ("context", "team"),
    ("context", "contextAgents"),
    ("context", "contextGroups"),
    ("context", "extensions"),
    ("result", "response"),
    ("result", "extensions"),
)
#: The account home page of the actor GET shows for an erased learner (the learner id is its name).
ERASED_HOME_PAGE = "https://proficio.invalid/erased-learner"


def _is_agent(value: Any) -> bool:
    return isinstance(value, dict) and value.get("objectType") in ("Agent", "Group")


def _personal_paths(statement: dict[str, Any]) -> list[Path]:
    paths: list[Path] = [("actor",)]
    target = statement.get("object")
    if _is_agent(target):
        paths.append(("object",))
    paths.extend(_CONTEXT_PERSONAL)
    if isinstance(target, dict) and target.get("objectType") == "SubStatement":
        paths.append(("object", "actor"))
        if _is_agent(target.get("object")):
            paths.append(("object", "object"))
        paths.extend(("object", *p) for p in _CONTEXT_PERSONAL)
    return paths


def _pop(holder: dict[str, Any], path: Path, own: set[int]) -> tuple[bool, Any]:
    """Remove the value at ``path`` from ``holder``, copying the dicts on the way (never changing the caller's):
    only when the path is there, and each dict once (``own``: the ids of the copies already made)."""
    node: Any = holder
    for step in path[:-1]:
        node = node.get(step)
        if not isinstance(node, dict):
            return False, None
    if path[-1] not in node:
        return False, None
    node = holder
    for step in path[:-1]:
        inner = node[step]
        if id(inner) not in own:
            inner = dict(inner)
            node[step] = inner
            own.add(id(inner))
        node = inner
    return True, node.pop(path[-1])


def split(statement: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """(the redacted statement, the personal part as JSON bytes); ``statement`` is left as it is."""
    redacted = dict(statement)
    removed: list[tuple[Path, Any]] = []
    own: set[int] = set()
    for path in _personal_paths(statement):
        present, value = _pop(redacted, path, own)
        if present:
            removed.append((path, value))
    return redacted, orjson.dumps(removed)


def merge(redacted: dict[str, Any], personal: bytes) -> dict[str, Any]:
    """The statement again, from its redacted form and its opened personal part."""
    whole = dict(redacted)
    for path, value in orjson.loads(personal):
        holder = whole
        for step in path[:-1]:
            inner = holder.get(step)
            copied = dict(inner) if isinstance(inner, dict) else {}
            holder[step] = copied
            holder = copied
        holder[path[-1]] = value
    return _in_order(whole, redacted)


def _in_order(whole: dict[str, Any], redacted: dict[str, Any]) -> dict[str, Any]:
    """Actor first, as statements are usually written (member order is not significant in JSON)."""
    if "actor" in whole and next(iter(whole)) != "actor":
        return {"actor": whole["actor"], **{k: v for k, v in whole.items() if k != "actor"}}
    return whole


def pseudonymous_agent(learner: str) -> dict[str, Any]:
    """The actor an erased learner's statements show: an account named by her pseudonymous learner id."""
    return {"objectType": "Agent", "account": {"homePage": ERASED_HOME_PAGE, "name": learner}}


def pseudonymous(redacted: dict[str, Any], learner: str) -> dict[str, Any]:
    """An erased learner's statement: the redacted statement with a pseudonymous actor (and, where the
    object was a person, the same pseudonym: a statement needs an object)."""
    shown: dict[str, Any] = {"actor": pseudonymous_agent(learner), **redacted}
    if "object" not in shown:
        shown["object"] = pseudonymous_agent(learner)
    target = shown.get("object")
    if isinstance(target, dict) and target.get("objectType") == "SubStatement":
        inner = dict(target)
        inner.setdefault("actor", pseudonymous_agent(learner))
        inner.setdefault("object", pseudonymous_agent(learner))
        shown["object"] = inner
    return shown
