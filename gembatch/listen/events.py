"""What a verified event says: its type, which batch, and which gembatch job, if any.

The event is thin (docs/webhooks.md): ``{"type": "batch.succeeded", "timestamp": ...,
"data": {"id": "batches/...", "output_file_uri": ..., "user_metadata": {...}}}``. Only
``type`` and ``data.id`` are known from Google's own samples; the batch may also be read
from ``data.name`` or ``data.batch``, a bare id gains its ``batches/`` prefix, and the user
metadata is looked for in ``data`` and at the top level, so a variation in the live
service's shape still names the job. Nothing in it is trusted beyond naming the job to
poll: what the API answers then decides everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gembatch.listen.verify import Rejected

JOB_ID_KEY = "gembatch_job_id"
MAX_JOB_ID = 2**63 - 1  # the jobs table's id is a 64-bit integer
# The webhook_events columns: PostgreSQL refuses longer values, so they are refused first.
MAX_EVENT_TYPE, MAX_BATCH_NAME = 64, 255


@dataclass(frozen=True)
class Hint:
    event_type: str
    batch_name: str | None
    job_hint: int | None  # the job id gembatch put in the batch's user metadata
    user_metadata: dict[str, Any] | None

    @property
    def about_a_batch(self) -> bool:
        return self.event_type.startswith("batch.")


def read_event(payload: dict[str, Any], token_batch: str | None = None) -> Hint:
    """``token_batch``: the batch a verified token names when it does not vouch for the body
    (then the body's own batch is not trusted)."""
    event_type = payload.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise Rejected(400, "the event has no type")
    if len(event_type) > MAX_EVENT_TYPE:
        raise Rejected(400, f"the event's type is over {MAX_EVENT_TYPE} characters")
    data = payload.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise Rejected(400, "the event's data is not an object")
    batch = None
    if event_type.startswith("batch."):
        batch = _batch_name({"id": token_batch} if token_batch else data)
    if batch is not None and len(batch) > MAX_BATCH_NAME:
        raise Rejected(400, f"the event's batch name is over {MAX_BATCH_NAME} characters")
    metadata = _metadata(data) or _metadata(payload)
    return Hint(event_type, batch, _job_id(metadata), metadata)


def _batch_name(data: dict[str, Any]) -> str | None:
    for key in ("id", "name", "batch"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            value = value.strip()
            return value if value.startswith("batches/") else f"batches/{value}"
    return None


def _metadata(where: dict[str, Any]) -> dict[str, Any] | None:
    for key in ("user_metadata", "userMetadata"):
        value = where.get(key)
        if isinstance(value, dict):
            return value
    return None


def _job_id(metadata: dict[str, Any] | None) -> int | None:
    raw = (metadata or {}).get(JOB_ID_KEY)
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        text = raw.strip()
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
        if not (text.isascii() and text.isdigit() and len(text) <= 19):
            return None
        raw = int(text)
    if isinstance(raw, int) and 0 < raw <= MAX_JOB_ID:
        return raw
    return None
