"""The equity refresher: keeps each tenant's learner facts and suppressed equity cells up to date.

Facts depend on the day (pace is judged on a day) and on views of several projections (evidence,
frameworks, alignments and policies, pacing plans), so they are not a fold of the log in log order;
they are a pure function of those views and the day, recomputed here when an input changes: the
learners whose evidence changed since the last refresh (rows past the evidence mark), everyone when the
reference data, the evidence generation or the day changes. Cells are rebuilt from all the tenant's
facts with the roster and the student groups on the day, and suppressed per audience before they are
stored, in one transaction with the refresh state: a reader sees one whole refresh or the one before.
Running two refreshers is harmless (each writes the same result), only wasted work.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from proficio_events import EventLog, bulk_insert, bulk_upsert

from .._apply import cycle_collection_paused
from .._model import Projection
from .._runtime import active_watermark
from .._store import ViewStore, active_generation
from ..competency import CompetencyEvidence, CompetencyReference, Frameworks
from ..competency._reads import Scored, score, scored
from ..pacing import PacingReferenceView, learners_of
from ..pacing._api import _end_of, pacing_reference, section_rosters
from ..roster import Roster, StudentGroups, groups_as_of
from ._aggregate import RunningCells, ScopeTable
from ._facts import Fact, learner_facts
from ._rules import CO, SuppressionRules
from ._suppression import CellView, suppress
from ._tables import equity_cells, equity_facts, equity_state

log_ = logging.getLogger("proficio.equity")
CHUNK = 500


@dataclass(frozen=True)
class RefreshReport:
    tenant: str
    as_of: date
    learners_refreshed: int
    learners_total: int
    cells: int
    seconds: float


def _today() -> date:
    return datetime.now(UTC).date()


async def _max_position(conn: AsyncConnection, table: sa.Table, tenant: str) -> int:
    found = await conn.scalar(sa.select(sa.func.max(table.c.last_position)).where(table.c.tenant == tenant))
    return int(found or 0)


async def _views_mark(conn: AsyncConnection, projections: Sequence[Projection], tenant: str) -> str:
    """Each view's active generation and the newest position in each of its tables for the tenant."""
    found: list[Any] = []
    for projection in projections:
        generation = await active_generation(conn, projection.name)
        if generation is None:
            found.append(None)
            continue
        store = ViewStore(projection, generation)
        tables = [await _max_position(conn, store.table(t.name), tenant) for t in projection.tables]
        found.append([generation.generation, *tables])
    return orjson.dumps(found).decode()


async def _marks(conn: AsyncConnection, tenant: str) -> tuple[str, str]:
    """(facts mark, cells mark): the reference data the facts and the cells were built from."""
    evidence_generation = await active_generation(conn, CompetencyEvidence.name)
    # A rebuilt evidence view (a new generation) changes the facts mark too: everyone is judged again.
    facts = await _views_mark(conn, [Frameworks(), CompetencyReference(), PacingReferenceView()], tenant)
    facts = orjson.dumps([evidence_generation.generation if evidence_generation else None, facts]).decode()
    return facts, await _views_mark(conn, [Roster(), StudentGroups()], tenant)


async def _tenants(conn: AsyncConnection) -> list[str]:
    found: set[str] = set()
    for projection, table in ((CompetencyEvidence(), "observations"), (Roster(), "learners")):
        generation = await active_generation(conn, projection.name)
        if generation is not None:
            physical = ViewStore(projection, generation).table(table)
            found |= {t for (t,) in await conn.execute(sa.select(physical.c.tenant).distinct())}
    return sorted(found)


