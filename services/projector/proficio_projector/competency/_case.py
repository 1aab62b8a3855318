"""IMS/1EdTech CASE 1.0 packages: parsed, checked and reduced to what Proficio keeps of a framework.

A package is ``{CFDocument, CFItems[], CFAssociations[], CFDefinitions{}, CFRubrics[]}``. Checks beyond the
schema: identifiers and URIs are unique, every association's ends are items of the package or its
document (or, for ``exactMatchOf``/``isRelatedTo``/``replacedBy``, may point outside it), an item has at
most one parent, ``isChildOf`` has no cycles, and a rubric's levels have distinct scores. Any problem
is a :class:`FrameworkError` naming where it is; nothing is imported then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Association types whose destination may lie outside the package (another framework, a resource).
OUTWARD = frozenset({"exactMatchOf", "isRelatedTo", "replacedBy", "exemplar", "isPeerOf"})
MAX_PACKAGE_BYTES = 50 * 1024 * 1024


class FrameworkError(ValueError):
    """A package that cannot be imported, and why."""


class _Model(BaseModel):
    # CASE packages carry many optional fields Proficio does not use: accepted and ignored.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class LinkURI(_Model):
    title: str = ""
    identifier: str = Field(min_length=1)
    uri: str = Field(min_length=1)


class CFDocument(_Model):
    identifier: str = Field(min_length=1)
    uri: str = Field(min_length=1)
    creator: str = Field(min_length=1)
    title: str = Field(min_length=1)
    lastChangeDateTime: str = Field(min_length=1)
    version: str | None = None
    publisher: str | None = None
    language: str | None = None
    adoptionStatus: str | None = None


class CFItem(_Model):
    identifier: str = Field(min_length=1)
    fullStatement: str = Field(min_length=1)
    uri: str = Field(min_length=1)
    lastChangeDateTime: str = Field(min_length=1)
    humanCodingScheme: str | None = None
    abbreviatedStatement: str | None = None
    CFItemType: str | None = None
    listEnumeration: str | None = None
    educationLevel: list[str] = Field(default_factory=list)


class CFAssociation(_Model):
    identifier: str = Field(min_length=1)
    associationType: Literal[
        "isChildOf", "isPeerOf", "isPartOf", "exactMatchOf", "precedes", "isRelatedTo", "replacedBy", "exemplar",
        "hasSkillLevel",
    ]  # fmt: skip
    uri: str = Field(min_length=1)
    originNodeURI: LinkURI
    destinationNodeURI: LinkURI
    lastChangeDateTime: str = Field(min_length=1)
    sequenceNumber: int | None = None


class CFRubricCriterionLevel(_Model):
    identifier: str = Field(min_length=1)
    uri: str = Field(min_length=1)
    lastChangeDateTime: str = Field(min_length=1)
    score: float | None = None
    quality: str | None = None
    description: str | None = None
    position: int | None = None


class CFRubricCriterion(_Model):
    identifier: str = Field(min_length=1)
    uri: str = Field(min_length=1)
    lastChangeDateTime: str = Field(min_length=1)
    CFItemURI: LinkURI | None = None
    weight: float | None = None
    position: int | None = None
    CFRubricCriterionLevels: list[CFRubricCriterionLevel] = Field(default_factory=list)


class CFRubric(_Model):
    identifier: str = Field(min_length=1)
    uri: str = Field(min_length=1)
    lastChangeDateTime: str = Field(min_length=1)
    title: str | None = None
    CFRubricCriteria: list[CFRubricCriterion] = Field(default_factory=list)


class CFPackage(_Model):
    CFDocument: CFDocument
    CFItems: list[CFItem] = Field(default_factory=list)
    CFAssociations: list[CFAssociation] = Field(default_factory=list)
    CFRubrics: list[CFRubric] = Field(default_factory=list)


@dataclass(frozen=True)
class Level:
    points: Decimal
    label: str
    mastery: bool


@dataclass(frozen=True)
class Framework:
    """What Proficio keeps of a package: the JSON-able ``data`` is the event's payload."""

    identifier: str
    uri: str
    title: str
    data: dict[str, Any]

    @property
    def competencies(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.data["competencies"]
        return items

    @property
    def relations(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.data["relations"]
        return found


def parse_package(raw: bytes) -> Framework:
    """Parse and check a CASE 1.0 package (JSON bytes)."""
    if len(raw) > MAX_PACKAGE_BYTES:
        raise FrameworkError(f"the package is larger than {MAX_PACKAGE_BYTES // (1024 * 1024)} MiB")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FrameworkError(f"the package is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise FrameworkError("a CASE package is a JSON object with CFDocument, CFItems and CFAssociations")
    try:
        package = CFPackage.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _path(first["loc"], document)
        raise FrameworkError(f"{where}: {first['msg']}" + (f" ({exc.error_count()} problems in all)"
                                                          if exc.error_count() > 1 else "")) from None  # fmt: skip
    return _reduce(package)


def _path(location: Sequence[Any], document: Any) -> str:
    """``CFItems[3] (7.NS.A.1).fullStatement``: the JSON path, with the item's code where it has one."""
    parts: list[str] = []
    node = document
    for step in location:
        if isinstance(step, int):
            label = f"[{step}]"
            if isinstance(node, list) and step < len(node) and isinstance(node[step], dict):
                code = node[step].get("humanCodingScheme") or node[step].get("identifier")
                if isinstance(code, str) and code:
                    label += f" ({code})"
            parts.append(label)
        else:
            parts.append(("." if parts else "") + str(step))
        node = node[step] if isinstance(node, dict | list) and _has(node, step) else None
    return "".join(parts) or "the package"


def _has(node: Any, step: Any) -> bool:
    if isinstance(node, dict):
        return step in node
    return isinstance(step, int) and 0 <= step < len(node)


def _unique(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise FrameworkError(f"{what} {value!r} appears twice")
        seen.add(value)


def _reduce(package: CFPackage) -> Framework:
    doc = package.CFDocument
    items = package.CFItems
    _unique([doc.identifier, *(i.identifier for i in items)], "the identifier")
    _unique([doc.uri, *(i.uri for i in items)], "the uri")
    _unique([a.identifier for a in package.CFAssociations], "the association identifier")
    by_identifier = {i.identifier: i for i in items}
    by_uri = {i.uri: i for i in items}

    def resolve(link: LinkURI) -> str | None:
        """The item's uri, the document's uri, or None if the link leads outside the package."""
        if link.identifier == doc.identifier or link.uri == doc.uri:
            return doc.uri
        item = by_identifier.get(link.identifier) or by_uri.get(link.uri)
        return item.uri if item is not None else None

    parents: dict[str, str] = {}
    relations: list[dict[str, Any]] = []
    for index, association in enumerate(package.CFAssociations):
        where = f"CFAssociations[{index}] ({association.associationType})"
        origin = resolve(association.originNodeURI)
        destination = resolve(association.destinationNodeURI)
        if origin is None:
            raise FrameworkError(f"{where}: originNodeURI {association.originNodeURI.uri!r} is not in the package")
        if destination is None and association.associationType not in OUTWARD:
            raise FrameworkError(
                f"{where}: destinationNodeURI {association.destinationNodeURI.uri!r} is not in the package"
            )
        if association.associationType == "isChildOf":
            if origin == doc.uri:
                raise FrameworkError(f"{where}: the document cannot be a child")
            if origin in parents and parents[origin] != destination:
                raise FrameworkError(f"{where}: {origin!r} has two parents ({parents[origin]!r} and {destination!r})")
            assert destination is not None
            parents[origin] = destination
        relations.append(
            {
                "type": association.associationType,
                "origin": origin,
                "destination": destination or association.destinationNodeURI.uri,
                "sequence": association.sequenceNumber,
            }
        )
    for start in parents:  # isChildOf must form a tree under the document
        seen = {start}
        node = parents.get(start)
        while node is not None and node != doc.uri:
            if node in seen:
                raise FrameworkError(f"isChildOf forms a cycle through {node!r}")
            seen.add(node)
            node = parents.get(node)
    sequence = {r["origin"]: r["sequence"] for r in relations if r["type"] == "isChildOf"}
    competencies = [
        {
            "uri": item.uri,
            "identifier": item.identifier,
            "code": item.humanCodingScheme,
            "statement": item.fullStatement,
            "short": item.abbreviatedStatement,
            "type": item.CFItemType,
            "education_level": item.educationLevel,
            "parent": None if parents.get(item.uri) in (None, doc.uri) else parents[item.uri],
            "sequence": sequence.get(item.uri),
        }
        for item in items
    ]
    return Framework(
        doc.identifier,
        doc.uri,
        doc.title,
        {
            "identifier": doc.identifier,
            "uri": doc.uri,
            "title": doc.title,
            "creator": doc.creator,
            "version": doc.version,
            "last_change": doc.lastChangeDateTime,
            "competencies": competencies,
            "relations": relations,
            "scale": [level_json(level) for level in _scale(package)],
        },
    )


def level_json(level: Level) -> dict[str, Any]:
    return {"points": str(level.points), "label": level.label, "mastery": level.mastery}


#: The scale when a package has no rubric (the common 4-level one; mastery at 3).
DEFAULT_SCALE = (
    Level(Decimal(1), "Beginning", False),
    Level(Decimal(2), "Developing", False),
    Level(Decimal(3), "Proficient", True),
    Level(Decimal(4), "Advanced", True),
)


def _scale(package: CFPackage) -> tuple[Level, ...]:
    """The proficiency scale from the first rubric's first criterion with scored levels.

    A level counts as mastery from the one whose quality reads like proficiency (proficient, mastery,
    meets) upwards; without such a label, from the second-highest score.
    """
    for r, rubric in enumerate(package.CFRubrics):
        for c, criterion in enumerate(rubric.CFRubricCriteria):
            levels = [lv for lv in criterion.CFRubricCriterionLevels if lv.score is not None]
            if not levels:
                continue
            scores = [Decimal(str(lv.score)) for lv in levels]
            if len(set(scores)) != len(scores):
                raise FrameworkError(f"CFRubrics[{r}].CFRubricCriteria[{c}]: two levels have the same score")
            ordered = sorted(zip(scores, levels, strict=True), key=lambda pair: pair[0])
            words = ("proficien", "master", "meets")
            marks = [i for i, (_, lv) in enumerate(ordered) if any(w in (lv.quality or "").lower() for w in words)]
            first_mastery = marks[0] if marks else max(0, len(ordered) - 2)
            return tuple(
                Level(_plain(score), level.quality or f"Level {_plain(score)}", i >= first_mastery)
                for i, (score, level) in enumerate(ordered)
            )
    return DEFAULT_SCALE


def _plain(value: Decimal) -> Decimal:
    """3.0 -> 3, 2.50 -> 2.5, 10 -> 10 (normalize() alone would make it 1E+1)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()
