"""Auditors: a learner's full history in log order, and every view of hers as of any moment, by replaying
the log; a diff between two moments shows which evidence changed which conclusion; and the record of every
access to her data."""

from ._access import RECORD_ACCESSED, AccessRecorder, access_records, access_stream
from ._replay import AsOf, diff, learner_events, summary, views_as_of

__all__ = [
    "RECORD_ACCESSED",
    "AccessRecorder",
    "AsOf",
    "access_records",
    "access_stream",
    "diff",
    "learner_events",
    "summary",
    "views_as_of",
]
