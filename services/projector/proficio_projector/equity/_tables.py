"""The equity tables (created by the projector's migration ``projector_0002``)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: Each learner's standing per scope on the day of the last refresh (see ``_facts``).
equity_facts = sa.Table(
    "equity_facts",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("learner", sa.Text, primary_key=True),
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("pct_mastered", sa.Text, nullable=False),
    sa.Column("mastered", sa.Boolean, nullable=False),
    sa.Column("on_track", sa.Boolean, nullable=True),
    sa.Column("stalled", sa.Boolean, nullable=False),
    sa.Column("velocity", sa.Text, nullable=True),
    sa.Column("as_of", sa.Text, nullable=False),
)

#: Every cell as each audience may see it: suppression is applied here, when the view is built.
equity_cells = sa.Table(
    "equity_cells",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("audience", sa.Text, primary_key=True),
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("level", sa.Text, primary_key=True),
    sa.Column("factor", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, primary_key=True),
    sa.Column("n", sa.Integer, nullable=True),
    sa.Column("hidden", sa.Text, nullable=True),
    sa.Column("label", sa.Text, nullable=True),
    sa.Column("metrics", sa.Text, nullable=False),  # JSON: metric -> {value, count, ci95, hidden, label}
    sa.Column("as_of", sa.Text, nullable=False),
)

#: How far each tenant's facts and cells are refreshed: the day, and marks of the views they were built from.
equity_state = sa.Table(
    "equity_state",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("as_of", sa.Text, nullable=False),
    sa.Column("evidence_mark", sa.BigInteger, nullable=False),
    sa.Column("facts_mark", sa.Text, nullable=False),
    sa.Column("cells_mark", sa.Text, nullable=False),
    sa.Column("learners", sa.Integer, nullable=False),
    sa.Column("refreshed_us", sa.BigInteger, nullable=False),
)
