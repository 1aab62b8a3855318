"""``proficio``: run the service and look after the log from the command line."""

from __future__ import annotations

import asyncio
import datetime
import functools
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from proficio_events import CheckpointSettings, EventStoreError, SigningKeyError, StoreSettings, open_event_log

F = TypeVar("F", bound=Callable[..., Any])


def store_options(command: F) -> F:
    """``--data-dir`` on every command that touches the store (``PROFICIO_DATABASE_URL`` wins)."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Directory of the embedded SQLite log (default: $PROFICIO_DATA_DIR or ./data).",
    )(command)


def _store(data_dir: Path | None) -> StoreSettings:
    settings = StoreSettings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings


def _run(coroutine: Coroutine[Any, Any, int]) -> None:
    try:
        code = asyncio.run(coroutine)
    except EventStoreError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


def _async(function: Callable[..., Coroutine[Any, Any, int]]) -> Callable[..., None]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        _run(function(*args, **kwargs))

    return wrapper


@click.group()
@click.version_option(package_name="proficio")
def main() -> None:
    """Proficio: an event-sourced learning-record store."""


@main.command()
@store_options
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8080).")
@click.option("--workers", type=int, default=1, show_default=True, help="Server processes sharing the port.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="info logs every request; warning does not.",
)
def serve(data_dir: Path | None, host: str | None, port: int | None, workers: int, log_level: str) -> None:
    """Run the xAPI service on the embedded log, or on PostgreSQL when PROFICIO_DATABASE_URL is set."""
    import uvicorn

    from proficio_ingest import IngestSettings

    from ._stream import create_full_app

    updates: dict[str, Any] = {}
    if data_dir is not None:
        updates["data_dir"] = data_dir
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    settings = IngestSettings().model_copy(update=updates)
    checkpoints = CheckpointSettings()
    try:  # a bad signing key stops the start here, with its reason, not in every worker
        signer = checkpoints.signer()
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Proficio: log at {_describe(settings)}; xAPI at http://{settings.host}:{settings.port}/xapi/")
    if signer is not None and checkpoints.checkpoint_interval_s > 0:
        click.echo(f"checkpoints: every {checkpoints.checkpoint_interval_s:g} s, signed with key {signer.key_id}")
    if workers > 1:
        # Worker processes build their own app from the environment.
        os.environ["PROFICIO_DATA_DIR"] = str(settings.data_dir)
        uvicorn.run(
            "proficio_cli._stream:create_full_app", factory=True, host=settings.host, port=settings.port,
            workers=workers, log_level=log_level,
        )  # fmt: skip
        return
    uvicorn.run(create_full_app(settings), host=settings.host, port=settings.port, log_level=log_level)


def _describe(settings: StoreSettings) -> str:
    if settings.database_url:
        from sqlalchemy.engine import make_url

        return make_url(settings.database_url).render_as_string(hide_password=True)
    return str(settings.data_dir.resolve())


@main.group()
def log() -> None:
    """Inspect the event log."""


@log.command("status")
@store_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@_async
async def log_status(data_dir: Path | None, as_json: bool) -> int:
    """Show where the log is and how far it reaches."""
    settings = _store(data_dir)
    async with await open_event_log(settings.log_url()) as event_log:
        head = await event_log.max_position()
    info = {"log": _describe(settings), "position": head}
    click.echo(orjson.dumps(info).decode() if as_json else f"log: {info['log']}\nposition: {head}")
    return 0


@main.group()
def credentials() -> None:
    """Client credentials for the xAPI service (HTTP Basic key and secret, bound to a tenant)."""


def _ingest_settings(data_dir: Path | None) -> Any:
    from proficio_ingest import IngestSettings

    settings = IngestSettings()
    return settings.model_copy(update={"data_dir": data_dir}) if data_dir is not None else settings


@credentials.command("create")
@store_options
@click.option("--tenant", default="default", show_default=True, help="The tenant (district) the credential writes to.")
@click.option("--name", default="", help="A name for the client, shown as the statements' authority.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    default=("statements/write", "statements/read"),
    show_default=True,
    help="An xAPI scope; repeat for several (all, all/read, statements/write, statements/read, "
    "statements/read/mine, define, state, profile).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the new key and secret as a JSON object.")
@_async
async def credentials_create(
    data_dir: Path | None, tenant: str, name: str, scopes: tuple[str, ...], as_json: bool
) -> int:
    """Create a credential and print its key and secret (the secret is shown only now)."""
    from proficio_ingest import BadRequest, CredentialStore, open_ingest_store

    async with await open_ingest_store(_ingest_settings(data_dir)) as log:
        try:
            created = await CredentialStore(log).create(tenant, name, list(scopes))
        except BadRequest as exc:
            raise click.UsageError(exc.message) from exc
    credential = created.credential
    if as_json:
        click.echo(
            orjson.dumps(
                {
                    "key": credential.key,
                    "secret": created.secret,
                    "tenant": credential.tenant,
                    "name": credential.name,
                    "scopes": sorted(credential.scopes),
                }
            ).decode()
        )
    else:
        click.echo(f"key:    {credential.key}\nsecret: {created.secret}\ntenant: {credential.tenant}")
        click.echo(f"scopes: {' '.join(sorted(credential.scopes))}")
    return 0


@credentials.command("list")
@store_options
@click.option("--tenant", default=None, help="Only this tenant's credentials.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@_async
async def credentials_list(data_dir: Path | None, tenant: str | None, as_json: bool) -> int:
    """List credentials (never their secrets)."""
    from proficio_ingest import CredentialStore, open_ingest_store

    async with await open_ingest_store(_ingest_settings(data_dir)) as log:
        found = await CredentialStore(log).list(tenant)
    rows: list[dict[str, Any]] = [
        {
            "key": c.key,
            "tenant": c.tenant,
            "name": c.name,
            "scopes": sorted(c.scopes),
            "revoked": c.revoked_us is not None,
        }
        for c in found
    ]
    if as_json:
        click.echo(orjson.dumps(rows).decode())
    else:
        for row in rows:
            state = "revoked" if row["revoked"] else "active"
            click.echo(f"{row['key']}  {row['tenant']}  {state}  {' '.join(row['scopes'])}  {row['name']}")
    return 0


@credentials.command("revoke")
@store_options
@click.argument("key")
@_async
async def credentials_revoke(data_dir: Path | None, key: str) -> int:
    """Revoke a credential: requests with it get 401 from then on."""
    from proficio_ingest import CredentialStore, open_ingest_store

    async with await open_ingest_store(_ingest_settings(data_dir)) as log:
        revoked = await CredentialStore(log).revoke(key)
    if not revoked:
        raise click.ClickException(f"no active credential with key {key}")
    click.echo(f"revoked {key}")
    return 0


@main.group()
def tenants() -> None:
    """Tenant settings (each a district); every change is an event in the tenant's log."""


