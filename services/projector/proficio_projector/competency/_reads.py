"""Reading the competency views: what one request needs, in a few queries, scored with the reference data
in force (the frameworks' scales, the alignments, the mastery policies and rollup rules)."""

from __future__ import annotations

import operator
import sys
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from proficio_events import select_in
from proficio_events._schema import checkpoints

from .._store import ACTIVE, Generation, ViewStore, active_generation, list_generations
from ._case import DEFAULT_SCALE, Level
from ._frameworks import Frameworks
from ._mastery import MasteryPolicy
from ._progress import (
    DEFAULT_STALL,
    CompetencyEvidence,
    GridCell,
    Observation,
    Progress,
    RollupPolicy,
    StallRule,
    grid_cells,
    progress,
    rollups,
)
from ._reference import CompetencyReference, policies_from_rows, policy_for, rollup_rules_from_rows


class NotBuilt(LookupError):
    """A view the request needs has no active generation yet."""


@dataclass(frozen=True)
class Competency:
    uri: str
    framework: str
    code: str | None
    statement: str
    parent: str | None
    sequence: int | None


@dataclass(frozen=True)
class FrameworkInfo:
    identifier: str
    uri: str
    title: str
    scale: tuple[Level, ...]


@dataclass
class Reference:
    """The tenant's reference data for the competencies and activities at hand."""

    competencies: dict[str, Competency] = field(default_factory=dict)
    frameworks: dict[str, FrameworkInfo] = field(default_factory=dict)
    alignments: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    policies: dict[str, MasteryPolicy] = field(default_factory=dict)
    rollup_rules: dict[str, RollupPolicy] = field(default_factory=dict)
    override: MasteryPolicy | None = None

    def framework_of(self, competency: str) -> str | None:
        found = self.competencies.get(competency)
        if found is not None:
            return found.framework
        root = next((f for f in self.frameworks.values() if f.uri == competency), None)
        return root.identifier if root else None

    def policy_of(self, competency: str) -> MasteryPolicy:
        return self.override or policy_for(self.policies, competency, self.framework_of(competency), MasteryPolicy())

    def scale_of(self, competency: str) -> tuple[Level, ...]:
        framework = self.frameworks.get(self.framework_of(competency) or "")
        return framework.scale if framework else DEFAULT_SCALE

    def rollup_of(self, competency: str) -> RollupPolicy:
        return policy_for(self.rollup_rules, competency, self.framework_of(competency), RollupPolicy())

    def threshold_of(self, competency: str) -> Decimal:
        scale = self.scale_of(competency)
        top = max(level.points for level in scale)
        mastery = [level.points for level in scale if level.mastery]
        return (min(mastery) if mastery else top) / top

    def children(self, frameworks: Iterable[str]) -> dict[str, list[str]]:
        """Parent -> children within these frameworks; each framework's uri is the parent of its top items."""
        wanted = set(frameworks)
        found: dict[str, list[str]] = {}
        for c in sorted(self.competencies.values(), key=order_key):
            if c.framework not in wanted:
                continue
            root = self.frameworks.get(c.framework)
            parent = c.parent or (root.uri if root else None)
            if parent:
                found.setdefault(parent, []).append(c.uri)
        return found

    def label(self, competency: str) -> tuple[str | None, str | None]:
        """(code, statement) of a competency or a framework's profile."""
        found = self.competencies.get(competency)
        if found is not None:
            return found.code, found.statement
        root = next((f for f in self.frameworks.values() if f.uri == competency), None)
        return (root.identifier, root.title) if root else (None, None)


def order_key(c: Competency) -> tuple[str, int, str, str]:
    """Framework order: by framework, then the package's sequence, then code, then IRI."""
    return (c.framework, c.sequence if c.sequence is not None else 1 << 30, c.code or "", c.uri)


async def active_generations(conn: AsyncConnection) -> dict[str, Generation | None]:
    """Every view's active generation, in one query (a grid needs three, several times over)."""
    found: dict[str, Generation | None] = {}
    for generation in await list_generations(conn):
        found.setdefault(generation.name, None)
        if generation.status == ACTIVE:
            found[generation.name] = generation  # the newest active one, as active_generation() picks
    return found


