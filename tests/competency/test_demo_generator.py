"""The demo generator as a pure function: deterministic, valid xAPI, the simulation it promises (precedes order,
school days, BKT), the delivery faults, and views that recover the hidden state; and its command line."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from click.testing import CliRunner

from proficio_cli import main
from proficio_cli._demo import Demo, DemoSettings, generate_demo, practised_competencies
from proficio_ingest._validation import validate_statement
from proficio_projector.competency import (
    BktParameters,
    Level,
    MasteryPolicy,
    Method,
    Observation,
    competencies_named,
    normalized_result,
    parse_package,
    progress,
    statement_time_us,
)
from tests.competency.demo_support import VOIDED, Recovery, expected_evidence, recovery

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "graduate-profile.case.json"
PACKAGE = EXAMPLE.read_bytes()


def demo(**settings: Any) -> Demo:
    return generate_demo(PACKAGE, DemoSettings(**settings))


def timestamp_us(statement: dict[str, Any]) -> int:
    return statement_time_us(statement, 0)


def answered(generated: Demo) -> list[dict[str, Any]]:
    return [s for s in generated.statements if s["verb"]["id"] != VOIDED]


def test_the_same_seed_gives_byte_identical_output_and_another_seed_other_output() -> None:
    first, again, other = demo(learners=8, seed=5), demo(learners=8, seed=5), demo(learners=8, seed=6)
    for output in (Demo.statements_ndjson, Demo.alignments_json, Demo.truth_json):
        assert output(first) == output(again)
    assert first.statements_ndjson() != other.statements_ndjson()
    assert first.truth_json() != other.truth_json()


def test_a_learner_does_not_depend_on_how_many_are_simulated() -> None:
    few, more = demo(learners=3, seed=2), demo(learners=5, seed=2)
    assert more.truth[:3] == few.truth
    assert more.alignments == few.alignments
    first_three = {f"learner-00{n}" for n in (1, 2, 3)}
    assert [s for s in more.statements if s["actor"]["account"]["name"] in first_three] == [
        s for s in few.statements if s["actor"]["account"]["name"] in first_three
    ]


@pytest.mark.parametrize("version", ["1.0.3", "2.0.0"])
def test_every_statement_is_valid_xapi(version: Literal["1.0.3", "2.0.0"]) -> None:
    for statement in demo(learners=4).statements:
        validate_statement(copy.deepcopy(statement), version=version)


def test_learners_walk_the_precedes_order() -> None:
    generated = demo(learners=10)
    relations = parse_package(PACKAGE).relations
    edges = [(r["origin"], r["destination"]) for r in relations if r["type"] == "precedes"]
    assert len(edges) == 9
    by_id = {s["id"]: s for s in generated.statements}
    times = {
        pair: [timestamp_us(by_id[sid]) for sid, _ in items] for pair, items in expected_evidence(generated).items()
    }
    for truth in generated.truth:
        for before, after in edges:
            assert max(times[(truth.learner, before)]) < min(times[(truth.learner, after)])
    # Learners draw among the ready competencies: not everyone takes them in the same order.
    competencies = [c["uri"] for c in practised_competencies(generated.framework)]
    firsts = {min(competencies, key=lambda c: times[(truth.learner, c)][0]) for truth in generated.truth}
    assert len(firsts) > 1


def test_attempts_fall_on_school_days_in_school_hours() -> None:
    generated = demo(learners=10, start=datetime(2026, 9, 5).date())  # a Saturday: school starts on Monday the 7th
    moments = [datetime.fromisoformat(str(s["timestamp"]).replace("Z", "+00:00")) for s in answered(generated)]
    assert min(moments).date().isoformat() == "2026-09-07"
    assert all(m.tzinfo == UTC and m.weekday() < 5 and 8 <= m.hour < 15 for m in moments)


def test_an_answer_is_correct_exactly_when_its_score_reaches_the_mastery_level() -> None:
    results = [s["result"] for s in answered(demo(learners=6))]
    assert all(r["score"]["scaled"] == r["score"]["raw"] / 20 for r in results)
    assert all(r["success"] == (Decimal(str(r["score"]["scaled"])) * 4 >= 3) for r in results)
    assert {r["success"] for r in results} == {True, False}


def test_the_truth_accounts_for_every_piece_of_evidence() -> None:
    generated = demo(learners=10)
    evidence = expected_evidence(generated)
    pairs = [(t.learner, c) for t in generated.truth for c in t.competencies]
    assert len(pairs) == 10 * 15
    for learner, truth in pairs:
        assert len(evidence[(learner, truth.competency)]) == truth.attempts
        assert 3 <= truth.attempts <= 12
        assert truth.mastered == (truth.mastered_at_us is not None)  # BKT never forgets
    # Some items name their competency, the others only through the alignment map, for every competency.
    aligned = {a["activity"] for a in generated.alignments}
    for competency in practised_competencies(generated.framework):
        items = [s for s in answered(generated) if f"/{competency['code']}/" in s["object"]["id"]]
        tagged = [s for s in items if competencies_named(s)]
        untagged = [s for s in items if not competencies_named(s)]
        assert tagged
        assert untagged
        assert all(s["object"]["id"] in aligned for s in untagged)
        assert not any(s["object"]["id"] in aligned for s in tagged)


def test_voids_retries_and_late_deliveries() -> None:
    generated = demo(learners=10)
    position = {id(s): i for i, s in enumerate(generated.statements)}
    first_seen: dict[str, int] = {}
    for i, statement in enumerate(generated.statements):
        first_seen.setdefault(str(statement["id"]), i)
    voiding = [s for s in generated.statements if s["verb"]["id"] == VOIDED]
    assert voiding
    for statement in voiding:
        assert first_seen[statement["object"]["id"]] < position[id(statement)]  # the target was delivered first
    retried = [i for i, s in enumerate(generated.statements) if first_seen[str(s["id"])] != i]
    assert retried
    for i in retried:  # the same id, the same content, later
        assert generated.statements[i] == generated.statements[first_seen[str(generated.statements[i]["id"])]]
    assert late_deliveries(generated) > 0

    clean = demo(learners=10, void_rate=0, retry_rate=0, late_rate=0)
    assert not [s for s in clean.statements if s["verb"]["id"] == VOIDED]
    assert len({s["id"] for s in clean.statements}) == len(clean.statements)
    assert late_deliveries(clean) == 0


def late_deliveries(generated: Demo) -> int:
    """Statements delivered after a statement of the same learner with a later timestamp."""
    late = 0
    latest: dict[str, int] = {}
    for statement in answered(generated):
        learner = statement["actor"]["account"]["name"]
        late += timestamp_us(statement) < latest.get(learner, 0)
        latest[learner] = max(latest.get(learner, 0), timestamp_us(statement))
    return late


def test_the_hidden_state_follows_the_bkt_parameters() -> None:
    known = demo(learners=3, default_bkt=BktParameters(prior=1.0, slip=0.0))
    evidence = expected_evidence(known)
    by_id = {s["id"]: s for s in known.statements}
    for learner in known.truth:
        for truth in learner.competencies:
            assert truth.mastered
            assert truth.attempts == 3  # three correct answers in a row, and the tutor moves on
            first_attempt = evidence[(learner.learner, truth.competency)][0][0]
            assert truth.mastered_at_us == timestamp_us(by_id[first_attempt])

    never = demo(learners=3, default_bkt=BktParameters(prior=0.0, learn=0.0, guess=0.0))
    assert all(not c.mastered and c.attempts == 12 for t in never.truth for c in t.competencies)
    assert all(points < 3 for items in expected_evidence(never).values() for _, points in items)

    math_1 = practised_competencies(never.framework)[0]["uri"]
    mixed = demo(learners=3, default_bkt=BktParameters(prior=0.0, learn=0.0, guess=0.0),
                 bkt={math_1: BktParameters(prior=1.0)})  # fmt: skip
    assert [c.competency for c in mixed.truth[0].competencies if c.mastered] == [math_1]


def views(generated: Demo, policy: MasteryPolicy) -> dict[str, dict[str, tuple[bool, int | None]]]:
    """The progress each learner's statements give under a policy, computed as the read API does."""
    scale = [Level(Decimal(v["points"]), v["label"], v["mastery"]) for v in generated.framework.data["scale"]]
    alignments: dict[str, dict[str, Decimal]] = {}
    for a in generated.alignments:
        alignments.setdefault(a["activity"], {})[a["competency"]] = Decimal(a["weight"])
    voided = {str(s["object"]["id"]) for s in generated.statements if s["verb"]["id"] == VOIDED}
    observations: dict[str, dict[str, Observation]] = {}
    for stored, statement in enumerate(generated.statements):
        value = normalized_result(statement)
        if value is None:
            continue
        observations.setdefault(statement["actor"]["account"]["name"], {})[str(statement["id"])] = Observation(
            str(statement["id"]), str(statement["object"]["id"]), tuple(competencies_named(statement)), *value,
            timestamp_us(statement), stored,
        )  # fmt: skip
    return {
        learner: {c: (p.mastered, p.mastered_at_us) for c, p in progress(
            found.values(), voided, policy, alignments=alignments, scale=scale).items()}
        for learner, found in observations.items()
    }  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("method", [Method.DECAYING_AVERAGE, Method.BKT])