@tenants.command("configure")
@store_options
@click.argument("tenant")
@click.option(
    "--xapi-version",
    "versions",
    multiple=True,
    required=True,
    help="An xAPI version the tenant accepts (1.0.3, 2.0.0); repeat for both. Requests in another are refused.",
)
@_async
async def tenants_configure(data_dir: Path | None, tenant: str, versions: tuple[str, ...]) -> int:
    """Set which xAPI versions a tenant accepts."""
    from proficio_ingest import BadRequest, TenantStore, open_ingest_store

    async with await open_ingest_store(_ingest_settings(data_dir)) as log:
        try:
            policy = await TenantStore(log).configure(tenant, list(versions))
        except BadRequest as exc:
            raise click.UsageError(exc.message) from exc
    click.echo(f"{tenant}: accepts xAPI {', '.join(policy.xapi_versions)}")
    return 0


@tenants.command("list")
@store_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@_async
async def tenants_list(data_dir: Path | None, as_json: bool) -> int:
    """Tenants with settings of their own (the others accept every version)."""
    from proficio_ingest import TenantStore, open_ingest_store

    async with await open_ingest_store(_ingest_settings(data_dir)) as log:
        found = await TenantStore(log).all()
    if as_json:
        click.echo(orjson.dumps({t: {"xapi_versions": list(p.xapi_versions)} for t, p in found.items()}).decode())
    else:
        for tenant, policy in found.items():
            click.echo(f"{tenant}  xAPI {' '.join(policy.xapi_versions)}")
    return 0


