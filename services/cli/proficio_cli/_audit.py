"""``proficio verify``, ``keys``, ``checkpoint``, ``export`` and ``verify-export``: what auditors run."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click
import orjson

from proficio_events import (
    ChainProblem,
    CheckpointSettings,
    EventLog,
    SigningKeyError,
    VerifyReport,
    checkpoint_tenants,
    generate_key_files,
    load_public_key,
    load_signer,
    open_event_log,
    public_key_file_for,
    verify_export,
)

from ._main import _async, _store, main, store_options

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from proficio_events import ExportReport, Signer

_LEARNER_ID = re.compile(r"^(learner:)?[0-9a-f]{32}$")
NO_KEY = "no signing key: set PROFICIO_SIGNING_KEY_FILE to a key file (proficio keys generate makes one)"


def _configured_signer() -> Signer | None:
    return CheckpointSettings().signer()


def _public_key(option: Path | None) -> Ed25519PublicKey | None:
    """The key given with --public-key, else the public half of the configured signing key, else None."""
    if option is not None:
        return load_public_key(option)
    signer = _configured_signer()
    return signer.public_key if signer is not None else None


def _problem_json(problem: ChainProblem | None) -> dict[str, Any] | None:
    if problem is None:
        return None
    return {"tenant": problem.tenant, "position": problem.position, "kind": problem.kind, "detail": problem.detail}


def _describe_problem(problem: ChainProblem) -> str:
    whose = f"of tenant {problem.tenant!r}" if problem.tenant is not None else "of the log"
    if problem.kind == "forged":
        return f"FORGED: the checkpoint at position {problem.position} {whose}: {problem.detail}"
    return f"TAMPERED: event {problem.position} {whose} was {problem.kind}: {problem.detail}"


def _verify_summary(report: VerifyReport) -> str:
    checkpoints = f"{report.checkpoints_met} checkpoint(s) matched"
    if report.signatures_verified or report.signatures_unchecked:
        checkpoints += f", {report.signatures_verified} signature(s) verified"
        if report.signatures_unchecked:
            checkpoints += f", {report.signatures_unchecked} not checked (no key given, or signed by another key)"
    return f"{report.events_checked} events in {report.tenants} tenant chain(s) verified; {checkpoints}"


@main.command()
@store_options
@click.option("--tenant", default=None, help="Check one tenant's chain only.")
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Check the checkpoints' signatures with this ed25519 public key (PEM); default: the public half of"
    " PROFICIO_SIGNING_KEY_FILE, if set.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@_async
async def verify(data_dir: Path | None, tenant: str | None, public_key: Path | None, as_json: bool) -> int:
    """Walk the hash chain; exit 1 and name the first altered, removed or reordered event.

    Every stored checkpoint is held against the chain (the event at its position must still carry its
    hash), which also catches a chain rewritten and re-hashed, and events deleted from its end.
    """
    key = _public_key(public_key)
    async with await open_event_log(_store(data_dir).log_url()) as event_log:
        report = await event_log.verify(tenant, public_key=key)
    problem = report.problem
    if as_json:
        click.echo(
            orjson.dumps(
                {
                    "ok": report.ok,
                    "events_checked": report.events_checked,
                    "tenants": report.tenants,
                    "checkpoints_met": report.checkpoints_met,
                    "signatures_verified": report.signatures_verified,
                    "signatures_unchecked": report.signatures_unchecked,
                    "problem": _problem_json(problem),
                    "heads": {t: h.hex() for t, h in report.heads.items()},
                }
            ).decode()
        )
    elif problem is None:
        click.echo(f"ok: {_verify_summary(report)}")
    else:
        click.echo(f"{_describe_problem(problem)} ({report.events_checked} events verified before it)")
    return 0 if report.ok else 1


@main.group()
def keys() -> None:
    """The operator's ed25519 key that signs checkpoints of the log."""


