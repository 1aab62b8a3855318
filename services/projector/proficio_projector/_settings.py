"""Settings of the relay and the projectors (``PROFICIO_*`` environment variables)."""

from __future__ import annotations

from proficio_events import StoreSettings

from ._runtime import RunnerSettings


class StreamSettings(StoreSettings):
    #: Kafka brokers, ``host:port[,host:port]``; unset: projectors tail the SQL log.
    kafka_bootstrap: str | None = None
    #: One topic carries every tenant's events (the tenant is in each record's key and value).
    kafka_topic: str = "proficio.events"
    #: Partitions of the topic when the relay creates it: the most projector processes that can share it.
    kafka_partitions: int = 6
    kafka_replication: int = 1
    #: A consumer that stops heartbeating loses its partitions after this long (the broker's minimum is 6 s).
    kafka_session_timeout_ms: int = 10_000
    #: A worker that stops renewing its lease (a SQL-log segment, the relay) is replaced after this long.
    lease_ttl_s: float = 10.0
    #: Whether ``proficio serve`` runs the projectors in its own process when no Kafka is configured
    #: (the embedded default); with false they run only as ``proficio project`` processes.
    run_projectors: bool = True
    #: How many learners' section-grid cells each server process keeps (~15 KB each for 50 competencies; the
    #: least recently read go first), checked against the views on every read; 0: none, every grid is scored
    #: from the views.
    grid_cache_learners: int = 2000
    #: The niceness a process running only the equity refresher takes (``proficio project --equity only``, which
    #: is also the child ``--equity apart`` starts): its rounds are background work and take the CPU the folds
    #: and the database leave them (bench/README.md, session 9); 0: the same priority as the folds.
    equity_nice: int = 10

    def runner(self, **changes: object) -> RunnerSettings:
        """Runner settings for the relay and projectors from these settings."""
        return RunnerSettings(lease_ttl=self.lease_ttl_s, **changes)  # type: ignore[arg-type]
