"""``proficio demo generate``: the simulated demo data written to files, or posted to an LRS."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import click
import httpx
import orjson

from ._demo import Demo, DemoSettings, generate_demo
from ._demo_district import DISENGAGED, FACTOR_VALUES, STALLED, DistrictSettings

#: The sample framework of a source checkout (it is not part of the installed wheel).
SAMPLE_FRAMEWORK = Path(__file__).resolve().parents[3] / "examples" / "graduate-profile.case.json"
STATEMENTS_FILE = "statements.ndjson"
ALIGNMENTS_FILE = "alignments.json"
TRUTH_FILE = "truth.json"
ROSTER_DIR = "oneroster"
PLAN_FILE = "pacing-plan.json"


def framework_source_or_sample(framework_source: str | None) -> str:
    if framework_source is not None:
        return framework_source
    if not SAMPLE_FRAMEWORK.is_file():
        raise click.UsageError("the sample framework is not in this installation: give --framework FILE")
    return str(SAMPLE_FRAMEWORK)


def simulate(framework_source: str, settings: DemoSettings) -> tuple[bytes, Demo]:
    """The CASE package (as read) and the demo simulated on it."""
    from proficio_projector.competency import FrameworkError, read_source

    try:
        package = read_source(framework_source)
        return package, generate_demo(package, settings)
    except FrameworkError as exc:
        raise click.ClickException(f"{framework_source}: {exc}") from exc
    except ValueError as exc:
        raise click.ClickException(f"cannot simulate learners on {framework_source}: {exc}") from exc


def write_demo(demo: Demo, out: Path) -> list[Path]:
    written = [
        (out / STATEMENTS_FILE, demo.statements_ndjson()),
        (out / ALIGNMENTS_FILE, demo.alignments_json()),
        (out / TRUTH_FILE, demo.truth_json()),
    ]
    if demo.district is not None:
        written.append((out / PLAN_FILE, demo.plan_json()))
        written += [(out / ROSTER_DIR / name, content) for name, content in sorted(demo.district.roster.items())]
    try:
        for path, content in written:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    except OSError as exc:
        raise click.ClickException(f"cannot write the demo data to {out}: {exc.strerror or exc}") from exc
    return [path for path, _ in written]


def statements_url(endpoint: str) -> str:
    """The Statements resource of an xAPI endpoint (``http://host:8080/xapi/`` or its ``statements``)."""
    if not endpoint.startswith(("http://", "https://")):
        raise click.BadParameter(f"{endpoint!r} is not an http(s) address", param_hint="--post")
    trimmed = endpoint.rstrip("/")
    return trimmed if trimmed.endswith("/statements") else f"{trimmed}/statements"


def batches(statements: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive batches of at most ``size``; a retry starts a new batch (an LRS refuses an id twice in one)."""
    batch: list[dict[str, Any]] = []
    ids: set[str] = set()
    for statement in statements:
        if len(batch) == size or statement["id"] in ids:
            yield batch
            batch, ids = [], set()
        batch.append(statement)
        ids.add(statement["id"])
    if batch:
        yield batch


async def post_statements(demo: Demo, endpoint: str, key: str, secret: str, batch_size: int) -> int:
    """POST the statements in delivery order; the number of requests. Stops at the first refusal."""
    url = statements_url(endpoint)
    headers = {"X-Experience-API-Version": "1.0.3", "Content-Type": "application/json"}
    sent = requests = 0
    async with httpx.AsyncClient(auth=(key, secret), headers=headers, timeout=120) as client:
        for batch in batches(demo.statements, batch_size):
            try:
                response = await client.post(url, content=orjson.dumps(batch))
            except httpx.HTTPError as exc:
                raise click.ClickException(f"cannot reach {url}: {exc}") from exc
            if response.status_code != 200:
                raise click.ClickException(
                    f"{url} refused statements {sent + 1}-{sent + len(batch)} with HTTP {response.status_code}: "
                    f"{response.text[:500]} ({sent} statements were accepted before them)"
                )
            sent += len(batch)
            requests += 1
    return requests


async def record_reference_data(
    data_dir: Path | None, tenant: str, demo: Demo, package: bytes, source: str
) -> tuple[bool, int]:
    """Import the framework and define the alignments in the store (there is no HTTP API for them).

    Returns whether the framework was a new version, and the number of alignments defined.
    """
    from proficio_projector.competency import define_alignment, import_framework

    from ._stream import open_store

    async with await open_store(data_dir) as log:
        imported = await import_framework(log, tenant, package, source=source)
        for alignment in demo.alignments:
            await define_alignment(
                log, tenant, alignment["activity"], alignment["competency"], weight=alignment["weight"], source="demo"
            )
    return imported.created, len(demo.alignments)


def summary(demo: Demo) -> str:
    statements = demo.statements
    voided = sum(1 for s in statements if s["verb"]["id"] == "http://adlnet.gov/expapi/verbs/voided")
    retried = len(statements) - len({s["id"] for s in statements})
    pairs = [c for learner in demo.truth for c in learner.competencies]
    mastered = sum(1 for c in pairs if c.mastered)
    found = (
        f"{len(statements)} statements for {len(demo.truth)} learners on {demo.framework.title}"
        f" ({voided} voiding, {retried} retries); hidden state: {mastered} of {len(pairs)} learner x competency"
        f" pairs mastered"
    )
    if demo.district is None:
        return found
    district = demo.district
    planted = [learner.district.profile.planted for learner in demo.truth if learner.district is not None]
    gap = district.settings
    return (
        f"{found}\ndistrict of {gap.schools} schools, plan {district.plan['plan']} from {district.plan['start']} to"
        f" {district.target}, statements delivered by {district.as_of}; planted: {gap.gap_factor}={gap.gap_value}"
        f" learning x{gap.gap_learn} and skipping {gap.gap_skip_week_rate:.0%} of weeks, {planted.count(STALLED)}"
        f" stalled and {planted.count(DISENGAGED)} disengaged learners, a small group in each school"
    )


def district_from_options(
    schools: int | None,
    weeks: int | None,
    as_of: date | None,
    gap_group: str | None,
    gap_learn: float | None,
    skip_rate: float | None,
    gap_skip_rate: float | None,
    stalled_share: float | None,
    disengaged_share: float | None,
) -> DistrictSettings | None:
    """The district settings the options give (None without --schools; the others then are a usage error)."""
    given = {"--weeks": weeks, "--as-of": as_of, "--gap-group": gap_group, "--gap-learn": gap_learn,
             "--skip-rate": skip_rate, "--gap-skip-rate": gap_skip_rate, "--stalled-share": stalled_share,
             "--disengaged-share": disengaged_share}  # fmt: skip
    if not schools:
        named = [option for option, value in given.items() if value is not None]
        if named:
            raise click.UsageError(f"{', '.join(named)}: options of a district; give --schools N too")
        return None
    defaults = DistrictSettings()
    factor, value = defaults.gap_factor, defaults.gap_value
    if gap_group is not None:
        factor, _, value = gap_group.partition("=")
        if factor not in FACTOR_VALUES or value not in FACTOR_VALUES[factor]:
            choices = "; ".join(f"{f}: {', '.join(values)}" for f, values in FACTOR_VALUES.items())
            raise click.BadParameter(f"{gap_group!r} is not FACTOR=VALUE ({choices})", param_hint="--gap-group")
    try:
        return DistrictSettings(
            schools=schools, weeks=defaults.weeks if weeks is None else weeks, as_of=as_of, gap_factor=factor,
            gap_value=value, gap_learn=defaults.gap_learn if gap_learn is None else gap_learn,
            skip_week_rate=defaults.skip_week_rate if skip_rate is None else skip_rate,
            gap_skip_week_rate=defaults.gap_skip_week_rate if gap_skip_rate is None else gap_skip_rate,
            stalled_share=defaults.stalled_share if stalled_share is None else stalled_share,
            disengaged_share=defaults.disengaged_share if disengaged_share is None else disengaged_share,
        )  # fmt: skip
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def settings_from_options(
    learners: int,
    seed: int,
    start: date,
    aligned_share: float,
    void_rate: float,
    retry_rate: float,
    late_rate: float,
    district: DistrictSettings | None = None,
) -> DemoSettings:
    try:
        return DemoSettings(
            learners=learners, seed=seed, start=start, aligned_only_share=aligned_share, void_rate=void_rate,
            retry_rate=retry_rate, late_rate=late_rate, district=district,
        )  # fmt: skip
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
