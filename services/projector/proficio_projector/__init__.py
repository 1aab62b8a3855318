"""Proficio's projectors: pure folds of the event log into views, the runtime that feeds them from the
SQL log or Kafka, the relay that publishes the log to Kafka, and the HTTP API that reads the views.

>>> await SqlProjector(log, LearnerActivity()).run(stop)        # embedded: tail the SQL log
>>> await Relay(log, "localhost:9092", "proficio.events").run(stop)
>>> await KafkaProjector(log, LearnerActivity(), "localhost:9092", "proficio.events").run(stop)
"""

from ._api import install, router
from ._apply import Applier, BatchOutcome
from ._learner_activity import LearnerActivity, default_projections
from ._model import Change, MemoryState, Projection, Put, Remove, Row, RowKey, RowRef, State, ViewIndex, ViewTable, fold
from ._runtime import (
    ProjectorStatus,
    RunnerSettings,
    SqlFoldGroup,
    SqlProjector,
    build,
    projection_named,
    recorded_at,
    replay_dead_letters,
    sql_projectors,
    status,
)
from ._settings import StreamSettings
from ._store import Generation, ViewStore, active_generation, ensure_active, list_generations, migrate_runtime
from ._stream import KafkaProjector, Relay, relay_consumer

__all__ = [
    "Applier",
    "BatchOutcome",
    "Change",
    "Generation",
    "KafkaProjector",
    "LearnerActivity",
    "MemoryState",
    "Projection",
    "ProjectorStatus",
    "Put",
    "Relay",
    "Remove",
    "Row",
    "RowKey",
    "RowRef",
    "RunnerSettings",
    "SqlFoldGroup",
    "SqlProjector",
    "State",
    "StreamSettings",
    "ViewIndex",
    "ViewStore",
    "ViewTable",
    "active_generation",
    "build",
    "default_projections",
    "ensure_active",
    "fold",
    "install",
    "list_generations",
    "migrate_runtime",
    "projection_named",
    "recorded_at",
    "relay_consumer",
    "replay_dead_letters",
    "router",
    "sql_projectors",
    "status",
]
