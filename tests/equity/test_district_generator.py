"""The demo generator's district as a pure function: deterministic; a OneRoster package whose students are the
statements' actors, with their groups; a pacing plan over the framework's leaf competencies; the planted gap,
stalled and disengaged learners and small groups present in the statements and in the truth; and its command
line."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from proficio_cli import main
from proficio_cli._demo import Demo, DemoSettings, generate_demo, practised_competencies
from proficio_cli._demo_district import (
    DISENGAGED,
    SMALL_GROUP_SIZE,
    STALLED,
    DistrictSettings,
    school_days,
)
from proficio_projector.competency import competencies_named, parse_package, statement_time_us
from proficio_projector.roster import FACTORS, group_values, read_package
from tests.equity.district_demo import LEARNERS, PACKAGE, SEED, district_demo, district_settings

VOIDED = "http://adlnet.gov/expapi/verbs/voided"


def answered(demo: Demo, email: str) -> list[dict[str, Any]]:
    """The learner's answers that no delivered statement voids, in timestamp order."""
    voided = {s["object"]["id"] for s in demo.statements if s["verb"]["id"] == VOIDED}
    mine = [s for s in demo.statements if s["actor"].get("mbox") == f"mailto:{email}" and s["id"] not in voided]
    return sorted({s["id"]: s for s in mine}.values(), key=lambda s: statement_time_us(s, 0))


def day_of(statement: dict[str, Any]) -> date:
    return datetime.fromtimestamp(statement_time_us(statement, 0) / 1e6, UTC).date()


def test_the_same_seed_gives_the_same_district_byte_for_byte() -> None:
    first, again = district_demo(), generate_demo(PACKAGE, district_settings())
    other = generate_demo(PACKAGE, DemoSettings(learners=LEARNERS, seed=SEED + 1, district=DistrictSettings()))
    for output in (Demo.statements_ndjson, Demo.truth_json, Demo.plan_json, Demo.alignments_json):
        assert output(first) == output(again)
    assert first.district is not None and again.district is not None and other.district is not None  # noqa: PT018
    assert first.district.roster == again.district.roster
    assert first.statements_ndjson() != other.statements_ndjson()
    assert first.district.roster != other.district.roster


def test_the_roster_holds_the_statements_actors_with_their_groups_and_the_plan_the_leaf_competencies(
    tmp_path: Path,
) -> None:
    demo = district_demo()
    assert demo.district is not None
    for name, content in demo.district.roster.items():
        (tmp_path / name).write_bytes(content)
    package = read_package(tmp_path)  # a valid OneRoster 1.1 package, or this raises naming the problems
    assert package.demographics is not None
    students = {u.sourced_id: u for u in package.users.values() if u.role == "student"}
    actors = {s["actor"]["mbox"] for s in demo.statements if "mbox" in s["actor"]}
    assert {f"mailto:{u.email}" for u in students.values()} == actors
    assert len(students) == LEARNERS
    for truth in demo.truth:
        assert truth.district is not None
        profile = truth.district.profile
        user = students[profile.learner]
        assert (user.email, user.orgs) == (profile.email, (profile.school,))
        assert group_values(package.demographics[profile.learner], FACTORS) == dict(profile.groups)
    schools = [u.orgs[0] for u in students.values()]
    assert (schools.count("school-1"), schools.count("school-2")) == (84, 56)  # 3 : 2
    enrolled = {(e.user, e.class_id) for e in package.enrollments.values()}
    assert enrolled == {(u.sourced_id, f"class-{u.orgs[0]}") for u in students.values()}

    plan = demo.district.plan
    framework = parse_package(PACKAGE)
    leaves = [c["uri"] for c in practised_competencies(framework)]
    listed = [c["uri"] for c in plan["competencies"]]
    assert sorted(listed) == sorted(leaves)
    assert {c["tier"] for c in plan["competencies"]} == {"must"}
    weeks = [c["week"] for c in plan["competencies"]]
    assert weeks == sorted(weeks)
    assert (weeks[0], weeks[-1]) == (2, 18)
    position = {uri: n for n, uri in enumerate(listed)}
    for relation in framework.relations:  # planned in an order that respects precedes
        if relation["type"] == "precedes" and relation["origin"] in position:
            assert position[relation["origin"]] < position[relation["destination"]]
    assert (plan["start"], plan["target"]) == ("2026-09-08", "2027-01-08")
    assert plan["sections"] == ["class-school-1", "class-school-2"]


