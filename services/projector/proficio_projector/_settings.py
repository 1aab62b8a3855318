"""Settings of the relay and the projectors (``PROFICIO_*`` environment variables)."""

from __future__ import annotations

from proficio_events import StoreSettings


class StreamSettings(StoreSettings):
    #: Kafka brokers, ``host:port[,host:port]``; unset: projectors tail the SQL log.
    kafka_bootstrap: str | None = None
    #: One topic carries every tenant's events (the tenant is in each record's key and value).
    kafka_topic: str = "proficio.events"
    #: Partitions of the topic when the relay creates it: the most projector processes that can share it.
    kafka_partitions: int = 6
    kafka_replication: int = 1