def test_views_recover_the_hidden_state_within_the_stated_tolerance(seed: int, method: Method) -> None:
    generated = demo(learners=30, seed=seed)
    found: Recovery = recovery(generated.truth, views(generated, MasteryPolicy(method)))
    assert found.pairs == 450
    assert found.meets_tolerance(), str(found)


def test_views_that_ignore_the_hidden_state_do_not_meet_the_tolerance() -> None:
    # The tolerance has teeth: calling everything mastered at the first attempt, or the plain average, fails it.
    generated = demo(learners=30)
    everything = {t.learner: {c.competency: (True, c.mastered_at_us or 0) for c in t.competencies}
                  for t in generated.truth}  # fmt: skip
    assert not recovery(generated.truth, everything).meets_tolerance()
    assert not recovery(generated.truth, views(generated, MasteryPolicy(Method.AVERAGE))).meets_tolerance()


def test_settings_out_of_range_are_refused() -> None:
    for bad, message in (
        ({"learners": 0}, "learners must be at least 1"),
        ({"void_rate": 1.5}, "void_rate must be between 0 and 1"),
        ({"streak": 13}, "streak <= max_attempts"),
        ({"default_bkt": BktParameters(learn=2.0)}, "must lie between 0 and 1"),
    ):
        with pytest.raises(ValueError, match=message):
            DemoSettings(**bad)
    package = orjson.loads(PACKAGE)
    package["CFItems"], package["CFAssociations"] = [], []
    with pytest.raises(ValueError, match="no items to practise"):
        generate_demo(orjson.dumps(package))