def test_what_is_planted_shows_in_the_statements_and_the_truth() -> None:
    demo = district_demo()
    assert demo.district is not None
    as_of = demo.district.as_of
    assert as_of == date(2026, 11, 6)  # the Friday of week 9 of 18
    assert max(day_of(s) for s in demo.statements) <= as_of  # what the LRS had received by then

    stalled = [t for t in demo.truth if t.district and t.district.profile.planted == STALLED]
    disengaged = [t for t in demo.truth if t.district and t.district.profile.planted == DISENGAGED]
    assert (len(stalled), len(disengaged)) == (11, 8)
    for truth in stalled:
        assert truth.district is not None
        assert truth.district.stuck_on is not None and truth.district.stuck_since_us is not None  # noqa: PT018
        # Stuck on the first competency she does not know yet on or after the planted day.
        stuck_since = datetime.fromtimestamp(truth.district.stuck_since_us / 1e6, UTC).date()
        assert truth.district.profile.stall_from is not None
        assert stuck_since >= truth.district.profile.stall_from
        since = [s for s in answered(demo, truth.district.profile.email)
                 if statement_time_us(s, 0) >= truth.district.stuck_since_us]  # fmt: skip
        # From then on, only the one competency (named, or through the alignment map), and nothing gained on it.
        aligned = {a["activity"]: a["competency"] for a in demo.alignments}
        assert {c for s in since for c in competencies_named(s) or [aligned[s["object"]["id"]]]} == {
            truth.district.stuck_on
        }
        failed = [s for s in since if not s["result"]["success"]]
        assert len(failed) >= 0.95 * len(since)  # the rest: mis-recorded scores whose voiding comes later
        assert max(day_of(s) for s in since) >= as_of - timedelta(days=7)  # she keeps coming
        assert not next(c for c in truth.competencies if c.competency == truth.district.stuck_on).mastered
    # By the judging day the definition holds on their true mastery dates for all but a learner or two (who skipped
    # two of the last three weeks).
    assert sum(t.district.pace.stalled for t in stalled if t.district is not None) >= 9
    for truth in disengaged:
        assert truth.district is not None and truth.district.last_attempt_us is not None  # noqa: PT018
        last = datetime.fromtimestamp(truth.district.last_attempt_us / 1e6, UTC).date()
        assert max(day_of(s) for s in answered(demo, truth.district.profile.email)) == last
        assert school_days(last, as_of) >= 10
        assert truth.district.pace.disengaged

    # Each school's small group: its first three learners, of a race no one else in the district has.
    for level, value in (("school:school-1", "american_indian_or_alaska_native"),
                         ("school:school-2", "native_hawaiian_or_other_pacific_islander")):  # fmt: skip
        members = [t.learner for t in demo.truth if t.district and t.district.profile.groups["race_ethnicity"] == value]
        assert len(members) == SMALL_GROUP_SIZE
        assert demo.district.truth.levels[level]["race_ethnicity"][value] == SMALL_GROUP_SIZE
        assert (level, "race_ethnicity", value) in expected_cells(demo)
        assert ("district", "race_ethnicity", value) in expected_cells(demo)

    # The planted gap is in the truth, and it is the plant that makes it.
    gaps = demo.district.truth.gaps["english_learner"]
    assert gaps["true"].pct_mastered - gaps["false"].pct_mastered <= -10
    assert gaps["true"].velocity < gaps["false"].velocity
    assert gaps["true"].on_track < gaps["false"].on_track
    level = generate_demo(PACKAGE, district_settings(gap_learn=1.0, gap_skip_week_rate=0.1))
    assert level.district is not None
    even = level.district.truth.gaps["english_learner"]
    assert even["true"].pct_mastered - even["false"].pct_mastered > -10
    document = orjson.loads(demo.truth_json())["district"]
    assert document["planted"]["gap"] == {"factor": "english_learner", "value": "true", "learn_factor": 0.7,
                                          "skip_week_rate": 0.3, "others_skip_week_rate": 0.1}  # fmt: skip
    assert [s["learner"] for s in document["planted"][STALLED]] == [t.learner for t in stalled]


def expected_cells(demo: Demo) -> list[tuple[str, str, str]]:
    document = orjson.loads(demo.truth_json())["district"]["expected_primary_suppression"]
    return [tuple(cell) for cell in document["cells"]]


def test_the_command_writes_the_district(tmp_path: Path) -> None:
    arguments = ["demo", "generate", "--learners", "20", "--seed", "3", "--schools", "2", "--weeks", "12"]
    result = CliRunner().invoke(main, [*arguments, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "district of 2 schools" in result.output
    generated = generate_demo(PACKAGE, DemoSettings(learners=20, seed=3, district=DistrictSettings(weeks=12)))
    assert generated.district is not None
    assert (tmp_path / "statements.ndjson").read_bytes() == generated.statements_ndjson()
    assert (tmp_path / "truth.json").read_bytes() == generated.truth_json()
    assert (tmp_path / "pacing-plan.json").read_bytes() == generated.plan_json()
    for name, content in generated.district.roster.items():
        assert (tmp_path / "oneroster" / name).read_bytes() == content


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--weeks", "12"], "--weeks: options of a district; give --schools N too"),
        (["--schools", "2", "--gap-group", "height=tall"], "is not FACTOR=VALUE"),
        (["--schools", "2", "--gap-group", "gender=x"], "is not FACTOR=VALUE"),
        (["--schools", "3"], "3 schools need at least 24 learners, not 20"),
        (["--schools", "1", "--as-of", "2026-09-01"], "must fall within the course"),
        (["--schools", "1", "--as-of", "2026-09-25"], "needs a judging day in week 6 or later"),
        (["--schools", "1", "--stalled-share", "0.4", "--disengaged-share", "0.2"], "add up to at most 0.5"),
    ],
)
def test_district_options_out_of_range_are_a_clear_error(tmp_path: Path, arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["demo", "generate", "--learners", "20", "--out", str(tmp_path), *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output
