"""Auditors: a learner's full history in log order, and every view of hers as of any moment, by replaying
the log; a diff between two moments shows which evidence changed which conclusion."""

from ._replay import AsOf, diff, learner_events, summary, views_as_of

__all__ = ["AsOf", "diff", "learner_events", "summary", "views_as_of"]
