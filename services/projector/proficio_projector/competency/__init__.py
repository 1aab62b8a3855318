"""The competency domain: mastery methods (and, as issue 6 grows, frameworks, alignments and the progress view)."""

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

__all__ = [
    "BktParameters",
    "MasteryPolicy",
    "Method",
    "bkt_next_correct",
    "bkt_probability",
    "is_mastered",
    "mastery_score",
    "power_law",
    "rescale",
    "round_half_up",
]
