"""``proficio relay``, ``project``, ``projectors``, ``deadletters`` and the app ``serve`` runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
import orjson
from fastapi import FastAPI

from proficio_events import CheckpointSettings, EventLog, run_checkpointer


def stream_settings(data_dir: Path | None) -> Any:
    from proficio_projector import StreamSettings

    settings = StreamSettings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings


def create_full_app(settings: Any = None) -> FastAPI:
    """The xAPI service with the views API; on the SQL log (no Kafka configured) it runs the projectors too."""
    from proficio_ingest import IngestSettings, create_app, directory_learner_id
    from proficio_projector import StreamSettings, default_projections, install

    settings = settings or IngestSettings()
    stream = StreamSettings().model_copy(update={"data_dir": settings.data_dir, "database_url": settings.database_url})
    app = create_app(settings)
    # Folding a batch holds the event loop the requests share: small batches keep request latency even.
    runner = stream.runner(batch_size=500)
    install(
        app, default_projections(), stream, runner,
        run_projectors=stream.run_projectors and not stream.kafka_bootstrap, learner_id=directory_learner_id,
    )  # fmt: skip
    install_checkpointer(app, CheckpointSettings())
    return app


def install_checkpointer(app: FastAPI, settings: CheckpointSettings) -> None:
    """With a signing key and an interval, checkpoint every tenant whose chain grew, in the app's lifespan."""
    signer = settings.signer()
    if signer is None or settings.checkpoint_interval_s <= 0:
        return
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with inner(app_) as state:
            stop = asyncio.Event()
            task = asyncio.create_task(run_checkpointer(app_.state.log, signer, settings.checkpoint_interval_s, stop))
            try:
                yield state
            finally:
                stop.set()
                await asyncio.gather(task, return_exceptions=True)

    app.router.lifespan_context = lifespan


async def open_store(data_dir: Path | None) -> EventLog:
    from proficio_ingest import IngestSettings, open_ingest_store
    from proficio_projector import migrate_runtime

    settings = IngestSettings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    log = await open_ingest_store(settings)
    await migrate_runtime(log)
    return log