async def _generation(
    conn: AsyncConnection, name: str, required: bool, known: Mapping[str, Generation | None] | None = None
) -> Generation | None:
    generation = known[name] if known is not None and name in known else await active_generation(conn, name)
    if generation is None and required:
        raise NotBuilt(name)
    return generation


_PG_EVIDENCE = """
SELECT o.learner, o.statement_id, o.activity, o.competencies, o.norm, o.success, o.timestamp_us, o.stored_us,
       o.source, o.authority, o.raw,
       EXISTS (SELECT 1 FROM "{voids}" v WHERE v.tenant = o.tenant AND v.statement_id = o.statement_id),
       o.last_position
  FROM "{observations}" o
 WHERE o.tenant = $1 AND o.learner = ANY($2::text[])
"""


async def learner_evidence(
    conn: AsyncConnection,
    tenant: str,
    learners: Sequence[str],
    *,
    generations: Mapping[str, Generation | None] | None = None,
) -> dict[str, tuple[list[Observation], set[str]]]:
    """Each learner's observations and which of them are voided (or withdrawn). ``generations``: the active
    generations, when the caller has them."""
    generation = await _generation(conn, CompetencyEvidence.name, required=True, known=generations)
    assert generation is not None
    return await _evidence(conn, generation, tenant, learners)


async def _evidence(
    conn: AsyncConnection,
    generation: Generation,
    tenant: str,
    learners: Sequence[str],
    stamps: dict[str, tuple[int, int, int]] | None = None,
) -> dict[str, tuple[list[Observation], set[str]]]:
    """``learner_evidence`` in a generation; and into ``stamps``, each learner's (observation rows, their
    newest position, the voided ones) as ``_evidence_stamps`` gives them, when it is given."""
    store = ViewStore(CompetencyEvidence(), generation)
    observations, voids = store.table("observations"), store.table("voids")
    found: dict[str, tuple[list[Observation], set[str]]] = {learner: ([], set()) for learner in learners}
    if not learners:
        return found
    # Whether each observation is voided, in the same query: a list of the observations' ids as parameters
    # cost ~1 ms per 250 to render and send, and fails past PostgreSQL's 32,767 (a section of ~130 learners).
    rows: Iterable[Sequence[Any]]
    if conn.dialect.name == "postgresql":
        # On the driver connection, the learners as one array parameter: a grid reads ~8,000 rows, and
        # SQLAlchemy's per-row processing and its rendering of an expanding IN were a third of the load.
        raw_conn = await conn.get_raw_connection()
        sql = _PG_EVIDENCE.format(observations=observations.name, voids=voids.name)
        rows = await raw_conn.driver_connection.fetch(sql, tenant, list(learners))  # type: ignore[union-attr]
    else:
        voided = sa.exists().where(
            voids.c.tenant == observations.c.tenant, voids.c.statement_id == observations.c.statement_id
        )
        c = observations.c
        rows = await conn.execute(
            sa.select(
                c.learner, c.statement_id, c.activity, c.competencies, c.norm, c.success, c.timestamp_us,
                c.stored_us, c.source, c.authority, c.raw, voided.label("voided"), c.last_position,
            ).where(c.tenant == tenant, c.learner.in_(list(learners)))
        )  # fmt: skip
    loads = orjson.loads
    new = tuple.__new__  # Observation(...) without the named tuple's Python-level __new__
    # The same few values recur across thousands of rows (norms to two places, the competency lists):
    # each parsed once per call.
    decimals: dict[str, Decimal] = {}
    named_lists: dict[str, tuple[str, ...]] = {}
    newest: dict[str, int] = {}
    # Plain tuples: a grid reads thousands of rows, and building a mapping per row was a quarter of its time.
    for (
        learner,
        statement_id,
        activity,
        named,
        norm,
        success,
        timestamp_us,
        stored_us,
        source,
        authority,
        raw,
        gone,
        position,
    ) in rows:
        mine = found[learner]
        competencies = named_lists.get(named)
        if competencies is None:
            # Interned: the grid cache keeps these strings as keys for thousands of learners, one copy each.
            competencies = named_lists[named] = tuple(map(sys.intern, loads(named)))
        value = decimals.get(norm)
        if value is None:
            value = decimals[norm] = Decimal(norm)
        mine[0].append(
            new(Observation, (statement_id, activity, competencies, value, success, int(timestamp_us),
                              int(stored_us), source or "statement", authority, None if raw is None else Decimal(raw)))
        )  # fmt: skip
        if gone:
            mine[1].add(statement_id)
        if position > newest.get(learner, -1):
            newest[learner] = position
    if stamps is not None:
        for learner, last in newest.items():
            stamps[learner] = (len(found[learner][0]), int(last), len(found[learner][1]))
    return found


