"""What the API said about a batch, in gembatch's terms: the value the remote adapter
returns and the engine and the data layer both read, so neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gembatch.common import states


@dataclass(frozen=True)
class RemoteBatch:
    """A batch as the API reported it, in gembatch's terms."""

    name: str
    state: str | None  # JOB_STATE_*; future states pass through normalized
    display_name: str | None
    model: str | None
    create_time: datetime | None
    update_time: datetime | None
    end_time: datetime | None
    dest_file_name: str | None
    inlined_responses: list[dict[str, Any]] | None
    input_file_name: str | None
    request_count: int | None
    succeeded_count: int | None
    failed_count: int | None
    pending_count: int | None
    error_message: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def terminal(self) -> bool:
        return states.is_terminal(self.state)


def all_requests_failed(total: int | None, succeeded: int | None, failed: int | None) -> bool:
    """Whether the API's batchStats say no request of a batch succeeded and at
    least one failed: a SUCCEEDED batch like that produced nothing usable, and is
    shown and counted as a failure. Unknown counts (no batchStats) say nothing."""
    if not failed or succeeded:
        return False
    return total is None or failed >= total


@dataclass(frozen=True)
class Download:
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class CreateExtras:
    """What a create sends beyond the model, the input and the display name."""

    kind: str = "generate"  # or "embed": models/*:asyncBatchEmbedContent
    priority: int | None = None  # int64, higher runs first; None = the API's default (0)
    webhook_url: str | None = None  # a per-batch (dynamic) webhook
    metadata: dict[str, str] | None = None  # the webhook's userMetadata

    @property
    def embed(self) -> bool:
        return self.kind == "embed"
