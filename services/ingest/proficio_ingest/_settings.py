"""Settings of the ingest service (``PROFICIO_*`` environment variables)."""

from __future__ import annotations

from proficio_events import StoreSettings

GROUP_MAX_EVENTS = 400


class IngestSettings(StoreSettings):
    host: str = "127.0.0.1"
    port: int = 8080
    #: Largest request body accepted (statements and attachments together); larger is 413.
    max_body_bytes: int = 20 * 1024 * 1024
    #: Statements in one page of a query when the client asks for no limit (or limit=0), and the most it may ask.
    page_size: int = 100
    max_page_size: int = 1000
    #: Most statements accepted in one POST.
    max_batch: int = 5000
    #: The most statements one group commit of the log takes (concurrent requests share one transaction up to
    #: this; a larger single request is still taken whole). Smaller groups overlap the parsing of requests with
    #: the database's work in a single worker, but each group costs its round trips and commit. 400 (four
    #: 100-statement requests of eight in flight): the worker parses the next four while the database stores
    #: these, ~9,500 rather than ~7,500 batched statements/s in one worker (bench/README.md, session 7).
    group_max_events: int = GROUP_MAX_EVENTS