async def void_reasons(conn: AsyncConnection, tenant: str, statement_ids: Sequence[str]) -> dict[str, str]:
    """Voided statement (or rating) -> what voided it."""
    generation = await _generation(conn, CompetencyEvidence.name, required=True)
    assert generation is not None
    voids = ViewStore(CompetencyEvidence(), generation).table("voids")
    if not statement_ids:
        return {}
    rows = await conn.execute(
        sa.select(voids.c.statement_id, voids.c.voided_by).where(
            voids.c.tenant == tenant, voids.c.statement_id.in_(list(statement_ids))
        )
    )
    return {statement_id: voided_by for statement_id, voided_by in rows}


async def reference(
    conn: AsyncConnection,
    tenant: str,
    *,
    competencies: Iterable[str] = (),
    activities: Iterable[str] = (),
    frameworks: Iterable[str] = (),
    override: MasteryPolicy | None = None,
    generations: Mapping[str, Generation | None] | None = None,
) -> Reference:
    """The reference data for these competencies and activities, and every competency of these frameworks
    and of the competencies' own frameworks (which rollups need)."""
    found = Reference(override=override)
    frameworks_generation = await _generation(conn, Frameworks.name, required=False, known=generations)
    reference_generation = await _generation(conn, CompetencyReference.name, required=False, known=generations)
    wanted_activities = sorted(set(activities))
    if reference_generation is not None:
        store = ViewStore(CompetencyReference(), reference_generation)
        aligned, configured, rules = store.table("alignments"), store.table("policies"), store.table("rollup_rules")
        # A grid names ~2,000 activities: one array parameter on PostgreSQL (rendering them as an expanding
        # IN through SQLAlchemy cost ~5 ms).
        for activity, competency, weight in await select_in(
            conn, aligned, ("activity", "competency", "weight"), {"tenant": tenant}, "activity", wanted_activities
        ):
            found.alignments.setdefault(activity, {})[competency] = Decimal(weight)
        rows = await conn.execute(sa.select(configured).where(configured.c.tenant == tenant))
        found.policies = policies_from_rows({str(k): v for k, v in r.items()} for r in rows.mappings())
        rows = await conn.execute(sa.select(rules).where(rules.c.tenant == tenant))
        found.rollup_rules = rollup_rules_from_rows({str(k): v for k, v in r.items()} for r in rows.mappings())
    if frameworks_generation is None:
        return found
    store = ViewStore(Frameworks(), frameworks_generation)
    table, framework_table = store.table("competencies"), store.table("frameworks")
    named = sorted(set(competencies) | {c for a in found.alignments.values() for c in a})
    owning: set[str] = set(frameworks)
    if named:
        rows = await conn.execute(
            sa.select(table.c.framework).where(table.c.tenant == tenant, table.c.uri.in_(named)).distinct()
        )
        owning |= {framework for (framework,) in rows}
    if owning:
        rows = await conn.execute(
            sa.select(table).where(table.c.tenant == tenant, table.c.framework.in_(sorted(owning)))
        )
        for r in rows.mappings():
            found.competencies[r["uri"]] = Competency(
                r["uri"], r["framework"], r["code"], r["statement"], r["parent"], r["sequence"]
            )
        rows = await conn.execute(
            sa.select(framework_table).where(
                framework_table.c.tenant == tenant, framework_table.c.framework.in_(sorted(owning))
            )
        )
        for r in rows.mappings():
            scale = tuple(
                Level(Decimal(level["points"]), level["label"], level["mastery"]) for level in orjson.loads(r["scale"])
            )
            found.frameworks[r["framework"]] = FrameworkInfo(r["framework"], r["uri"], r["title"], scale)
    return found