async def _evidence_learners(conn: AsyncConnection, tenant: str, after: int | None) -> set[str]:
    """Learners with evidence (``after`` given: only those whose evidence changed past that position)."""
    generation = await active_generation(conn, CompetencyEvidence.name)
    if generation is None:
        return set()
    store = ViewStore(CompetencyEvidence(), generation)
    observations, voids = store.table("observations"), store.table("voids")
    query = sa.select(observations.c.learner).where(observations.c.tenant == tenant)
    if after is not None:
        query = query.where(observations.c.last_position > after)
    found = {learner for (learner,) in await conn.execute(query.distinct())}
    if after is not None:
        voided = (
            sa.select(observations.c.learner)
            .join(
                voids,
                sa.and_(voids.c.tenant == observations.c.tenant, voids.c.statement_id == observations.c.statement_id),
            )
            .where(voids.c.tenant == tenant, voids.c.last_position > after)
        )
        found |= {learner for (learner,) in await conn.execute(voided.distinct())}
    return found


async def suppression_rules(conn: AsyncConnection, tenant: str) -> SuppressionRules:
    """The tenant's suppression rules (``PUT /equity/rules``), else the Colorado preset."""
    ref = await pacing_reference(conn, tenant)
    return SuppressionRules.from_mapping(ref.suppression) if ref.suppression else CO


async def _groups_and_schools(
    conn: AsyncConnection, tenant: str, as_of: date
) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    groups: dict[str, dict[str, str]] = {}
    generation = await active_generation(conn, StudentGroups.name)
    if generation is not None:
        table = ViewStore(StudentGroups(), generation).table("memberships")
        rows = await conn.execute(
            sa.select(table.c.learner, table.c.factor, table.c.value, table.c.effective_from, table.c.effective_to)
            .where(table.c.tenant == tenant)
        )  # fmt: skip
        groups = groups_as_of((dict(r) for r in rows.mappings()), as_of)
    schools: dict[str, list[str]] = {}
    generation = await active_generation(conn, Roster.name)
    if generation is not None:
        table = ViewStore(Roster(), generation).table("learners")
        rows = await conn.execute(sa.select(table.c.learner, table.c.schools).where(table.c.tenant == tenant))
        schools = {learner: orjson.loads(listed) for learner, listed in rows}
    return groups, schools


def _metrics_json(view: CellView) -> str:
    return orjson.dumps({
        name: {"value": m.value, "count": m.count, "ci95": list(m.ci95) if m.ci95 else None,
               "hidden": m.hidden.value if m.hidden else None, "label": m.label}
        for name, m in sorted(view.metrics.items())
    }).decode()  # fmt: skip


def cell_rows(tenant: str, tables: Sequence[ScopeTable], rules: SuppressionRules, as_of: date) -> list[dict[str, Any]]:
    """The stored rows of every scope's cells, for staff and for the suppressed audiences (``public``)."""
    rows = []
    for table in tables:
        suppressed = suppress(table.cells, table.partitions, rules)
        for audience, views in (("staff", suppressed.staff), ("public", suppressed.public)):
            for key, view in views.items():
                level, scope, factor, value = key
                rows.append({
                    "tenant": tenant, "audience": audience, "scope": scope, "level": level, "factor": factor,
                    "value": value, "n": view.n, "hidden": view.hidden.value if view.hidden else None,
                    "label": view.label, "metrics": _metrics_json(view), "as_of": as_of.isoformat(),
                })  # fmt: skip
    return rows


@dataclass
class _KeptFacts:
    """A tenant's facts as this refresher last stored them, and the refresh state it stored with them: valid while
    that state is the tenant's (no other refresher has written since)."""

    refreshed_us: int
    as_of: str
    #: learner -> her facts, in scope order.
    facts: dict[str, tuple[Fact, ...]]
    #: The cells of those facts, kept fact by fact, and the cells mark (roster, student groups) they were built on.
    cells: RunningCells | None = None
    cells_mark: str | None = None

    def replace(self, learner: str, new: tuple[Fact, ...]) -> None:
        """Her facts are now ``new``: the cells take back the facts that changed and take the new ones."""
        old = self.facts.pop(learner, ())
        if new:
            self.facts[learner] = new
        cells = self.cells
        if cells is None:
            return
        before = {f.scope: f for f in old}
        for fact in new:
            was = before.pop(fact.scope, None)
            if was != fact:
                if was is not None:
                    cells.discard(was)
                cells.add(fact)
        for gone in before.values():
            cells.discard(gone)