def stop_on_signals(*, parent_pipe: bool = False) -> asyncio.Event:
    """An event set by SIGINT or SIGTERM: workers finish their batch, release their leases and exit.

    ``parent_pipe``: also when standard input (a pipe from the parent process) closes.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if parent_pipe:
        fd = sys.stdin.fileno()

        def readable() -> None:
            try:
                closed = not os.read(fd, 4096)
            except OSError:
                closed = True
            if closed:
                loop.remove_reader(fd)
                stop.set()

        loop.add_reader(fd, readable)
    return stop


def need_kafka(settings: Any) -> str:
    if not settings.kafka_bootstrap:
        raise click.ClickException("set PROFICIO_KAFKA_BOOTSTRAP (host:port of a Kafka broker)")
    bootstrap: str = settings.kafka_bootstrap
    return bootstrap


async def run_relay(data_dir: Path | None, batch_size: int) -> int:
    from proficio_projector import Relay

    settings = stream_settings(data_dir)
    bootstrap = need_kafka(settings)
    async with await open_store(data_dir) as log:
        stop = stop_on_signals()
        relay = Relay(
            log, bootstrap, settings.kafka_topic, partitions=settings.kafka_partitions,
            replication=settings.kafka_replication, batch_size=batch_size, settings=settings.runner(),
        )  # fmt: skip
        click.echo(f"relay: log -> Kafka {bootstrap} topic {settings.kafka_topic}", err=True)
        await relay.run(stop)
    return 0


#: Where ``proficio project`` runs the equity refresher: ``apart``, in a child process of its own (the default
#: with every projection: the folds keep this process's core); ``here``, in this process; ``only``, nothing
#: else (a process or machine of its own); ``off``.
EQUITY_MODES = ("apart", "here", "only", "off")


async def run_projectors(
    data_dir: Path | None, source: str, names: tuple[str, ...], equity: str | None = None, *, parent_pipe: bool = False
) -> int:
    from proficio_projector import KafkaProjector, default_projections, projection_named, sql_projectors
    from proficio_projector.equity import EquityRefresher

    settings = stream_settings(data_dir)
    projections = default_projections()
    if names:
        try:
            projections = [projection_named(projections, n) for n in names]
        except KeyError as exc:
            raise click.ClickException(str(exc.args[0])) from exc
    # The equity views are refreshed from the views the projectors keep: by default beside all of them.
    equity = equity or ("off" if names else "apart")
    if equity == "only":
        projections = []
        if settings.equity_nice > 0:
            os.nice(settings.equity_nice)
    chosen = source if source != "auto" else ("kafka" if settings.kafka_bootstrap else "sql")
    async with await open_store(data_dir) as log:
        stop = stop_on_signals(parent_pipe=parent_pipe)
        runners: list[Any]
        if chosen == "kafka":
            bootstrap = need_kafka(settings)
            runners = [
                KafkaProjector(
                    log,
                    p,
                    bootstrap,
                    settings.kafka_topic,
                    settings.runner(),
                    session_timeout_ms=settings.kafka_session_timeout_ms,
                )
                for p in projections
            ]
        else:
            runners = list(sql_projectors(log, projections, settings.runner()))
        topic = settings.kafka_topic if chosen == "kafka" else None
        if equity in ("here", "only"):
            runners.append(EquityRefresher(log, topic=topic))
        elif equity == "apart":
            runners.append(RefresherProcess(data_dir, chosen))
        what = ", ".join(p.name for p in projections) or "none"
        click.echo(f"projectors ({chosen}): {what}; equity refresher: {equity}", err=True)
        await asyncio.gather(*(r.run(stop) for r in runners))
    return 0


class RefresherProcess:
    """The equity refresher in a child process (``proficio project --equity only``), started again if it dies.

    A refresher round is CPU-bound for seconds at a time (each chunk's facts, the cells); in the folds'
    process it held their event loop and took their core. Apart, the folds keep theirs.
    """

    def __init__(self, data_dir: Path | None, source: str, *, restart_delay: float = 1.0) -> None:
        self.args = [sys.executable, "-m", "proficio_cli", "project", "--equity", "only", "--source", source,
                     "--parent-pipe"]  # fmt: skip
        if data_dir is not None:
            self.args += ["--data-dir", str(data_dir)]
        self.restart_delay = restart_delay
        self.process: subprocess.Popen[bytes] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                if self.process is None or self.process.poll() is not None:
                    if self.process is not None:
                        click.echo(f"equity refresher process exited ({self.process.returncode}): restarting", err=True)
                    # Its stdin is a pipe from this process: it stops when the pipe closes, also if this
                    # process is killed (SIGKILL included) and cannot stop it.
                    self.process = subprocess.Popen(self.args, stdin=subprocess.PIPE)  # noqa: ASYNC220 (returns at once)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.restart_delay)
        finally:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                try:
                    await asyncio.to_thread(self.process.wait, 30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    await asyncio.to_thread(self.process.wait)


async def show_status(data_dir: Path | None, as_json: bool) -> int:
    from proficio_projector import relay_consumer, status

    settings = stream_settings(data_dir)
    async with await open_store(data_dir) as log:
        found = await status(log, topic=settings.kafka_topic)
        relay = await log.get_checkpoint(relay_consumer(settings.kafka_topic))
        head = await log.max_position()
    if as_json:
        click.echo(
            orjson.dumps(
                {
                    "log_position": head,
                    "relay_checkpoint": relay,
                    "projectors": [s.__dict__ for s in found],
                },
                option=orjson.OPT_NON_STR_KEYS,
            ).decode()
        )
        return 0
    click.echo(f"log at {head}; relay at {relay} ({head - relay} behind)")
    for s in found:
        click.echo(
            f"{s.name} generation {s.generation} (code v{s.code_version}, {s.status}): watermark {s.watermark},"
            f" lag {s.lag}, dead letters {s.dead_letters}"
        )
    return 0


async def list_dead_letters(data_dir: Path | None, name: str | None, include_resolved: bool, as_json: bool) -> int:
    import sqlalchemy as sa

    from proficio_projector._schema import dead_letters

    async with await open_store(data_dir) as log:
        query = sa.select(dead_letters).order_by(dead_letters.c.consumer, dead_letters.c.position)
        if name is not None:
            query = query.where(dead_letters.c.consumer.like(f"projector:{name}@%"))
        if not include_resolved:
            query = query.where(dead_letters.c.resolved_us.is_(None))
        async with log.engine.connect() as conn:
            rows = [{str(k): v for k, v in r.items()} for r in (await conn.execute(query)).mappings()]
    if as_json:
        click.echo(orjson.dumps(rows).decode())
        return 0
    if not rows:
        click.echo("no dead letters")
    for r in rows:
        state = "resolved" if r["resolved_us"] else "open"
        click.echo(
            f"{r['consumer']} position {r['position']} ({r['event_type']}, tenant {r['tenant']}) {state},"
            f" {r['attempts']} attempt(s): {r['error']}"
        )
    return 0


async def replay(data_dir: Path | None, name: str, position: int | None) -> int:
    from proficio_projector import default_projections, projection_named, replay_dead_letters

    try:
        projection = projection_named(default_projections(), name)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from exc
    async with await open_store(data_dir) as log:
        resolved, failing = await replay_dead_letters(log, projection, position=position)
    click.echo(f"{name}: {len(resolved)} dead letter(s) resolved, {len(failing)} still failing")
    for p in failing:
        click.echo(f"  still failing: position {p}")
    return 0 if not failing else 1


async def rebuild_projector(data_dir: Path | None, name: str) -> int:
    from proficio_projector import build, default_projections, projection_named

    projection = projection_named(default_projections(), name)
    async with await open_store(data_dir) as log:
        generation = await build(log, projection)
    click.echo(f"{name}: generation {generation.generation} built from the log and swapped in")
    return 0


def projector_names() -> list[str]:
    from proficio_projector import default_projections

    return [p.name for p in default_projections()]


async def import_framework_from(data_dir: Path | None, source: str, tenant: str, as_json: bool) -> int:
    from proficio_projector.competency import FrameworkError, import_framework, read_source

    try:
        raw = read_source(source)
        async with await open_store(data_dir) as log:
            result = await import_framework(log, tenant, raw, source=source)
    except FrameworkError as exc:
        raise click.ClickException(f"{source}: {exc}; nothing was imported") from exc
    if as_json:
        click.echo(orjson.dumps(result.__dict__).decode())
    elif result.created:
        click.echo(
            f"{result.title}: version {result.version} imported for {tenant} ({result.competencies} competencies,"
            f" {result.removed} removed since the previous version)"
        )
    else:
        click.echo(f"{result.title}: unchanged since version {result.version}; nothing imported")
    return 0


async def list_frameworks(data_dir: Path | None, tenant: str | None, as_json: bool) -> int:
    import sqlalchemy as sa

    from proficio_projector import ViewStore, active_generation
    from proficio_projector.competency import Frameworks

    projection = Frameworks()
    async with await open_store(data_dir) as log, log.engine.connect() as conn:
        generation = await active_generation(conn, projection.name)
        rows: list[dict[str, Any]] = []
        if generation is not None:
            table = ViewStore(projection, generation).table("frameworks")
            query = sa.select(table).order_by(table.c.tenant, table.c.title)
            if tenant is not None:
                query = query.where(table.c.tenant == tenant)
            rows = [{str(k): v for k, v in r.items()} for r in (await conn.execute(query)).mappings()]
    if as_json:
        click.echo(orjson.dumps(rows).decode())
        return 0
    if not rows:
        click.echo("no frameworks in the frameworks view (it is built by proficio serve or proficio project)")
    for r in rows:
        click.echo(f"{r['tenant']}  {r['title']}  version {r['version']}  {r['competencies']} competencies  {r['uri']}")
    return 0


async def record_reference(data_dir: Path | None, what: str, tenant: str, *args: Any) -> int:
    """An alignment, its removal, a policy or rollup rule, or a section roster, as an event in the tenant's log."""
    from proficio_projector.competency import (
        ReferenceDataError,
        define_alignment,
        remove_alignment,
        set_policy,
        set_rollup_rule,
        set_section,
    )

    async with await open_store(data_dir) as log:
        try:
            if what == "align":
                result = await define_alignment(log, tenant, args[0], args[1], weight=args[2], source="cli")
            elif what == "unalign":
                result = await remove_alignment(log, tenant, args[0], args[1])
            elif what == "rollup":
                result = await set_rollup_rule(log, tenant, args[0], args[1], args[2])
            elif what == "section":
                result = await set_section(log, tenant, args[0], args[1], args[2])
            else:
                result = await set_policy(log, tenant, args[0], args[1], args[2])
        except ReferenceDataError as exc:
            raise click.ClickException(f"{exc}; nothing was recorded") from exc
    event = result.events[0]
    click.echo(f"{event.event_type} recorded for {tenant} at log position {event.position}")
    return 0


async def record_pacing(data_dir: Path | None, kind: str, file: Path, tenant: str) -> int:
    """A calendar, plan, pacing policy or graduation menu from a JSON file, as an event."""
    from proficio_projector.pacing import PacingDataError, set_calendar, set_menu, set_pacing_policy, set_plan

    try:
        data = orjson.loads(await asyncio.to_thread(file.read_bytes))
    except orjson.JSONDecodeError as exc:
        raise click.ClickException(f"{file} is not JSON: {exc}; nothing was recorded") from exc
    writers = {"calendar": set_calendar, "plan": set_plan, "policy": set_pacing_policy, "menu": set_menu}
    async with await open_store(data_dir) as log:
        try:
            result = await writers[kind](log, tenant, data)
        except PacingDataError as exc:
            raise click.ClickException(f"{exc}; nothing was recorded") from exc
    event = result.events[0]
    click.echo(f"{event.event_type} recorded for {tenant} at log position {event.position}")
    return 0


async def import_roster_from(
    data_dir: Path | None, path: Path, tenant: str, actor: str, home_page: str | None, effective: date, as_json: bool
) -> int:
    from proficio_events import ConcurrencyError
    from proficio_ingest import enroll_learner_ids
    from proficio_projector.roster import ActorMapping, ActorSource, RosterError, import_roster, read_package

    try:
        mapping = ActorMapping(ActorSource(actor), home_page)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        package = read_package(path)
        async with await open_store(data_dir) as log:
            result = await import_roster(log, tenant, package, learner_ids=enroll_learner_ids, actor=mapping,
                                         effective=effective)  # fmt: skip
    except RosterError as exc:
        listed = "\n".join(f"  {problem}" for problem in exc.problems)
        raise click.ClickException(f"{path}: {len(exc.problems)} problem(s); nothing imported:\n{listed}") from exc
    except ConcurrencyError as exc:
        raise click.ClickException(
            f"{path}: the roster changed while it was being imported (another import?); nothing imported: {exc}"
        ) from exc
    if as_json:
        click.echo(orjson.dumps({**result.__dict__, "changed": result.changed}).decode())
        return 0
    click.echo(
        f"{path}: {result.orgs} orgs, {result.classes} classes, {result.learners} learners, {result.enrollments}"
        f" enrollments for tenant {tenant}, groups effective {result.effective}"
    )
    if not result.changed:
        click.echo("unchanged since the previous import; nothing appended")
        return 0
    total = sum(result.appended.values())
    click.echo(f"appended {total} events at log positions {result.first_position}-{result.last_position}:")
    for event_type, count in result.appended.items():
        click.echo(f"  {count:6d}  {event_type}")
    return 0


async def refresh_equity(data_dir: Path | None, as_of: date | None, as_json: bool) -> int:
    """One refresh of every tenant's equity facts and cells (``proficio project`` and ``serve`` keep doing it)."""
    from proficio_projector import migrate_runtime
    from proficio_projector.equity import EquityRefresher

    async with await open_store(data_dir) as log:
        await migrate_runtime(log)
        reports = await EquityRefresher(log).refresh(as_of)
    if as_json:
        click.echo(orjson.dumps([{**r.__dict__, "as_of": r.as_of.isoformat()} for r in reports]).decode())
        return 0
    for r in reports:
        click.echo(f"{r.tenant}: {r.learners_refreshed} of {r.learners_total} learners refreshed for {r.as_of}, "
                   f"{r.cells} cells, {r.seconds:.2f} s")  # fmt: skip
    if not reports:
        click.echo("nothing changed since the last refresh")
    return 0


def _moment_us(value: str) -> int:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise click.BadParameter(f"{value!r} needs a time zone (for example 2026-11-20T09:00:00Z)")
    return int(moment.timestamp() * 1_000_000)


async def audit_learner_views(
    data_dir: Path | None, tenant: str, learner: str, at: str | None, between: tuple[str, str] | None
) -> int:
    """A learner's history, views as of a moment, or the diff of two moments, printed as JSON."""
    from proficio_ingest import find_learner_id
    from proficio_projector import migrate_runtime
    from proficio_projector.audit import diff, learner_events, summary, views_as_of

    agent: Any = None
    if learner.startswith("{"):
        try:
            agent = orjson.loads(learner)
        except orjson.JSONDecodeError as exc:
            raise click.BadParameter(f"not an xAPI agent: {exc}") from None
    async with await open_store(data_dir) as log:
        if agent is not None:
            # A lookup in the learner directory: an agent it does not know (never seen, or erased) is no learner.
            try:
                found = await find_learner_id(log, tenant, agent)
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                raise click.BadParameter(f"not an xAPI agent: {exc}") from None
            if found is None:
                raise click.ClickException("no learner is known by this agent (never seen, or erased)")
            learner = found
        await migrate_runtime(log)
        events = await learner_events(log, tenant, learner)
        if between:
            first, second = (_moment_us(v) for v in between)
            result = diff(await views_as_of(log, tenant, learner, first, events=events),
                          await views_as_of(log, tenant, learner, second, events=events))  # fmt: skip
        elif at:
            result = (await views_as_of(log, tenant, learner, _moment_us(at), events=events)).as_dict()
        else:
            from proficio_events import read_keys

            keys = await read_keys(log.engine, tenant, [e.key_id for e in events])
            result = {"learner": learner, "events": [summary(e, keys) for e in events]}
    click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2, default=str).decode())
    return 0
