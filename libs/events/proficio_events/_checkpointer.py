"""Checkpointing every tenant: once from ``proficio checkpoint``, or periodically from ``proficio serve``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ._checkpoints import Checkpoint, Signer
from ._errors import EventStoreError, LogTamperedError
from ._log import EventLog

logger = logging.getLogger("proficio.checkpoints")


@dataclass(frozen=True, slots=True)
class CheckpointOutcome:
    """One tenant's result: the checkpoint at its newest event (``fresh`` if signed just now), or the error."""

    tenant: str
    checkpoint: Checkpoint | None
    fresh: bool
    error: EventStoreError | None = None


async def checkpoint_tenants(
    log: EventLog, signer: Signer, tenants: Sequence[str] | None = None
) -> list[CheckpointOutcome]:
    """Sign a checkpoint at each tenant's newest event (all tenants, or ``tenants``). A tenant whose chain does
    not verify gets no checkpoint (its error is in the outcome); the others still do."""
    outcomes: list[CheckpointOutcome] = []
    for tenant in tenants if tenants is not None else await log.tenants():
        before = {c.position for c in await log.checkpoints(tenant) if c.key_id == signer.key_id}
        try:
            checkpoint = await log.record_checkpoint(tenant, signer)
        except LogTamperedError as exc:
            outcomes.append(CheckpointOutcome(tenant, None, False, exc))
            continue
        fresh = checkpoint is not None and checkpoint.position not in before
        outcomes.append(CheckpointOutcome(tenant, checkpoint, fresh))
    return outcomes


async def run_checkpointer(log: EventLog, signer: Signer, interval_s: float, stop: asyncio.Event) -> None:
    """Checkpoint every tenant whose chain grew, every ``interval_s`` seconds, until ``stop`` is set.

    Several server processes may each run one: a checkpoint at a position already signed by the key is
    not signed again, so they only repeat a little work.
    """
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
        if stop.is_set():
            return
        try:
            for outcome in await checkpoint_tenants(log, signer):
                if outcome.error is not None:
                    logger.error("no checkpoint for tenant %r: %s", outcome.tenant, outcome.error)
                elif outcome.fresh and outcome.checkpoint is not None:
                    logger.info("checkpoint of tenant %r at position %d", outcome.tenant, outcome.checkpoint.position)
        except EventStoreError as exc:  # the store is away for now: try again next round
            logger.warning("checkpointing failed: %s", exc)


__all__ = ["CheckpointOutcome", "checkpoint_tenants", "run_checkpointer"]
