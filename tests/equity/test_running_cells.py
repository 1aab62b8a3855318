"""The equity cells kept up to date fact by fact (``RunningCells``) are the cells ``scope_tables`` builds from
the facts held, cell for cell and partition for partition, whatever was added and taken back on the way."""

from __future__ import annotations

import random
from decimal import Decimal

from proficio_projector.equity import CO, Fact, RunningCells, scope_tables, suppress

SCOPES = ("plan:p1", "plan:p2", "competency:https://c.example/1", "competency:https://c.example/2")


def random_fact(rng: random.Random, learner: str, scope: str) -> Fact:
    mastered = rng.random() < 0.4
    if scope.startswith("plan:"):
        return Fact(learner, scope, Decimal(rng.choice(["0.0", "12.5", "33.3", "50.0", "100.0"])), mastered,
                    rng.choice([True, False]), rng.random() < 0.2,
                    rng.choice([None, Decimal("0.50"), Decimal("1.00"), Decimal("1.25"), Decimal("2.00")]))  # fmt: skip
    return Fact(learner, scope, Decimal(100 if mastered else 0), mastered, None, rng.random() < 0.2, None)


def district(rng: random.Random, n: int) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    groups: dict[str, dict[str, str]] = {}
    schools: dict[str, list[str]] = {}
    for k in range(n):
        learner = f"l{k:03d}"
        if rng.random() < 0.9:
            groups[learner] = {"english_learner": rng.choice(["yes", "no"]), "gender": rng.choice(["f", "m", "x"])}
        if rng.random() < 0.95:
            schools[learner] = sorted(rng.sample(["s1", "s2", "s3"], rng.choice([1, 1, 2])))
    return groups, schools


def test_running_cells_equal_the_cells_built_from_all_the_facts() -> None:
    rng = random.Random(7)
    groups, schools = district(rng, 120)
    running = RunningCells(groups, schools)
    held: dict[tuple[str, str], Fact] = {}
    for round_ in range(6):
        for _ in range(150):  # new facts, changed ones (the old taken back), and facts that go away
            learner, scope = f"l{rng.randrange(120):03d}", rng.choice(SCOPES)
            old = held.pop((learner, scope), None)
            if old is not None:
                running.discard(old)
            if rng.random() < 0.85:
                new = held[(learner, scope)] = random_fact(rng, learner, scope)
                running.add(new)
        facts = list(held.values())
        rng.shuffle(facts)  # the order the facts come in does not matter to either
        expected = scope_tables(facts, groups, schools)
        assert running.tables() == expected, f"round {round_}"
        for found, built in zip(running.tables(), expected, strict=True):
            assert suppress(found.cells, found.partitions, CO) == suppress(built.cells, built.partitions, CO)
    assert any(c.medians.get("velocity") for t in expected for c in t.cells)  # medians were compared, not Nones


def test_facts_added_at_once_give_the_cells_added_one_by_one() -> None:
    rng = random.Random(11)
    groups, schools = district(rng, 200)
    facts = [random_fact(rng, f"l{k:03d}", scope) for k in range(200) for scope in SCOPES]
    one_by_one, at_once = RunningCells(groups, schools), RunningCells(groups, schools)
    for fact in facts:
        one_by_one.add(fact)
    at_once.add_all(facts)
    assert at_once.tables() == one_by_one.tables() == scope_tables(facts, groups, schools)


def test_cells_empty_again_when_every_fact_is_taken_back() -> None:
    rng = random.Random(3)
    groups, schools = district(rng, 20)
    running = RunningCells(groups, schools)
    facts = [random_fact(rng, f"l{k:03d}", scope) for k in range(20) for scope in SCOPES]
    for fact in facts:
        running.add(fact)
    assert len(running.tables()) == len(SCOPES)
    for fact in facts:
        running.discard(fact)
    assert running.tables() == []
