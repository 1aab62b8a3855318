"""The competency domain: CASE frameworks, mastery methods (alignments and the progress view to come)."""

from ._case import DEFAULT_SCALE, Framework, FrameworkError, Level, parse_package
from ._evidence import (
    COMPETENCY_TYPES,
    Evidence,
    competencies_named,
    evidence_from_statement,
    normalized_result,
    statement_time_us,
)
from ._frameworks import FRAMEWORK_IMPORTED, Frameworks, ImportResult, framework_stream, import_framework, read_source
from ._mastery import (
    BktParameters,
    MasteryPolicy,
    Method,
    bkt_next_correct,
    bkt_probability,
    is_mastered,
    mastery_score,
    power_law,
    rescale,
    round_half_up,
)
from ._progress import CompetencyEvidence, Observation, Progress, evidence_of, level_for, progress

__all__ = [
    "COMPETENCY_TYPES",
    "DEFAULT_SCALE",
    "FRAMEWORK_IMPORTED",
    "BktParameters",
    "CompetencyEvidence",
    "Evidence",
    "Framework",
    "FrameworkError",
    "Frameworks",
    "ImportResult",
    "Level",
    "MasteryPolicy",
    "Method",
    "Observation",
    "Progress",
    "bkt_next_correct",
    "bkt_probability",
    "competencies_named",
    "evidence_from_statement",
    "evidence_of",
    "framework_stream",
    "import_framework",
    "is_mastered",
    "level_for",
    "mastery_score",
    "normalized_result",
    "parse_package",
    "power_law",
    "progress",
    "read_source",
    "rescale",
    "round_half_up",
    "statement_time_us",
]