class EquityRefresher:
    """Refreshes every tenant's equity facts and cells every ``interval_s`` (and on ``refresh()``).

    While the evidence view is catching up with the log (statements arriving faster than it folds them), the pause
    between rounds stretches to ``stretch`` times the last round's length: a round then touches nearly every
    learner and is out of date by the time it ends, and its CPU is better spent on the folds. The round starts
    as soon as the evidence view has caught up.
    """

    def __init__(
        self,
        log: EventLog,
        *,
        interval_s: float = 2.0,
        stretch: float = 3.0,
        today: Callable[[], date] = _today,
        chunk: int = CHUNK,
        topic: str | None = None,
    ) -> None:
        """``topic``: the Kafka topic the evidence view is fed from, if it is (its watermark comes from there)."""
        self.log = log
        self.topic = topic
        self.interval_s = interval_s
        self.stretch = stretch
        self.today = today
        self.chunk = chunk
        #: tenant -> the facts stored by this refresher's last round (see ``_KeptFacts``).
        self._kept: dict[str, _KeptFacts] = {}

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            try:
                await self.refresh()
            except Exception:  # a failed round is retried on the next; the views keep the last good refresh
                log_.exception("equity refresh failed")
            longest = loop.time() + max(self.interval_s, self.stretch * (loop.time() - started))
            pause = self.interval_s
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, min(pause, longest - loop.time())))
                if loop.time() >= longest or await self._evidence_caught_up():
                    break
                pause = self.interval_s / 4

    async def _evidence_caught_up(self) -> bool:
        """Whether the evidence view has folded the whole log (or Kafka topic) as far as it is known."""
        try:
            watermark = await active_watermark(self.log, CompetencyEvidence.name, topic=self.topic)
            if watermark is None:
                return True
            if self.topic is not None:
                return True  # its watermark already says how far the topic is folded
            return watermark[0] >= await self.log.max_position()
        except Exception:  # the store is down: the round tells
            return True

    async def refresh(self, as_of: date | None = None) -> list[RefreshReport]:
        day = as_of or self.today()
        async with self.log.engine.connect() as conn:
            tenants = await _tenants(conn)
        # A round makes a tuple per observation and per fact (millions at 50,000 learners), acyclic and short-lived:
        # the cycle collector traversed them and the kept facts again and again, ~40% of a round's CPU. It is held
        # off for the round and runs once after it (unless a fold in this process holds it off: it collects then).
        with cycle_collection_paused():
            reports = [r for tenant in tenants if (r := await self.refresh_tenant(tenant, day)) is not None]
        if gc.isenabled():
            gc.collect()
        return reports

    async def refresh_tenant(self, tenant: str, as_of: date) -> RefreshReport | None:
        """Bring one tenant's facts and cells up to date for ``as_of``; None when nothing changed."""
        started = time.perf_counter()
        engine = self.log.engine
        # The evidence view's watermark, not its newest row: with several workers (segments, Kafka partitions)
        # a lagging one still writes rows below the newest, never below the watermark.
        watermark = await active_watermark(self.log, CompetencyEvidence.name, topic=self.topic)
        evidence_mark = watermark[0] if watermark else 0
        async with engine.connect() as conn:
            facts_mark, cells_mark = await _marks(conn, tenant)
            state = (
                (await conn.execute(sa.select(equity_state).where(equity_state.c.tenant == tenant))).mappings().first()
            )
            everyone = state is None or state["as_of"] != as_of.isoformat() or state["facts_mark"] != facts_mark
            kept = self._kept.pop(tenant, None)
            if kept is not None and (
                everyone or state is None or state["refreshed_us"] != kept.refreshed_us or state["as_of"] != kept.as_of
            ):
                kept = None  # another refresher wrote since, or every fact is written anew: read them back
            pacing = await pacing_reference(conn, tenant)
            rosters = await section_rosters(conn, tenant, {s for p in pacing.plans.values() for s in p.sections})
            members = {plan.plan: set(learners_of(plan, rosters)) for plan in pacing.plans.values()}
            if everyone:
                todo = await _evidence_learners(conn, tenant, None) | {x for m in members.values() for x in m}
            else:
                assert state is not None
                todo = await _evidence_learners(conn, tenant, int(state["evidence_mark"]))
            if not todo and not everyone and state is not None and state["cells_mark"] == cells_mark:
                return None
        stall = pacing.policy.stall_rule()
        until = _end_of(as_of)
        planned = {c.uri for p in pacing.plans.values() for c in p.competencies}
        ordered = sorted(todo)
        for start in range(0, len(ordered), self.chunk):
            chunk = ordered[start : start + self.chunk]
            async with engine.connect() as conn:
                loaded = await scored(conn, tenant, chunk, now_us=until, competencies=planned, until_us=until,
                                      stall=stall, compute=False)  # fmt: skip

            def chunk_facts(chunk: list[str] = chunk, loaded: Scored = loaded) -> dict[str, tuple[Fact, ...]]:
                progress = score(loaded.evidence, loaded.reference, now_us=until, stall=stall, trend=False)
                found: dict[str, tuple[Fact, ...]] = {}
                for learner in chunk:
                    plans = [p for p in pacing.plans.values() if learner in members[p.plan]]
                    # No last activity: it only tells whether she is disengaged, which no fact holds.
                    facts = learner_facts(learner, progress[learner], plans, pacing, as_of)
                    found[learner] = tuple(sorted(facts, key=_SCOPE))
                return found

            # In a thread: the event loop (serve's API, the folds beside it) keeps its turns meanwhile.
            by_learner = await asyncio.to_thread(chunk_facts)
            day = as_of.isoformat()
            rewritten: dict[str, tuple[Fact, ...]] = by_learner  # learners whose rows are all written anew
            upserted: list[tuple[Any, ...]] = []
            if kept is not None:
                # Only the facts that changed are written (the others' rows are these already): a round after
                # new evidence changes a few of a learner's ~10 facts (a plan's, a competency's), rarely all.
                facts_before = kept.facts
                by_learner = {learner: new for learner, new in by_learner.items()
                              if facts_before.get(learner, ()) != new}  # fmt: skip
                rewritten = {}
                for learner, new in by_learner.items():
                    old = {f.scope: f for f in facts_before.get(learner, ())}
                    if not old.keys() <= {f.scope for f in new}:
                        rewritten[learner] = new  # a scope went: her rows are replaced
                        continue
                    upserted.extend(_fact_tuple(tenant, f, day) for f in new if old.get(f.scope) != f)
            if rewritten or upserted:
                async with self.log.transaction() as conn:  # the write lock up front (SQLite: BEGIN IMMEDIATE)
                    if rewritten:
                        changed = equity_facts.c.learner.in_(list(rewritten))
                        await conn.execute(equity_facts.delete().where(equity_facts.c.tenant == tenant, changed))
                        written = [_fact_tuple(tenant, fact, day) for facts in rewritten.values() for fact in facts]
                        await bulk_insert(conn, equity_facts, written, columns=_FACT_COLUMNS)
                    await bulk_upsert(conn, equity_facts, upserted, key=_FACT_KEY)
            if kept is not None:
                for learner, new in by_learner.items():
                    kept.replace(learner, new)
        async with self.log.transaction() as conn:
            if everyone:  # learners no longer anywhere (a plan's section emptied): their facts go
                await conn.execute(equity_facts.delete().where(equity_facts.c.tenant == tenant,
                                                               equity_facts.c.as_of != as_of.isoformat()))  # fmt: skip
            if kept is None:
                kept = _KeptFacts(0, as_of.isoformat(), {})
                kept.facts = await _stored_facts(conn, tenant)
            if kept.cells is None or kept.cells_mark != cells_mark:
                # Built again from every fact when the roster or the groups changed (the day: kept is new then).
                groups, schools = await _groups_and_schools(conn, tenant, as_of)
                kept.cells = await asyncio.to_thread(_running_cells, kept.facts, groups, schools)
                kept.cells_mark = cells_mark
            rules = await suppression_rules(conn, tenant)
            running = kept.cells
            assert running is not None
            stored = await asyncio.to_thread(lambda: cell_rows(tenant, running.tables(), rules, as_of))
            await conn.execute(equity_cells.delete().where(equity_cells.c.tenant == tenant))
            if stored:
                await conn.execute(equity_cells.insert(), stored)
            learners = len(kept.facts)
            refreshed_us = time.time_ns() // 1000
            values = {
                "as_of": as_of.isoformat(), "evidence_mark": evidence_mark, "facts_mark": facts_mark,
                "cells_mark": cells_mark, "learners": learners, "refreshed_us": refreshed_us,
            }  # fmt: skip
            updated = await conn.execute(equity_state.update().where(equity_state.c.tenant == tenant).values(values))
            if updated.rowcount == 0:
                await conn.execute(equity_state.insert().values(tenant=tenant, **values))
        kept.refreshed_us = refreshed_us
        self._kept[tenant] = kept
        return RefreshReport(tenant, as_of, len(todo), learners, len(stored), time.perf_counter() - started)