QUERY_TABLES = ("all", "statements", "documents", "tenants")


@main.command()
@store_options
@click.argument("name")
@_async
async def rebuild(data_dir: Path | None, name: str) -> int:
    """Rebuild a view from the log.

    The ingest service's query tables are dropped and rebuilt in place: statements (statements, their
    index, attachments and activity definitions), documents (current State and profile documents),
    tenants (tenant settings), or all of them. A projector's view (learner_activity, ...) is rebuilt
    under a new generation from position 0 while the current one keeps serving, and swapped in when
    it has caught up.
    """
    from ._stream import projector_names, rebuild_projector

    if name in projector_names():
        return await rebuild_projector(data_dir, name)
    if name not in QUERY_TABLES:
        raise click.BadParameter(
            f"{name!r} is not a view; choose one of {', '.join([*QUERY_TABLES, *projector_names()])}",
            param_hint="NAME",
        )
    from proficio_ingest import open_ingest_store, rebuild_query_tables
    from proficio_ingest._rebuild import ALL

    async with await open_ingest_store(_ingest_settings(data_dir)) as log:
        chosen = [p for p in ALL if name in ("all", p.name)]
        counts = await rebuild_query_tables(log, *chosen)
    for view, count in counts.items():
        click.echo(f"{view}: rebuilt from {count} events")
    return 0


@main.command()
@store_options
@click.option("--batch-size", type=int, default=5000, show_default=True, help="Events per Kafka flush.")
@_async
async def relay(data_dir: Path | None, batch_size: int) -> int:
    """Publish the log to Kafka (PROFICIO_KAFKA_BOOTSTRAP, PROFICIO_KAFKA_TOPIC), keyed by stream, until stopped."""
    from ._stream import run_relay

    return await run_relay(data_dir, batch_size)


@main.command()
@store_options
@click.option(
    "--source",
    type=click.Choice(["auto", "sql", "kafka"]),
    default="auto",
    show_default=True,
    help="Where events come from: the SQL log, or the Kafka topic (auto: Kafka when PROFICIO_KAFKA_BOOTSTRAP is set).",
)
@click.option(
    "--equity",
    type=click.Choice(["apart", "here", "only", "off"]),
    default=None,
    help="Where the equity refresher runs: apart, in a child process of its own (the default with every "
    "projection); here, in this process; only, nothing else; off (the default with NAMES).",
)
@click.option("--parent-pipe", is_flag=True, hidden=True, help="Stop when standard input closes (a child process).")
@click.argument("names", nargs=-1)
@_async
async def project(
    data_dir: Path | None, source: str, equity: str | None, parent_pipe: bool, names: tuple[str, ...]
) -> int:
    """Run projectors (all, or the NAMES given) until stopped; several processes share the work.

    With every projection, the equity refresher runs in a child process of its own (``--equity apart``).
    """
    from ._stream import run_projectors

    return await run_projectors(data_dir, source, names, equity, parent_pipe=parent_pipe)


@main.group()
def frameworks() -> None:
    """Competency frameworks (IMS CASE 1.0 packages)."""