def test_the_command_writes_exactly_what_the_generator_gives(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "generate", "--learners", "4", "--seed", "9", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "statements for 4 learners" in result.output
    generated = demo(learners=4, seed=9)
    assert (tmp_path / "statements.ndjson").read_bytes() == generated.statements_ndjson()
    assert (tmp_path / "alignments.json").read_bytes() == generated.alignments_json()
    assert (tmp_path / "truth.json").read_bytes() == generated.truth_json()
    truth = orjson.loads((tmp_path / "truth.json").read_bytes())
    assert [learner["learner"] for learner in truth["learners"]] == [f"learner-00{n}" for n in range(1, 5)]


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        ([], 2, "give --out DIR to write the demo data, --post URL to send it, or both"),
        (["--post", "http://127.0.0.1:9/xapi/"], 2, "--post needs --key and --secret"),
        (["--post", "ftp://example.org", "--key", "k", "--secret", "s"], 2, "is not an http(s) address"),
        (["--learners", "0", "--out", "OUT"], 2, "0 is not in the range 1<=x<=10000"),
        (["--void-rate", "2", "--out", "OUT"], 2, "2.0 is not in the range 0<=x<=1"),
        (["--start", "2026-13-01", "--out", "OUT"], 2, "does not match the format '%Y-%m-%d'"),
        (["--framework", "MISSING", "--out", "OUT"], 1, "cannot read"),
        (["--framework", "NOT_JSON", "--out", "OUT"], 1, "the package is not JSON"),
        (["--out", "NOT_JSON"], 2, "is a file"),
        (["--post", "http://127.0.0.1:9/xapi/", "--key", "k", "--secret", "s"], 1, "cannot reach"),
    ],
)
def test_bad_input_is_a_clear_error_not_a_traceback(
    tmp_path: Path, arguments: list[str], code: int, message: str
) -> None:
    (tmp_path / "not.json").write_text("hello")
    paths = {"OUT": str(tmp_path / "out"), "MISSING": str(tmp_path / "missing.json"),
             "NOT_JSON": str(tmp_path / "not.json")}  # fmt: skip
    arguments = [
        paths.get(a, a) for a in ["demo", "generate", "--learners", "2", "--data-dir", str(tmp_path), *arguments]
    ]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
