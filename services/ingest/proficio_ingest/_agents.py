"""Identities of agents and groups, as the statement index and query filters compare them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

IFI_PROPERTIES = ("mbox", "mbox_sha1sum", "openid", "account")


def identity_key(agent: Any) -> str | None:
    """``Agent|mbox:mailto:a@b`` for an identified Agent or Group; None for an anonymous Group.

    Agents and identified Groups are the same when they have the same objectType and IFI.
    """
    if not isinstance(agent, dict):
        return None
    kind = "Group" if agent.get("objectType") == "Group" else "Agent"
    if "mbox" in agent:
        return f"{kind}|mbox:{agent['mbox']}"
    if "mbox_sha1sum" in agent:
        return f"{kind}|mbox_sha1sum:{str(agent['mbox_sha1sum']).lower()}"
    if "openid" in agent:
        return f"{kind}|openid:{agent['openid']}"
    account = agent.get("account")
    if isinstance(account, dict):
        return f"{kind}|account:{orjson.dumps([account.get('homePage'), account.get('name')]).decode()}"
    return None


def identities(agent: Any) -> Iterator[str]:
    """The agent itself and, for a Group, each member: every identity a filter may match it by."""
    key = identity_key(agent)
    if key is not None:
        yield key
    if isinstance(agent, dict) and agent.get("objectType") == "Group":
        for member in agent.get("member") or ():
            member_key = identity_key(member)
            if member_key is not None:
                yield member_key


def stream_identity(actor: Any) -> str:
    """What names the learner stream of a statement: the actor, or an anonymous group's members."""
    key = identity_key(actor)
    if key is not None:
        return key
    members = sorted(k for k in identities(actor))
    return "Group|members:" + orjson.dumps(members).decode()
