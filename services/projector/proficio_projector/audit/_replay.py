"""A learner's history and her views as of any moment, by replaying the log.

The history is every event about the learner in log order: her statements and teacher ratings (her own
stream), her group memberships (her protected stream), and the statements that voided hers (they live in
the voider's stream; the evidence view's void rows say which). Her views as of T replay the same pure
folds the projectors run, over those events and the reference streams (frameworks, alignments and
policies, sections, pacing plans and calendars), keeping only what the log held at T, and compute her
progress and pace on that moment exactly as the live API does: so at T = now they equal the live views.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from proficio_events import EventLog, StoredEvent, open_sealed

from .._model import MemoryState, Projection, fold
from .._store import ViewStore, active_generation
from ..competency import CompetencyEvidence, CompetencyReference, Frameworks, Observation, framework_stream
from ..competency._api import progress_listing
from ..competency._evidence import statement_time_us
from ..competency._reads import reference_from_rows, score, void_reasons
from ..competency._reference import REFERENCE_STREAM
from ..pacing import PacingReferenceView, learners_of, pace
from ..pacing import reference_from_rows as pacing_from_rows
from ..pacing._api import pace_item
from ..roster import StudentGroups, groups_as_of

#: How ingest keys a statement's event in the log (its id, unique per tenant).
STATEMENT_KEY = "statement:"
#: The fixed streams of tenant-wide reference data; the per-id ones are found from the current views.
PACING_STREAMS = ("pacing:policy", "equity:rules")
CHUNK = 1000


def _groups_stream(learner: str) -> str:
    return f"protected:groups:{learner}"


async def learner_events(log: EventLog, tenant: str, learner: str) -> list[StoredEvent]:
    """Every event about the learner, in log order (see the module doc)."""
    own = await log.read_stream(tenant, learner)
    groups = await log.read_stream(tenant, _groups_stream(learner))
    statement_ids = [str(e.data()["statement"]["id"]).lower() for e in own if e.event_type == "StatementStored"]
    voiders: set[str] = set()
    async with log.engine.connect() as conn:
        for start in range(0, len(statement_ids), CHUNK):
            reasons = await void_reasons(conn, tenant, statement_ids[start : start + CHUNK])
            voiders |= {by for by in reasons.values() if not by.startswith("withdrawn")}
    voiding = await log.get_by_keys(tenant, [STATEMENT_KEY + by for by in sorted(voiders)])
    return sorted({e.position: e for e in (*own, *groups, *voiding)}.values(), key=lambda e: e.position)


def summary(event: StoredEvent, keys: Mapping[str, bytes] | None = None) -> dict[str, Any]:
    """One history line: what the event is, when, and its gist (the full event is in the export).

    A rating's comment is sealed under the learner's key: shown when ``keys`` opens it, None once she is erased.
    """
    data = event.data()
    if event.event_type.startswith("TeacherRating") and event.sealed is not None and "comment" not in data:
        opened = open_sealed(keys or {}, event.tenant, event.stream, event.key_id, event.sealed)
        data = {**data, "comment": orjson.loads(opened)["comment"] if opened is not None else None}
    line: dict[str, Any] = {"position": event.position, "recorded": _iso(event.recorded_us), "type": event.event_type,
                            "stream": event.stream}  # fmt: skip
    if "statement" in data:
        statement = data["statement"]
        line |= {"statement_id": statement.get("id"), "verb": statement.get("verb", {}).get("id"),
                 "object": statement.get("object", {}).get("id"), "timestamp": statement.get("timestamp"),
                 "result": statement.get("result")}  # fmt: skip
    elif event.event_type.startswith("TeacherRating"):
        line |= {k: data.get(k) for k in ("rating_id", "competency", "points", "level", "authority", "comment")}
    else:
        line |= {k: v for k, v in data.items() if k in ("factor", "value", "effective_from", "effective_to")}
    return line


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _current_ids(log: EventLog, projection: Projection, table: str, column: str, tenant: str) -> list[str]:
    async with log.engine.connect() as conn:
        generation = await active_generation(conn, projection.name)
        if generation is None:
            return []
        physical = ViewStore(projection, generation).table(table)
        rows = await conn.execute(sa.select(physical.c[column]).where(physical.c.tenant == tenant))
        return sorted({value for (value,) in rows})


async def _replayed(
    log: EventLog, tenant: str, projection: Projection, streams: Iterable[str], until_us: int
) -> MemoryState:
    events: list[StoredEvent] = []
    for stream in dict.fromkeys(streams):
        events += [e for e in await log.read_stream(tenant, stream) if e.recorded_us <= until_us]
    return fold(projection, sorted(events, key=lambda e: e.position))


def _rows(state: MemoryState) -> dict[str, list[dict[str, Any]]]:
    return {table: [dict(r) for r in rows.values() if r is not None] for table, rows in state.rows.items()}


@dataclass(frozen=True)
class AsOf:
    learner: str
    at_us: int
    competencies: list[dict[str, Any]]
    rollups: list[dict[str, Any]]
    plans: list[dict[str, Any]]
    groups: dict[str, str]
    evidence_events: int

    def as_dict(self) -> dict[str, Any]:
        return {"learner": self.learner, "at": _iso(self.at_us), "competencies": self.competencies,
                "rollups": self.rollups, "plans": self.plans, "groups": self.groups,
                "evidence_events": self.evidence_events}  # fmt: skip


async def views_as_of(
    log: EventLog, tenant: str, learner: str, at_us: int, *, events: Sequence[StoredEvent] | None = None
) -> AsOf:
    """The learner's competency progress (with rollups), pace on her plans and groups, as the log held them
    at ``at_us``: a replay of her events and the reference streams up to that moment."""
    mine = [e for e in (events if events is not None else await learner_events(log, tenant, learner))
            if e.recorded_us <= at_us]  # fmt: skip
    evidence = fold(CompetencyEvidence(), mine)
    observations = [Observation.from_row(r) for r in evidence.rows.get("observations", {}).values()
                    if r is not None and r["learner"] == learner]  # fmt: skip
    voided = {key[1] for key, row in evidence.rows.get("voids", {}).items() if row is not None}
    frameworks = [framework_stream(f) for f in await _current_ids(log, Frameworks(), "frameworks", "framework", tenant)]
    sections = [f"section:{s}" for s in await _current_ids(log, CompetencyReference(), "sections", "section", tenant)]
    competency_rows = _rows(await _replayed(log, tenant, Frameworks(), frameworks, at_us))
    reference_state = await _replayed(log, tenant, CompetencyReference(), [REFERENCE_STREAM, *sections], at_us)
    ref = reference_from_rows({**competency_rows, **_rows(reference_state)})
    pacing_streams = [f"{kind}:{i}" for kind, table in (("calendar", "calendars"), ("plan", "plans"),
                                                        ("graduation", "menus"))
                      for i in await _current_ids(log, PacingReferenceView(), table, "id", tenant)]  # fmt: skip
    pacing_rows = _rows(await _replayed(log, tenant, PacingReferenceView(), [*pacing_streams, *PACING_STREAMS], at_us))
    pacing = pacing_from_rows(pacing_rows)
    stall = pacing.policy.stall_rule()
    found = score({learner: (observations, voided)}, ref, now_us=at_us, stall=stall)[learner]
    items, rolled = progress_listing(ref, learner, found)
    rosters: Mapping[str, list[str]] = {
        row["section"]: orjson.loads(row["learners"]) for row in _rows(reference_state).get("sections", [])
    }
    day = datetime.fromtimestamp(at_us / 1_000_000, UTC).date()
    statements = [statement_time_us(e.data()["statement"], e.recorded_us) for e in mine
                  if e.event_type in ("StatementStored", "StatementVoided") and e.stream == learner]  # fmt: skip
    last = datetime.fromtimestamp(max(statements) / 1_000_000, UTC).date() if statements else None
    plans = [
        pace_item(learner, pace(plan, pacing.calendar_of(plan), pacing.policy, found, day, last_activity=last),
                  lambda c: ref.label(c)[0])
        for plan in sorted(pacing.plans.values(), key=lambda p: p.plan)
        if learner in learners_of(plan, rosters)
    ]  # fmt: skip
    memberships = fold(StudentGroups(), mine).rows.get("memberships", {})
    groups = groups_as_of([r for r in memberships.values() if r is not None], day).get(learner, {})
    return AsOf(learner, at_us, items, rolled, plans, groups, len(mine))


def diff(before: AsOf, after: AsOf) -> dict[str, Any]:
    """Which evidence changed which conclusion between two moments: per competency, the fields that
    changed and the evidence that came or went; per plan, the pace fields that changed."""
    changes: list[dict[str, Any]] = []
    old = {c["competency"]: c for c in before.competencies}
    new = {c["competency"]: c for c in after.competencies}
    for competency in sorted(old.keys() | new.keys()):
        a, b = old.get(competency, {}), new.get(competency, {})
        fields = {k: {"from": a.get(k), "to": b.get(k)} for k in ("score", "level", "status", "mastered",
                                                                   "mastered_at", "stalled", "regressed")
                  if a.get(k) != b.get(k)}  # fmt: skip
        ids_a = {e["statement_id"] for e in a.get("evidence", [])}
        ids_b = {e["statement_id"] for e in b.get("evidence", [])}
        if fields or ids_a != ids_b:
            changes.append({
                "competency": competency, "code": (b or a).get("code"), "changed": fields,
                "evidence_added": sorted(ids_b - ids_a), "evidence_withdrawn": sorted(ids_a - ids_b),
            })  # fmt: skip
    plans = []
    old_plans = {p["plan"]: p for p in before.plans}
    for plan in after.plans:
        previous = old_plans.get(plan["plan"], {})
        fields = {k: {"from": previous.get(k), "to": plan.get(k)} for k in ("mastered", "pct_mastered", "pace_status",
                                                                            "projected_completion", "behind_count")
                  if previous.get(k) != plan.get(k)}  # fmt: skip
        if fields:
            plans.append({"plan": plan["plan"], "changed": fields})
    return {"learner": after.learner, "from": _iso(before.at_us), "to": _iso(after.at_us),
            "competencies": changes, "plans": plans}  # fmt: skip
