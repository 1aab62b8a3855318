"""``proficio import-lrs``: copy another LRS's statements into a tenant, resumably."""

from __future__ import annotations

from pathlib import Path

import click

from ._main import _async, _ingest_settings, main, store_options


@main.command("import-lrs")
@store_options
@click.argument("url")
@click.option("--key", required=True, help="The source LRS's HTTP Basic key (a credential that reads statements).")
@click.option(
    "--secret",
    required=True,
    envvar="PROFICIO_IMPORT_SECRET",
    help="Its secret (or set PROFICIO_IMPORT_SECRET, which keeps it out of the process list).",
)
@click.option("--tenant", default="default", show_default=True, help="The tenant to import into.")
@click.option(
    "--since", default=None, help="Only statements the source stored after this time (ISO 8601), on the first run."
)
@click.option(
    "--page-size", type=click.IntRange(1, 10_000), default=500, show_default=True, help="Statements per request."
)
@click.option("--max-pages", type=click.IntRange(min=1), default=None, help="Stop after this many pages.")
@_async
async def import_lrs(
    data_dir: Path | None,
    url: str,
    key: str,
    secret: str,
    tenant: str,
    since: str | None,
    page_size: int,
    max_pages: int | None,
) -> int:
    """Import the statements of the LRS at URL (its xAPI endpoint, e.g. https://lrs.example/xapi/).

    Pages through GET /statements following its `more` links; every statement goes through this LRS's own
    checks (validation, ids, voiding, attachments, signatures). A statement id already stored with the same
    content is a no-op, so running it again appends nothing new. Progress is saved with each page: after an
    interruption the same command carries on where it stopped, and once caught up it asks only for what
    the source stored since.
    """
    from proficio_ingest import StatementValidationError, open_ingest_store
    from proficio_ingest._lrs_import import LrsImportError, run_import
    from proficio_ingest._validation import parse_timestamp

    if since is not None:
        try:
            parse_timestamp(since, path="--since")
        except StatementValidationError as exc:
            raise click.BadParameter(exc.reason, param_hint="--since") from exc
    async with await open_ingest_store(_ingest_settings(data_dir)) as log:
        try:
            result = await run_import(
                log, url, key, secret, tenant, since=since, page_size=page_size, max_pages=max_pages,
                report=lambda line: click.echo(line, err=True),
            )  # fmt: skip
        except LrsImportError as exc:
            raise click.ClickException(f"{exc} (pages before it were kept: run the command again to carry on)") from exc
    click.echo(
        f"{result.pages} page(s), {result.received} statement(s) received, {result.stored} new to tenant {tenant!r}"
    )
    for note in result.notes:
        click.echo(note)
    if result.caught_up:
        click.echo(f"caught up; the next run asks for statements stored after {result.consistent_through or 'now'}")
    return 0
