"""The ``format`` parameter of statement GETs: ``exact`` as stored, ``ids`` and ``canonical`` derived."""

from __future__ import annotations

from typing import Any

from ._agents import IFI_PROPERTIES

LANGUAGE_MAP_KEYS = ("display", "name", "description")
INTERACTION_LISTS = ("choices", "scale", "source", "target", "steps")


def _agent_ids(agent: Any) -> Any:
    if not isinstance(agent, dict):
        return agent
    # objectType only where it was given (it is required for Groups): ids means "the least that identifies".
    out: dict[str, Any] = {"objectType": agent["objectType"]} if "objectType" in agent else {}
    identified = False
    for ifi in IFI_PROPERTIES:
        if ifi in agent:
            out[ifi] = agent[ifi]
            identified = True
    if not identified and agent.get("objectType") == "Group":
        out["member"] = [_agent_ids(m) for m in agent.get("member") or ()]
    return out


def _object_ids(target: Any) -> Any:
    if not isinstance(target, dict):
        return target
    kind = target.get("objectType", "Activity")
    if kind == "Activity":
        return {"id": target.get("id")}  # objectType "Activity" is the default, so the id alone identifies it
    if kind in ("Agent", "Group"):
        return _agent_ids(target)
    if kind == "SubStatement":
        return _statement_ids(target)
    return target


def _context_ids(context: Any) -> Any:
    if not isinstance(context, dict):
        return context
    out = dict(context)
    for role in ("instructor", "team"):
        if role in out:
            out[role] = _agent_ids(out[role])
    if isinstance(out.get("contextActivities"), dict):
        out["contextActivities"] = {
            kind: [_object_ids(a) for a in (value if isinstance(value, list) else [value])]
            for kind, value in out["contextActivities"].items()
        }
    for key, inner in (("contextAgents", "agent"), ("contextGroups", "group")):
        if isinstance(out.get(key), list):
            out[key] = [{**item, inner: _agent_ids(item.get(inner))} for item in out[key] if isinstance(item, dict)]
    return out


def _statement_ids(statement: dict[str, Any]) -> dict[str, Any]:
    out = dict(statement)
    if "actor" in out:
        out["actor"] = _agent_ids(out["actor"])
    if isinstance(out.get("verb"), dict):
        out["verb"] = {"id": out["verb"].get("id")}
    if "object" in out:
        out["object"] = _object_ids(out["object"])
    if "authority" in out:
        out["authority"] = _agent_ids(out["authority"])
    if "context" in out:
        out["context"] = _context_ids(out["context"])
    return out


def to_ids(statement: dict[str, Any]) -> dict[str, Any]:
    """Agents, groups, activities and verbs reduced to what identifies them."""
    return _statement_ids(statement)


def parse_accept_language(header: str | None) -> list[str]:
    """Language ranges from ``Accept-Language``, best first (q=0 dropped)."""
    ranges: list[tuple[float, int, str]] = []
    for index, item in enumerate((header or "").split(",")):
        tag, _, params = item.strip().partition(";")
        if not tag:
            continue
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        if quality > 0:
            ranges.append((-quality, index, tag.strip().lower()))
    return [tag for _, _, tag in sorted(ranges)]


def pick_language(language_map: dict[str, Any], preferred: list[str]) -> dict[str, Any]:
    """One entry of a language map: the best match for the preferred ranges, else the first entry."""
    if not language_map:
        return language_map
    lowered = {key.lower(): key for key in language_map}
    for wanted in preferred:
        if wanted == "*":
            break
        if wanted in lowered:
            key = lowered[wanted]
            return {key: language_map[key]}
        for candidate_lower, key in lowered.items():
            if candidate_lower.split("-")[0] == wanted.split("-")[0]:
                return {key: language_map[key]}
    key = lowered.get("und") or next(iter(language_map))
    return {key: language_map[key]}


def _filter_languages(value: Any, preferred: list[str]) -> Any:
    if isinstance(value, list):
        return [_filter_languages(v, preferred) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, inner in value.items():
        if key in LANGUAGE_MAP_KEYS and isinstance(inner, dict) and all(isinstance(v, str) for v in inner.values()):
            out[key] = pick_language(inner, preferred)
        elif key in ("actor", "authority", "instructor", "team", "member", "extensions", "result"):
            out[key] = inner  # agents are returned as received; extensions are opaque
        else:
            out[key] = _filter_languages(inner, preferred)
    return out


def to_canonical(statement: dict[str, Any], accept_language: str | None) -> dict[str, Any]:
    """Language maps of verbs, activities and attachments reduced to the requester's language."""
    filtered: dict[str, Any] = _filter_languages(statement, parse_accept_language(accept_language))
    return filtered


_VERSION_2_CONTEXT = ("contextAgents", "contextGroups")


def to_version_1(statement: dict[str, Any]) -> dict[str, Any]:
    """A statement stored from an xAPI 2.0 client, for a 1.0.3 reader: without the 2.0-only context
    properties (which a 1.0.3 client would reject), everything else as stored."""
    out = dict(statement)
    for holder in (out, out.get("object")):
        if isinstance(holder, dict) and isinstance(holder.get("context"), dict):
            context = {k: v for k, v in holder["context"].items() if k not in _VERSION_2_CONTEXT}
            if holder is out:
                out["context"] = context
            else:
                out["object"] = {**holder, "context": context}
    return out