def _SCOPE(fact: Fact) -> str:
    return fact.scope


def _running_cells(
    facts: dict[str, tuple[Fact, ...]], groups: dict[str, dict[str, str]], schools: dict[str, list[str]]
) -> RunningCells:
    cells = RunningCells(groups, schools)
    cells.add_all(fact for listed in facts.values() for fact in listed)
    return cells


#: The columns of ``equity_facts`` in its order (``bulk_upsert`` writes them so) and its key.
_FACT_COLUMNS = ("tenant", "learner", "scope", "pct_mastered", "mastered", "on_track", "stalled", "velocity", "as_of")
_FACT_KEY = ("tenant", "learner", "scope")


def _fact_tuple(tenant: str, fact: Fact, as_of: str) -> tuple[Any, ...]:
    """A fact's row in ``_FACT_COLUMNS`` order."""
    velocity = None if fact.velocity is None else str(fact.velocity)
    return (tenant, fact.learner, fact.scope, str(fact.pct_mastered), fact.mastered, fact.on_track, fact.stalled,
            velocity, as_of)  # fmt: skip


async def _stored_facts(conn: AsyncConnection, tenant: str) -> dict[str, tuple[Fact, ...]]:
    """The tenant's stored facts per learner, in scope order (a refresher's first round: ~450,000 of a district)."""
    c = equity_facts.c
    columns = (c.learner, c.scope, c.pct_mastered, c.mastered, c.on_track, c.stalled, c.velocity)
    rows: Any
    if conn.dialect.name == "postgresql":  # on the driver connection: no per-row processing of SQLAlchemy's
        raw = await conn.get_raw_connection()
        sql = f"SELECT {', '.join(col.name for col in columns)} FROM {equity_facts.name} WHERE tenant = $1"
        rows = await raw.driver_connection.fetch(sql, tenant)  # type: ignore[union-attr]
    else:
        rows = await conn.execute(sa.select(*columns).where(c.tenant == tenant))
    decimals: dict[str, Decimal] = {}  # a few hundred values, each parsed once
    read: dict[str, list[Fact]] = {}
    for learner, scope, pct, mastered, on_track, stalled, velocity in rows:
        pct_value = decimals.get(pct)
        if pct_value is None:
            pct_value = decimals[pct] = Decimal(pct)
        velocity_value = None
        if velocity is not None:
            velocity_value = decimals.get(velocity)
            if velocity_value is None:
                velocity_value = decimals[velocity] = Decimal(velocity)
        fact = Fact(learner, scope, pct_value, bool(mastered), on_track, bool(stalled), velocity_value)
        read.setdefault(learner, []).append(fact)
    return {learner: tuple(sorted(facts, key=_SCOPE)) for learner, facts in read.items()}