@keys.command("generate")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the private key (default: $PROFICIO_SIGNING_KEY_FILE); the public key goes beside it,"
    " with .pub added.",
)
def keys_generate(out: Path | None) -> None:
    """Make a new signing key: the private key (readable by its owner only) and its public key."""
    path = out or CheckpointSettings().signing_key_file
    if path is None:
        raise click.UsageError("give --out PATH (or set PROFICIO_SIGNING_KEY_FILE) for the new key")
    try:
        signer = generate_key_files(path)
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"private key: {path} (keep it secret; set PROFICIO_SIGNING_KEY_FILE={path})")
    click.echo(f"public key:  {public_key_file_for(path)} (give it to whoever checks exports)")
    click.echo(f"key id:      {signer.key_id}")


@keys.command("public")
@click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The private key file (default: $PROFICIO_SIGNING_KEY_FILE).",
)
def keys_public(key_file: Path | None) -> None:
    """Print the public key (PEM) of the signing key, to publish for auditors."""
    path = key_file or CheckpointSettings().signing_key_file
    if path is None:
        raise click.UsageError(NO_KEY)
    try:
        signer = load_signer(path)
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(signer.public_pem().decode(), nl=False)


@main.command()
@store_options
@click.option("--tenant", default=None, help="Only this tenant (default: every tenant).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@_async
async def checkpoint(data_dir: Path | None, tenant: str | None, as_json: bool) -> int:
    """Sign a checkpoint of each tenant's chain at its newest event (PROFICIO_SIGNING_KEY_FILE).

    The chain since the key's previous checkpoint is verified first: a chain that does not verify is not
    signed, and the command exits 1 naming the event.
    """
    signer = _configured_signer()
    if signer is None:
        raise click.ClickException(NO_KEY)
    async with await open_event_log(_store(data_dir).log_url()) as event_log:
        outcomes = await checkpoint_tenants(event_log, signer, [tenant] if tenant is not None else None)
    rows: list[dict[str, Any]] = []
    for outcome in outcomes:
        made = outcome.checkpoint
        rows.append(
            {
                "tenant": outcome.tenant,
                "checkpoint": made.to_json() if made is not None else None,
                "new": outcome.fresh,
                "error": str(outcome.error) if outcome.error is not None else None,
            }
        )
        if as_json:
            continue
        if outcome.error is not None:
            click.echo(f"{outcome.tenant}: NOT SIGNED: {outcome.error}")
        elif made is None:
            click.echo(f"{outcome.tenant}: no events")
        else:
            state = "signed" if outcome.fresh else "already signed"
            click.echo(f"{outcome.tenant}: {state} at position {made.position} ({made.chain_hash.hex()[:16]}...)")
    if as_json:
        click.echo(orjson.dumps(rows).decode())
    elif not outcomes:
        click.echo("the log holds no events" if tenant is None else f"tenant {tenant!r} has no events")
    return 1 if any(o.error is not None for o in outcomes) else 0


def parse_learner(learner: str) -> tuple[str | None, dict[str, Any] | None]:
    """``--learner``: a learner id (``learner:<32 hex>``), or a validated xAPI agent as JSON."""
    if _LEARNER_ID.match(learner):
        return (learner if learner.startswith("learner:") else f"learner:{learner}"), None
    if not learner.lstrip().startswith("{"):
        raise click.BadParameter(
            'give an xAPI agent as JSON ({"mbox": "mailto:..."}) or a learner id (learner:<32 hex digits>)',
            param_hint="--learner",
        )
    from proficio_ingest import StatementValidationError
    from proficio_ingest._validation import validate_agent_json

    try:
        agent = orjson.loads(learner)
        validate_agent_json(agent, path="learner")
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--learner") from exc
    except StatementValidationError as exc:
        raise click.BadParameter(f"not an xAPI agent: {exc.message}", param_hint="--learner") from exc
    assert isinstance(agent, dict)
    return None, agent


async def learner_stream_of(log: EventLog, tenant: str, learner: str) -> str:
    """The stream of ``--learner``: a learner id, or an xAPI agent as JSON looked up in the learner directory (an
    agent it does not know, never seen or erased, is no learner: an error)."""
    from proficio_ingest import find_learner_id

    stream, agent = parse_learner(learner)
    if stream is not None:
        return stream
    found = await find_learner_id(log, tenant, agent)
    if found is None:
        raise click.ClickException(f"tenant {tenant!r} knows no learner by the agent {learner} (never seen, or erased)")
    return found


@main.command()
@store_options
@click.option("--tenant", required=True, help="The tenant whose log segment to export.")
@click.option("--learner", default=None, help="Only this learner: an xAPI agent as JSON, or a learner id.")
@click.option("--from", "first", type=click.IntRange(min=1), default=1, show_default=True, help="First position.")
@click.option("--to", "last", type=click.IntRange(min=1), default=None, help="Last position (default: the newest).")
@click.option(
    "--checkpoint/--no-checkpoint",
    "sign",
    default=True,
    show_default=True,
    help="Sign a checkpoint at the segment's last event first (needs PROFICIO_SIGNING_KEY_FILE; without a key,"
    " only the stored checkpoints go in).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file (default: standard output).",
)
@_async
async def export(
    data_dir: Path | None, tenant: str, learner: str | None, first: int, last: int | None, sign: bool, out: Path | None
) -> int:
    """Write a tenant's (or one learner's) events as NDJSON, with the checkpoints that attest them.

    Every field the hash covers is in the file, so `proficio verify-export FILE --public-key KEY` checks it
    with no database. The signed checkpoint at the last event is made after the chain up to it verifies.
    """
    from proficio_events import export_segment
    from proficio_events._sql import SqlEventLog

    if last is not None and last < first:
        raise click.BadParameter(f"--to {last} is before --from {first}", param_hint="--to")
    if learner is not None:
        parse_learner(learner)  # a usage error before opening anything
    signer = _configured_signer() if sign else None
    async with await open_event_log(_store(data_dir).log_url()) as event_log:
        assert isinstance(event_log, SqlEventLog)
        stream = await learner_stream_of(event_log, tenant, learner) if learner is not None else None
        target: IO[bytes]
        with out.open("wb") if out is not None else _stdout() as target:
            summary = await export_segment(
                event_log, target, tenant, stream=stream, first=first, last=last, signer=signer
            )
    what = f"learner {stream}" if stream else f"tenant {tenant!r}"
    if summary.events == 0:
        click.echo(f"exported nothing: {what} has no events in that range", err=True)
        return 0
    click.echo(
        f"exported {summary.events} events of {what}, positions {summary.first_position}-{summary.last_position},"
        f" with {summary.checkpoints} checkpoint(s)"
        + ("" if signer is not None else "; no new checkpoint signed (no signing key)" if sign else ""),
        err=True,
    )
    return 0


class _stdout:
    """Standard output as a binary file that is not closed at the end."""

    def __enter__(self) -> IO[bytes]:
        return sys.stdout.buffer

    def __exit__(self, *exc: object) -> None:
        sys.stdout.buffer.flush()


def _export_text(report: ExportReport) -> list[str]:
    what = (
        f"learner {report.stream} of tenant {report.tenant!r}"
        if report.segment == "learner"
        else (f"tenant {report.tenant!r}")
    )
    lines = [f"export of {what}: {report.events} events, positions {report.first_position}-{report.last_position}"]
    if report.segment == "tenant":
        start = (
            "starts at the tenant's first event"
            if report.starts_at_genesis
            else f"hangs on the hash of the tenant's event before position {report.first_position}"
        )
        lines.append(f"chain: {'unbroken' if report.problem is None else 'BROKEN'}; {start}")
    else:
        lines.append(
            "events: each matches its hash; stream versions run on without a gap"
            if report.problem is None
            else "events: NOT all sound"
        )
    lines.append(
        f"checkpoints: {report.checkpoints_valid} valid"
        + (f", {report.checkpoints_other_key} by other keys (not checked)" if report.checkpoints_other_key else "")
    )
    unattested = report.events - report.attested_events
    if report.attested_through is None:
        lines.append("attested: NONE of the events (no valid checkpoint of this key falls on them)")
    elif report.segment == "tenant":
        lines.append(
            f"attested: the chain through position {report.attested_through} ({report.attested_events} events)"
            + (f"; {unattested} events after it are NOT attested" if unattested else "")
        )
    else:
        lines.append(
            f"attested: {report.attested_events} event(s) by a checkpoint at their own position, the last at"
            f" {report.attested_through}; the other {unattested} are bound to the chain only through links to"
            " events not in the file"
        )
    lines.append("OK" if report.ok else f"FAILED: {report.problem or 'the last event is not attested'}")
    return lines


@main.command("verify-export")
@click.argument("file", type=click.File("rb"))
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The signer's ed25519 public key (PEM), from proficio keys generate or keys public.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def verify_export_command(file: IO[bytes], public_key: Path, as_json: bool) -> None:
    """Check an export FILE (- for standard input) with only the public key: no database needed.

    Exit 0 when every event is sound and the last one is attested by a checkpoint of the key; 1 otherwise.
    A tenant segment must be one unbroken piece of the chain; a learner's segment is checked event by event
    (see the README, "Verifying and exporting", for what each proves).
    """
    try:
        key = load_public_key(public_key)
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    report = verify_export(file, key)
    if as_json:
        click.echo(orjson.dumps(report.to_json()).decode())
    else:
        for line in _export_text(report):
            click.echo(line)
    sys.exit(0 if report.ok else 1)


@main.group()
def erase() -> None:
    """Erasure by crypto-shredding: destroy a learner's data key (see docs/privacy.md)."""


@erase.command("learner")
@store_options
@click.argument("learner")
@click.option("--tenant", default="default", show_default=True)
@click.option("--by", "erased_by", default="cli", show_default=True, help="Who asked for the erasure (recorded).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@_async
async def erase_learner(data_dir: Path | None, learner: str, tenant: str, erased_by: str, as_json: bool) -> int:
    """LEARNER (a learner id, or an xAPI agent as JSON): destroy her keys and append LearnerErased.

    Her statements stay, redacted, with a pseudonymous actor; her agent documents and index rows go; the
    hash chain is untouched. Erasing again is harmless (nothing to erase).
    """
    from proficio_ingest import erase_learners, erasure_targets, open_ingest_store

    from ._main import _ingest_settings

    stream, agent = parse_learner(learner)
    agents: list[dict[str, Any]] = []
    async with await open_ingest_store(_ingest_settings(data_dir)) as log:
        if agent is not None:
            # Her learner ids from the learner directory (none if it does not know her: nothing to erase).
            learners, agents = await erasure_targets(log, tenant, agent)
        else:
            assert stream is not None
            learners = [stream]
        outcome = await erase_learners(log, tenant, learners, erased_by=erased_by, agents=agents)
    result = {
        "tenant": tenant,
        "learners": list(outcome.learners),
        "erased": outcome.erased,
        "keys_destroyed": outcome.keys_destroyed,
        "statements": outcome.statements,
        "documents": outcome.documents,
        "directory_rows": outcome.directory_rows,
        "positions": list(outcome.positions),
    }
    if as_json:
        click.echo(orjson.dumps(result).decode())
    elif outcome.erased:
        click.echo(
            f"erased {', '.join(outcome.learners)}: {outcome.keys_destroyed} key(s) destroyed, {outcome.statements}"
            f" statement(s) now pseudonymous, {outcome.documents} document(s) removed"
        )
    else:
        click.echo(
            f"nothing to erase for {', '.join(learners) or learner} (no live key nor directory row: never seen,"
            " or erased before)"
        )
    return 0


@main.group()
def directory() -> None:
    """The learner directory: keyed digests of identities -> random learner ids (see docs/privacy.md)."""


@directory.command("backfill")
@store_options
@click.option("--tenant", required=True, help="The tenant whose learners to map.")
@_async
async def directory_backfill(data_dir: Path | None, tenant: str) -> int:
    """Once, after upgrading a database whose learners predate the learner directory: map their identities (read
    from their sealed statements, while their keys live) to the ids they already have, so their streams and views
    go on. Those ids stay hash-derived; erased learners are not mapped back."""
    from proficio_ingest import backfill_directory, open_ingest_store

    from ._main import _ingest_settings

    async with await open_ingest_store(_ingest_settings(data_dir)) as log:
        added = await backfill_directory(log, tenant)
    click.echo(f"{tenant}: {added} identities mapped to their existing learner ids")
    return 0