@frameworks.command("import")
@store_options
@click.argument("source")
@click.option("--tenant", default="default", show_default=True, help="The tenant (district) the framework is for.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@_async
async def frameworks_import(data_dir: Path | None, source: str, tenant: str, as_json: bool) -> int:
    """Import a CASE 1.0 package from a file or an http(s) address, as the framework's next version.

    The package is checked first; anything wrong is named and nothing is imported. Importing the same
    package again changes nothing.
    """
    from ._stream import import_framework_from

    return await import_framework_from(data_dir, source, tenant, as_json)


@frameworks.command("list")
@store_options
@click.option("--tenant", default=None, help="Only this tenant's frameworks.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@_async
async def frameworks_list(data_dir: Path | None, tenant: str | None, as_json: bool) -> int:
    """The frameworks the frameworks view holds (run by serve or proficio project)."""
    from ._stream import list_frameworks

    return await list_frameworks(data_dir, tenant, as_json)


@main.group()
def alignments() -> None:
    """Which activities count as evidence of which competencies (for statements that do not name them)."""


@alignments.command("set")
@store_options
@click.argument("activity")
@click.argument("competency")
@click.option("--weight", default="1", show_default=True, help="The alignment's weight, in (0, 1].")
@click.option("--tenant", default="default", show_default=True)
@_async
async def alignments_set(data_dir: Path | None, activity: str, competency: str, weight: str, tenant: str) -> int:
    """Align the ACTIVITY (an IRI) to the COMPETENCY (a competency's IRI): an AlignmentDefined event."""
    from ._stream import record_reference

    return await record_reference(data_dir, "align", tenant, activity, competency, weight)


@alignments.command("remove")
@store_options
@click.argument("activity")
@click.argument("competency")
@click.option("--tenant", default="default", show_default=True)
@_async
async def alignments_remove(data_dir: Path | None, activity: str, competency: str, tenant: str) -> int:
    """Remove an alignment (an AlignmentRemoved event)."""
    from ._stream import record_reference

    return await record_reference(data_dir, "unalign", tenant, activity, competency)


@main.group()
def policies() -> None:
    """Mastery policies: how evidence adds up to a score, per tenant, framework or competency."""


@policies.command("set")
@store_options
@click.argument("scope")
@click.option("--method", required=True, help="highest, latest, average, n_mastery, decaying_average, ...")
@click.option("--parameter", type=int, default=None, help="N, or the weight in percent, as the method takes.")
@click.option("--tenant", default="default", show_default=True)
@_async
async def policies_set(data_dir: Path | None, scope: str, method: str, parameter: int | None, tenant: str) -> int:
    """Set the mastery policy of SCOPE (tenant, framework:<identifier> or competency:<IRI>)."""
    from ._stream import record_reference

    return await record_reference(data_dir, "policy", tenant, scope, method, parameter)


@main.group()
def rollups() -> None:
    """Rollup rules: how a parent competency, or a framework's graduate profile, is judged from its children."""


@rollups.command("set")
@store_options
@click.argument("scope")
@click.option("--rule", required=True, help="all_children_mastered, k_of_n or mean_of_children.")
@click.option("--k", type=int, default=None, help="For k_of_n: how many children must be mastered.")
@click.option("--tenant", default="default", show_default=True)
@_async
async def rollups_set(data_dir: Path | None, scope: str, rule: str, k: int | None, tenant: str) -> int:
    """Set the rollup rule of SCOPE (tenant, framework:<identifier> or competency:<IRI>)."""
    from ._stream import record_reference

    return await record_reference(data_dir, "rollup", tenant, scope, rule, k)


@main.group()
def sections() -> None:
    """Sections (classes) and their rosters, whose mastery grid dashboards read."""


@sections.command("set")
@store_options
@click.argument("section")
@click.option("--title", default="", help="The section's title.")
@click.option("--learner", "learners", multiple=True, help="A learner id (repeat for each learner).")
@click.option("--tenant", default="default", show_default=True)
@_async
async def sections_set(data_dir: Path | None, section: str, title: str, learners: tuple[str, ...], tenant: str) -> int:
    """Set SECTION's title and roster (it replaces the roster): a SectionRosterSet event."""
    from ._stream import record_reference

    return await record_reference(data_dir, "section", tenant, section, title, list(learners))


@main.group()
def pacing() -> None:
    """Pacing reference data: school calendars, pacing plans, the tenant's thresholds, graduation menus."""


@pacing.command("set")
@store_options
@click.argument("kind", type=click.Choice(["calendar", "plan", "policy", "menu"]))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", default="default", show_default=True)
@_async
async def pacing_set(data_dir: Path | None, kind: str, file: Path, tenant: str) -> int:
    """Record a calendar, plan, pacing policy or graduation menu from a JSON FILE (an event; it replaces the
    one with the same id). See examples/ for each."""
    from ._stream import record_pacing

    return await record_pacing(data_dir, kind, file, tenant)


@main.group()
def demo() -> None:
    """Synthetic demo data: simulated learners with a known, hidden mastery state."""


@demo.command("generate")
@store_options
@click.option("--learners", type=click.IntRange(1, 10_000), default=30, show_default=True, help="Learners to simulate.")
@click.option("--seed", type=int, default=1, show_default=True, help="The same seed gives byte-identical data.")
@click.option(
    "--framework",
    "framework_source",
    metavar="FILE|URL",
    default=None,
    help="A CASE 1.0 package to practise (default: examples/graduate-profile.case.json).",
)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default="2026-09-08",
    show_default=True,
    help="The first school day (YYYY-MM-DD).",
)
@click.option(
    "--aligned-share",
    type=click.FloatRange(0, 1),
    default=0.3,
    show_default=True,
    help="Share of the items whose statements name no competency (they count through alignments).",
)
@click.option(
    "--void-rate",
    type=click.FloatRange(0, 1),
    default=0.02,
    show_default=True,
    help="Chance per attempt of a mis-recorded score that a teacher voids.",
)
@click.option(
    "--retry-rate",
    type=click.FloatRange(0, 1),
    default=0.03,
    show_default=True,
    help="Chance per attempt that the statement is sent again (same id).",
)
@click.option(
    "--late-rate",
    type=click.FloatRange(0, 1),
    default=0.05,
    show_default=True,
    help="Chance per attempt that the statement arrives days late.",
)
@click.option(
    "--schools",
    type=click.IntRange(0, 50),
    default=0,
    show_default=True,
    help="Simulate a district of N schools following one course, with a planted gap, stalled and disengaged "
    "learners and small groups; also writes oneroster/ and pacing-plan.json (0: learners on their own).",
)
@click.option("--weeks", type=click.IntRange(6, 60), default=None, help="District: the course's school weeks [18].")
@click.option(
    "--as-of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="District: the judging day; statements delivered by then are output [the Friday of week weeks/2].",
)
@click.option(
    "--gap-group",
    metavar="FACTOR=VALUE",
    default=None,
    help="District: the group planted behind [english_learner=true].",
)
@click.option(
    "--gap-learn", type=click.FloatRange(0, 1), default=None, help="District: the gap group's BKT learn factor [0.7]."
)
@click.option(
    "--skip-rate",
    type=click.FloatRange(0, 1),
    default=None,
    help="District: chance of skipping a school week after an active one [0.1].",
)
@click.option(
    "--gap-skip-rate", type=click.FloatRange(0, 1), default=None, help="District: the same for the gap group [0.3]."
)
@click.option(
    "--stalled-share",
    type=click.FloatRange(0, 1),
    default=None,
    help="District: share of learners planted stalled [0.08].",
)
@click.option(
    "--disengaged-share",
    type=click.FloatRange(0, 1),
    default=None,
    help="District: share of learners planted disengaged [0.06].",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write statements.ndjson, alignments.json and truth.json here (and, for a district, oneroster/ and "
    "pacing-plan.json).",
)
@click.option(
    "--post",
    "post_url",
    metavar="URL",
    default=None,
    help="Send the statements to this xAPI endpoint (e.g. http://127.0.0.1:8080/xapi/).",
)
@click.option("--key", default=None, help="The credential's key (with --post).")
@click.option("--secret", default=None, help="The credential's secret (with --post).")
@click.option(
    "--tenant",
    default="default",
    show_default=True,
    help="With --post: the tenant to record the framework and alignments for (the credential's).",
)
@click.option("--batch-size", type=click.IntRange(1, 5000), default=500, show_default=True, help="Statements per POST.")
@_async
async def demo_generate(
    data_dir: Path | None,
    learners: int,
    seed: int,
    framework_source: str | None,
    start: datetime.datetime,
    aligned_share: float,
    void_rate: float,
    retry_rate: float,
    late_rate: float,
    schools: int,
    weeks: int | None,
    as_of: datetime.datetime | None,
    gap_group: str | None,
    gap_learn: float | None,
    skip_rate: float | None,
    gap_skip_rate: float | None,
    stalled_share: float | None,
    disengaged_share: float | None,
    out: Path | None,
    post_url: str | None,
    key: str | None,
    secret: str | None,
    tenant: str,
    batch_size: int,
) -> int:
    """Simulate learners practising a framework's competencies and write or post their xAPI statements.

    Each learner walks the framework's precedes order with a hidden mastery state (Bayesian knowledge
    tracing); truth.json holds that state and the true mastery dates. With --post the statements go
    through the xAPI service in batches, and the framework and the alignments are recorded in the store
    (--data-dir or PROFICIO_DATABASE_URL), as frameworks import and alignments set do.

    With --schools the learners form a district (see the README, "Demo data"): import oneroster/ with
    proficio roster import --effective START and record pacing-plan.json with proficio pacing set plan.
    """
    from . import _demo_io

    if out is None and post_url is None:
        raise click.UsageError("give --out DIR to write the demo data, --post URL to send it, or both")
    endpoint: str | None = None
    credential: tuple[str, str] | None = None
    if post_url is not None:
        if not key or not secret:
            raise click.UsageError("--post needs --key and --secret (a credential from proficio credentials create)")
        endpoint, credential = _demo_io.statements_url(post_url), (key, secret)
    district = _demo_io.district_from_options(
        schools, weeks, as_of.date() if as_of else None, gap_group, gap_learn, skip_rate, gap_skip_rate,
        stalled_share, disengaged_share,
    )  # fmt: skip
    settings = _demo_io.settings_from_options(
        learners, seed, start.date(), aligned_share, void_rate, retry_rate, late_rate, district
    )
    source = _demo_io.framework_source_or_sample(framework_source)
    package, generated = _demo_io.simulate(source, settings)
    click.echo(_demo_io.summary(generated))
    if out is not None:
        for path in _demo_io.write_demo(generated, out):
            click.echo(f"wrote {path}")
    if endpoint is not None and credential is not None:
        # Statements first: if the service refuses them, nothing is recorded; a rerun posts the same ids (no-ops).
        requests = await _demo_io.post_statements(generated, endpoint, *credential, batch_size)
        click.echo(f"posted {len(generated.statements)} statements to {endpoint} in {requests} requests")
        created, aligned = await _demo_io.record_reference_data(data_dir, tenant, generated, package, source)
        click.echo(f"{'imported' if created else 'already imported:'} {generated.framework.title} for {tenant};"
                   f" {aligned} alignments defined")  # fmt: skip
    return 0


@main.group()
def roster() -> None:
    """Rosters and student groups from the SIS (OneRoster 1.1 CSV)."""


@roster.command("import")
@store_options
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--tenant", default="default", show_default=True, help="The tenant (district) the roster is for.")
@click.option(
    "--actor",
    # proficio_projector.roster.ActorSource's values (not imported here: every command would pay for it).
    type=click.Choice(["email", "sourcedId", "username", "identifier"]),
    default="email",
    show_default=True,
    help="The users.csv field the LMS sends as a student's xAPI actor: email (an mbox), or sourcedId, username "
    "or identifier (an account on --home-page).",
)
@click.option("--home-page", default=None, help="The LMS's home page (URL) of account actors.")
@click.option(
    "--effective",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The date group changes take effect, YYYY-MM-DD (default: today).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@_async
async def roster_import(
    data_dir: Path | None,
    path: Path,
    tenant: str,
    actor: str,
    home_page: str | None,
    effective: datetime.datetime | None,
    as_json: bool,
) -> int:
    """Import a OneRoster 1.1 CSV package (a directory or a zip): orgs, classes, learners, enrollments, section
    rosters and group memberships, appending only what changed since the previous import.

    The package is checked first; every problem is named (file, row, column) and nothing is imported.
    Names, emails, usernames and birth dates are never written to the log.
    """
    from ._stream import import_roster_from

    day = effective.date() if effective is not None else datetime.date.today()
    return await import_roster_from(data_dir, path, tenant, actor, home_page, day, as_json)


@main.group()
def audit() -> None:
    """Auditors: a learner's history and her views as of any moment, replayed from the log."""


@audit.command("learner")
@store_options
@click.argument("learner")
@click.option("--tenant", default="default", show_default=True)
@click.option("--at", "at", default=None, help="Her views as of this moment (ISO 8601 with a zone).")
@click.option("--diff", "between", nargs=2, default=None, metavar="FROM TO", help="What changed between two moments.")
@_async
async def audit_learner(data_dir: Path | None, learner: str, tenant: str, at: str | None,
                        between: tuple[str, str] | None) -> int:  # fmt: skip
    """LEARNER (a learner id, or an xAPI agent as JSON): her history in log order, or with --at her views as of
    that moment, or with --diff the changes between two moments; as JSON."""
    from ._stream import audit_learner_views

    return await audit_learner_views(data_dir, tenant, learner, at, between)


@main.group()
def equity() -> None:
    """Equity views: groups of students against all students, suppressed per audience."""


@equity.command("refresh")
@store_options
@click.option("--as-of", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="The day (default: today).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@_async
async def equity_refresh(data_dir: Path | None, as_of: datetime.datetime | None, as_json: bool) -> int:
    """Refresh every tenant's learner facts and equity cells now, for a day (the projectors run the views)."""
    from ._stream import refresh_equity

    return await refresh_equity(data_dir, as_of.date() if as_of else None, as_json)


@main.group()
def projectors() -> None:
    """Projector generations, watermarks and lag."""


@projectors.command("status")
@store_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@_async
async def projectors_status(data_dir: Path | None, as_json: bool) -> int:
    """Each projector's watermark, lag behind the log and open dead letters; the relay's checkpoint."""
    from ._stream import show_status

    return await show_status(data_dir, as_json)


@main.group()
def deadletters() -> None:
    """Events a projector could not fold, parked after retries."""


@deadletters.command("list")
@store_options
@click.argument("name", required=False)
@click.option("--all", "include_resolved", is_flag=True, help="Resolved ones too.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@_async
async def deadletters_list(data_dir: Path | None, name: str | None, include_resolved: bool, as_json: bool) -> int:
    """Open dead letters (of one projector with NAME), with the error and the attempts."""
    from ._stream import list_dead_letters

    return await list_dead_letters(data_dir, name, include_resolved, as_json)


@deadletters.command("replay")
@store_options
@click.argument("name")
@click.option("--position", type=int, default=None, help="Only the dead letter at this log position.")
@_async
async def deadletters_replay(data_dir: Path | None, name: str, position: int | None) -> int:
    """Fold a projector's dead letters again, in log order; exit 1 if any still fails."""
    from ._stream import replay

    return await replay(data_dir, name, position)


@main.command()
@store_options
@_async
async def migrate(data_dir: Path | None) -> int:
    """Create or upgrade every schema Proficio keeps: the log's, the ingest service's tables and the projectors'
    runtime tables. Serve and every command also do this on start; run it alone first (a deployment's migrate
    job) when an upgrade rewrites a large table, such as ingest_0011 the statement index."""
    from proficio_ingest import open_ingest_store
    from proficio_projector import migrate_runtime

    settings = _store(data_dir)
    async with await open_ingest_store(_ingest_settings(data_dir)) as log:
        await migrate_runtime(log)
    click.echo(f"schema up to date at {_describe(settings)}")
    return 0