async def framework_exists(conn: AsyncConnection, tenant: str, framework: str) -> bool:
    generation = await _generation(conn, Frameworks.name, required=False)
    if generation is None:
        return False
    table = ViewStore(Frameworks(), generation).table("frameworks")
    row = await conn.execute(
        sa.select(table.c.framework).where(table.c.tenant == tenant, table.c.framework == framework)
    )
    return row.first() is not None


async def section(
    conn: AsyncConnection,
    tenant: str,
    section_id: str,
    *,
    generations: Mapping[str, Generation | None] | None = None,
) -> dict[str, Any] | None:
    generation = await _generation(conn, CompetencyReference.name, required=False, known=generations)
    if generation is None:
        return None
    table = ViewStore(CompetencyReference(), generation).table("sections")
    row = (
        (await conn.execute(sa.select(table).where(table.c.tenant == tenant, table.c.section == section_id)))
        .mappings()
        .first()
    )
    if row is None:
        return None
    return {"section": row["section"], "title": row["title"], "learners": orjson.loads(row["learners"]),
            "changed_us": row["changed_us"]}  # fmt: skip


def score(
    evidence: Mapping[str, tuple[list[Observation], set[str]]],
    ref: Reference,
    *,
    now_us: int | None,
    stall: StallRule = DEFAULT_STALL,
    trend: bool = True,
) -> dict[str, dict[str, Progress]]:
    """Each learner's progress under the reference data."""
    found = {}
    rules: dict[str, tuple[Sequence[Level], MasteryPolicy]] = {}  # each competency's, once for all learners
    for learner, (observations, voided) in evidence.items():
        found[learner] = progress(
            observations, voided, MasteryPolicy(), alignments=ref.alignments, policy_of=ref.policy_of,
            scale_of=ref.scale_of, now_us=now_us, stall=stall, trend=trend, rules=rules,
        )  # fmt: skip
    return found


def learner_rollups(found: Mapping[str, Progress], ref: Reference, frameworks: Iterable[str]) -> list[Any]:
    computed = rollups(found, ref.children(frameworks), policy_of=ref.rollup_of, threshold_of=ref.threshold_of)
    return sorted(computed.values(), key=lambda r: (ref.framework_of(r.competency) or "", r.competency))


_NAMED = operator.attrgetter("competencies")
_ACTIVITY = operator.attrgetter("activity")


@dataclass
class Scored:
    """Learners' evidence (up to a moment), the reference data for it, and their progress under it."""

    evidence: dict[str, tuple[list[Observation], set[str]]]
    reference: Reference
    progress: dict[str, dict[str, Progress]]


async def scored(
    conn: AsyncConnection,
    tenant: str,
    learners: Sequence[str],
    *,
    now_us: int | None,
    competencies: Iterable[str] = (),
    frameworks: Iterable[str] = (),
    override: MasteryPolicy | None = None,
    until_us: int | None = None,
    stall: StallRule = DEFAULT_STALL,
    trend: bool = True,
    compute: bool = True,
) -> Scored:
    """Load and score these learners: their evidence (only up to ``until_us`` when given), the reference data
    for the competencies and activities it names plus ``competencies`` and ``frameworks``."""
    evidence = await learner_evidence(conn, tenant, learners)
    if until_us is not None:
        evidence = {x: ([o for o in obs if o.timestamp_us <= until_us], gone) for x, (obs, gone) in evidence.items()}
    observations = [o for obs, _ in evidence.values() for o in obs]
    # The distinct lists first: a grid's ~8,000 observations name a few hundred (in C, not a nested loop).
    named = set(chain.from_iterable(set(map(_NAMED, observations)))) | set(competencies)
    activities = set(map(_ACTIVITY, observations)) - {None, ""}
    ref = await reference(conn, tenant, competencies=named, activities=activities,
                          frameworks=frameworks, override=override)  # fmt: skip
    # compute=False: the caller scores them itself (off the event loop, say); progress is left empty.
    return Scored(evidence, ref, score(evidence, ref, now_us=now_us, stall=stall, trend=trend) if compute else {})


