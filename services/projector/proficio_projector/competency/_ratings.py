"""Teacher ratings: a rater's judgement of a learner on a competency, recorded as evidence.

A rating is a ``TeacherRatingRecorded`` event in the learner's own stream (so it folds with the
learner's statements, in the same partition), carrying the points on the competency's scale, the
share of the scale they are (fixed when recorded, so a replay never depends on a later framework
version), the rater (the credential's authority) and when the judgement was made. Withdrawing it is a
``TeacherRatingWithdrawn`` event; the evidence leaves the progress as a voided statement does.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

import orjson

from proficio_events import AppendResult, EventLog, NewEvent, identifier_secret

from ._case import Level
from ._progress import RATING_RECORDED, RATING_WITHDRAWN
from ._reference import ReferenceDataError

MAX_COMMENT = 2000


def rating_points(scale: Sequence[Level], *, level: str | None, points: str | Decimal | None) -> Decimal:
    """The points a rating gives: a level of the scale by its label, or points from 0 to the scale's top."""
    if (level is None) == (points is None):
        raise ReferenceDataError("give exactly one of level (a label of the competency's scale) or points")
    top = max(lv.points for lv in scale)
    if level is not None:
        found = [lv.points for lv in scale if lv.label.casefold() == level.casefold()]
        if not found:
            labels = ", ".join(lv.label for lv in scale)
            raise ReferenceDataError(f"no level {level!r} on this scale; its levels: {labels}")
        return found[0]
    try:
        value = Decimal(str(points))
    except InvalidOperation:
        raise ReferenceDataError(f"points must be a number, not {points!r}") from None
    if not value.is_finite() or not Decimal(0) <= value <= top:
        raise ReferenceDataError(f"points must be from 0 to the scale's top ({top}), not {points}")
    return value


async def record_rating(
    log: EventLog,
    tenant: str,
    learner: str,
    competency: str,
    points: Decimal,
    scale: Sequence[Level],
    *,
    authority: str,
    timestamp_us: int,
    comment: str | None = None,
    rating_id: str | None = None,
) -> tuple[str, AppendResult]:
    """Append the rating to the learner's stream; the same id with the same content is a no-op."""
    if comment is not None and len(comment) > MAX_COMMENT:
        raise ReferenceDataError(f"a comment is at most {MAX_COMMENT} characters")
    if rating_id is not None:
        try:
            rating_id = str(uuid.UUID(rating_id))
        except ValueError:
            raise ReferenceDataError(f"a rating id is a UUID, not {rating_id!r}") from None
    rating_id = rating_id or str(uuid.uuid4())
    top = max(lv.points for lv in scale)
    label = max((lv for lv in scale if points >= lv.points), key=lambda lv: lv.points, default=None)
    data = {
        "rating_id": rating_id, "competency": competency, "points": str(points), "points_possible": str(top),
        "norm": str(points / top), "level": label.label if label else None,
        "timestamp_us": timestamp_us, "authority": authority,
    }  # fmt: skip
    # A teacher's comment is free text about the learner: sealed under her key (``NewEvent.private``). The
    # repeat check needs a fingerprint that is not the ciphertext: keyed with the tenant's identifier secret,
    # so the log does not let anyone confirm a guessed comment.
    private = orjson.dumps({"comment": comment})
    secret = await identifier_secret(log, tenant)
    fingerprint = hmac.new(secret, b"proficio:rating:1\x00" + orjson.dumps(data) + private, hashlib.sha256).digest()
    event = NewEvent.of(learner, RATING_RECORDED, data, key=f"rating:{rating_id}", fingerprint=fingerprint,
                        private=private, seal_for=learner)  # fmt: skip
    return rating_id, await log.append(tenant, [event])


async def withdraw_rating(log: EventLog, tenant: str, learner: str, rating_id: str, *, authority: str) -> AppendResult:
    data = {"rating_id": rating_id, "authority": authority}
    return await log.append(tenant, [NewEvent.of(learner, RATING_WITHDRAWN, data, key=f"rating-withdrawn:{rating_id}")])
