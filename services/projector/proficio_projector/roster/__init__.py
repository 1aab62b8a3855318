"""Rosters and student groups from the SIS: OneRoster 1.1 CSV packages imported as events, and the ``roster``
and ``student_groups`` views (the latter protected).

>>> package = read_package("examples/oneroster")              # RosterError names every problem
>>> await import_roster(log, "district-7", package, learner_ids=enroll_learner_ids, effective=date.today())
"""

from ._groups import (
    FACTORS,
    GROUP_MEMBERSHIP_CHANGED,
    Membership,
    group_values,
    groups_as_of,
    groups_stream,
    membership_changes,
    race_ethnicity,
)
from ._import import (
    CLASSES_STREAM,
    ENROLLMENTS_STREAM,
    LEARNERS_STREAM,
    ORGS_STREAM,
    ActorMapping,
    ActorSource,
    RosterImportResult,
    import_roster,
    student_enrollment_key,
)
from ._oneroster import EXTENSION_COLUMNS, Demographics, Problem, RosterError, RosterPackage, read_package
from ._views import (
    CLASS_REMOVED,
    CLASS_SET,
    ENROLLMENT_DROPPED,
    ENROLLMENT_SET,
    LEARNER_REMOVED,
    LEARNER_SET,
    ORG_REMOVED,
    ORG_SET,
    PROTECTED_VIEWS,
    Roster,
    StudentGroups,
)

__all__ = [
    "CLASSES_STREAM",
    "CLASS_REMOVED",
    "CLASS_SET",
    "ENROLLMENTS_STREAM",
    "ENROLLMENT_DROPPED",
    "ENROLLMENT_SET",
    "EXTENSION_COLUMNS",
    "FACTORS",
    "GROUP_MEMBERSHIP_CHANGED",
    "LEARNERS_STREAM",
    "LEARNER_REMOVED",
    "LEARNER_SET",
    "ORGS_STREAM",
    "ORG_REMOVED",
    "ORG_SET",
    "PROTECTED_VIEWS",
    "ActorMapping",
    "ActorSource",
    "Demographics",
    "Membership",
    "Problem",
    "Roster",
    "RosterError",
    "RosterImportResult",
    "RosterPackage",
    "StudentGroups",
    "group_values",
    "groups_as_of",
    "groups_stream",
    "import_roster",
    "membership_changes",
    "race_ethnicity",
    "read_package",
    "student_enrollment_key",
]