# --- a section grid's cells, cached per learner -----------------------------------------------------------

#: (where, learner) -> (the key the cells were computed under, the cells by competency, the competencies her
#: observations name or her activities are aligned to); least recently read first out (~15 KB per learner of
#: 50 competencies).
_GRID_CACHE: OrderedDict[tuple[Any, str], tuple[Any, dict[str, GridCell], frozenset[str]]] = OrderedDict()
GRID_CACHE_LEARNERS = 2000
#: The reference data of recent grids (what it was loaded for and the stamp of its tables) -> the data; not
#: to be changed by its readers.
_REFERENCES: OrderedDict[Any, Reference] = OrderedDict()
_REFERENCES_KEPT = 64
_DAY_US = 86_400_000_000


@dataclass
class Grid:
    """A grid's learners' cells (competency -> cell; shared with the cache: not to be changed) and the
    reference data for them, as ``scored`` would load it but with the alignments only of the learners scored
    by this call; ``computed``: how many it scored."""

    reference: Reference
    cells: dict[str, dict[str, GridCell]]
    computed: int


async def grid_scored(
    conn: AsyncConnection,
    tenant: str,
    learners: Sequence[str],
    *,
    now_us: int,
    frameworks: Iterable[str] = (),
    override: MasteryPolicy | None = None,
    stall: StallRule = DEFAULT_STALL,
    cache_learners: int = GRID_CACHE_LEARNERS,
    generations: Mapping[str, Generation | None] | None = None,
) -> Grid:
    """The grid cells of these learners (``scored(..., trend=False)``'s progress, as cells), each learner's
    taken from the cache when nothing her cells depend on has changed since they were computed.

    A learner's cells depend on her observations, the voids of them, the reference data (alignments of her
    activities, policies, her competencies' frameworks and scales), the override, the stall rule and the day
    (the idle rule counts school days to today). The key: the evidence view's generation, the count and
    newest position of her observation rows (all written in her stream's order) and the count of voids
    of them (void rows are never deleted), the count and newest position of each reference table that
    scoring reads, the override, the stall rule and the day. Keys are read before the rows they stand
    for (or with them): a change in between leaves cells newer than their key, which the next read
    recomputes.
    ``cache_learners``: the most learners the cache holds (0: no cache). The reference data is kept too,
    keyed by the same stamp of its tables and what it was loaded for. ``generations``: the active
    generations (``active_generations``), when the caller has them.
    """
    cache = cache_learners > 0
    where = (conn.engine.url, tenant)  # a process may read more than one database (tests do)
    known = generations if generations is not None else await active_generations(conn)
    generation = await _generation(conn, CompetencyEvidence.name, required=True, known=known)
    assert generation is not None
    wanted = list(dict.fromkeys(learners))
    hits: dict[str, tuple[Any, dict[str, GridCell], frozenset[str]]] = {}
    common: Any = None
    reference_stamp: Any = None
    stamps: dict[str, tuple[int, int, int]] = {}
    if cache and wanted:
        reference_stamp = await _reference_stamp(conn, tenant, known)
        common = (generation.name, generation.generation, reference_stamp[0], override, stall, now_us // _DAY_US)
        # Only learners with cells cached need their stamps first; the others' come with their rows.
        cached = [learner for learner in wanted if (where, learner) in _GRID_CACHE]
        if cached:
            stamps = await _evidence_stamps(conn, generation, tenant, cached)
        for learner in cached:
            entry = _GRID_CACHE.get((where, learner))
            if entry is not None and entry[0] == (common, stamps.get(learner)):
                hits[learner] = entry
                _GRID_CACHE.move_to_end((where, learner))  # least recently read first out
    misses = [learner for learner in wanted if learner not in hits]
    evidence = await _evidence(conn, generation, tenant, misses, stamps) if misses else {}
    named_by: dict[str, frozenset[str]] = {}
    activities_by: dict[str, frozenset[str]] = {}
    for learner, (observations, _) in evidence.items():
        named_by[learner] = frozenset(chain.from_iterable(set(map(_NAMED, observations))))
        activities_by[learner] = frozenset(set(map(_ACTIVITY, observations)) - {None, ""})
    for learner, entry in hits.items():
        named_by[learner] = entry[2]  # what her observations name and what her activities are aligned to
    # What scored() loads for all of them (the grid's columns and labels read it), but the alignments only of
    # the learners scored here: a cached learner's aligned competencies come from her entry.
    wanted_competencies = frozenset().union(*named_by.values())
    wanted_activities = frozenset().union(*activities_by.values())
    wanted_frameworks = frozenset(frameworks)
    reference_key = (where, common, wanted_competencies, wanted_activities, wanted_frameworks)
    ref = _REFERENCES.get(reference_key) if cache else None
    loaded = ref is None
    if ref is None:
        ref = await reference(conn, tenant, competencies=wanted_competencies, activities=wanted_activities,
                              frameworks=wanted_frameworks, override=override, generations=known)  # fmt: skip
    else:
        _REFERENCES.move_to_end(reference_key)
    rules: dict[str, tuple[Sequence[Level], MasteryPolicy]] = {}  # each competency's, once for all learners
    computed = {
        learner: grid_cells(observations, voided, MasteryPolicy(), alignments=ref.alignments, policy_of=ref.policy_of,
                            scale_of=ref.scale_of, now_us=now_us, stall=stall, rules=rules)
        for learner, (observations, voided) in evidence.items()
    }  # fmt: skip
    # Kept only if no fold of the reference views committed meanwhile (their checkpoints move in the views'
    # transactions): the reference data read is then exactly the state its stamp stands for. Without this,
    # an alignment defined and removed again while a grid was computed would leave its stamp as it was.
    storable = cache and (bool(misses) or loaded) and await _reference_stamp(conn, tenant, known) == reference_stamp
    if storable and loaded:
        _REFERENCES[reference_key] = ref
        while len(_REFERENCES) > _REFERENCES_KEPT:
            _REFERENCES.popitem(last=False)
    cells: dict[str, dict[str, GridCell]] = {}
    for learner in wanted:
        if learner in hits:
            cells[learner] = hits[learner][1]
            continue
        found = computed[learner]
        mine = cells[learner] = {sys.intern(c): cell for c, cell in found.items()}
        # Only when every competency is one of the reference data's own: a competency outside the frameworks
        # loaded (a framework's uri named as a competency, say) is judged by which frameworks this grid's
        # other learners brought in, which no key of hers covers.
        if storable and all(c in ref.competencies for c in found):
            aligned = {c for a in activities_by[learner] for c in ref.alignments.get(a, ())}
            _GRID_CACHE[(where, learner)] = ((common, stamps.get(learner)), mine, named_by[learner] | aligned)
            _GRID_CACHE.move_to_end((where, learner))
            while len(_GRID_CACHE) > cache_learners:
                _GRID_CACHE.popitem(last=False)
    return Grid(ref, cells, len(misses))


_PG_EVIDENCE_STAMPS = """
SELECT o.learner, count(*), max(o.last_position), count(v.statement_id)
  FROM "{observations}" o LEFT JOIN "{voids}" v ON v.tenant = o.tenant AND v.statement_id = o.statement_id
 WHERE o.tenant = $1 AND o.learner = ANY($2::text[])
 GROUP BY o.learner
"""


async def _evidence_stamps(
    conn: AsyncConnection, generation: Generation, tenant: str, learners: Sequence[str]
) -> dict[str, tuple[int, int, int]]:
    """learner -> (her observation rows, their newest position, the voids of them); none without rows."""
    store = ViewStore(CompetencyEvidence(), generation)
    observations, voids = store.table("observations"), store.table("voids")
    if conn.dialect.name == "postgresql":
        raw_conn = await conn.get_raw_connection()
        sql = _PG_EVIDENCE_STAMPS.format(observations=observations.name, voids=voids.name)
        rows = await raw_conn.driver_connection.fetch(sql, tenant, list(learners))  # type: ignore[union-attr]
    else:
        o, v = observations.c, voids.c
        rows = await conn.execute(
            sa.select(o.learner, sa.func.count(), sa.func.max(o.last_position), sa.func.count(v.statement_id))
            .select_from(observations.outerjoin(voids, sa.and_(v.tenant == o.tenant, v.statement_id == o.statement_id)))
            .where(o.tenant == tenant, o.learner.in_(list(learners)))
            .group_by(o.learner)
        )  # fmt: skip
    return {learner: (int(count), int(newest), int(gone)) for learner, count, newest, gone in rows}


async def _reference_stamp(
    conn: AsyncConnection, tenant: str, known: Mapping[str, Generation | None]
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(the stamp, the marks) of the reference data ``reference()`` reads, in one query.

    The stamp: per view, its generation and (rows, newest position) of each table read: alignments, policies
    and rollup rules, competencies and frameworks (not sections). Each view is unpartitioned, so rows are
    written in log order: any change, a removal included, changes (rows, newest), and a state with the same
    stamp as an earlier one is that state. The marks: the views' checkpoints, which move with every fold.
    """
    stamp: list[Any] = []
    queries = []
    for projection, tables in ((CompetencyReference(), ("alignments", "policies", "rollup_rules")),
                               (Frameworks(), ("competencies", "frameworks"))):  # fmt: skip
        generation = await _generation(conn, projection.name, required=False, known=known)
        stamp.append(None if generation is None else generation.generation)
        if generation is None:
            continue
        store = ViewStore(projection, generation)
        for name in tables:
            table = store.table(name)
            queries.append(
                sa.select(sa.literal(f"{projection.name}.{name}"), sa.func.count(), sa.func.max(table.c.last_position))
                .where(table.c.tenant == tenant)
            )  # fmt: skip
        queries.append(
            sa.select(sa.literal(f"mark:{generation.consumer}"), checkpoints.c.partition, checkpoints.c.position)
            .where(checkpoints.c.consumer == generation.consumer)
        )  # fmt: skip
    marks: list[Any] = []
    if queries:
        rows = await conn.execute(sa.union_all(*queries))
        for name, count, newest in sorted(rows, key=lambda r: (r[0], r[1])):
            (marks if name.startswith("mark:") else stamp).append((name, int(count), newest))
    return tuple(stamp), tuple(marks)


def reference_from_rows(
    tables: Mapping[str, Iterable[Mapping[str, Any]]], override: MasteryPolicy | None = None
) -> Reference:
    """The reference data from whole views' rows (table name -> rows of the ``frameworks`` and
    ``competency_reference`` views), as a replay up to a moment gives them: the audit's as-of views."""
    found = Reference(override=override)
    for r in tables.get("competencies", ()):
        found.competencies[r["uri"]] = Competency(r["uri"], r["framework"], r["code"], r["statement"], r["parent"],
                                                  r["sequence"])  # fmt: skip
    for r in tables.get("frameworks", ()):
        scale = tuple(Level(Decimal(lv["points"]), lv["label"], lv["mastery"]) for lv in orjson.loads(r["scale"]))
        found.frameworks[r["framework"]] = FrameworkInfo(r["framework"], r["uri"], r["title"], scale)
    for r in tables.get("alignments", ()):
        found.alignments.setdefault(r["activity"], {})[r["competency"]] = Decimal(r["weight"])
    found.policies = policies_from_rows(tables.get("policies", ()))
    found.rollup_rules = rollup_rules_from_rows(tables.get("rollup_rules", ()))
    return found
