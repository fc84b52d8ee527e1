"""Reading what the API answers: wire ``Operation`` objects, the SDK's create answer,
inline responses. Lenient by design: a field the API adds or omits never breaks a poll."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from gembatch.common import states
from gembatch.common.batch import RemoteBatch
from gembatch.common.timeutil import parse_timestamp
from gembatch.remote.errors import RemoteError


def check_batch_name(name: str) -> None:
    if not name.startswith("batches/") or len(name) <= len("batches/"):
        raise RemoteError(f"not a batch name: {name!r} (expected 'batches/<id>')", code=400)


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def _error_text(error: Any) -> str | None:
    if not isinstance(error, dict):
        return None
    message = error.get("message") or ""
    code = error.get("code")
    if code is None and not message:
        return None
    return f"{message} (code {code})" if code is not None else str(message)


_INLINE_KEYS = ("inlinedResponses", "inlinedEmbedContentResponses")


def _inlined(output: dict[str, Any]) -> list[dict[str, Any]] | None:
    """``None`` when the answer carries no inline payload (a listing may leave it
    out), ``[]`` only when it carries one that is empty: proto3 JSON omits an empty
    repeated field, so ``{"inlinedResponses": {}}`` is present and empty. Callers
    must never take the first for the second, or results are written empty."""
    # An embeddings batch answers under its own key, with the same nesting
    # (SDK batches.py ``_BatchJobDestination_from_mldev``).
    outer = next((k for k in _INLINE_KEYS if k in output), None)
    if outer is None:
        return None
    inlined = output[outer]
    if isinstance(inlined, dict):
        if "inlinedResponses" not in inlined:
            return []
        inlined = inlined["inlinedResponses"]
    return inlined if isinstance(inlined, list) else None


def parse_operation(raw: dict[str, Any]) -> RemoteBatch:
    """Read a wire ``Operation`` (what ``batches.get``/``list`` answer) leniently.

    The state is mapped as the SDK maps it (``BATCH_STATE_X`` -> ``JOB_STATE_X``);
    a state nobody knows yet passes through and stays non-terminal.
    """
    metadata = raw.get("metadata") or {}
    output = metadata.get("output") or raw.get("response") or {}
    stats = metadata.get("batchStats") or {}
    inlined = _inlined(output)
    request_count = _int(stats.get("requestCount"))
    succeeded = _int(stats.get("successfulRequestCount"))
    failed = _int(stats.get("failedRequestCount"))
    pending = _int(stats.get("pendingRequestCount"))
    if request_count is not None:
        # Zero counters are omitted on the wire.
        succeeded, failed, pending = succeeded or 0, failed or 0, pending or 0
    input_config = metadata.get("inputConfig") or {}
    return RemoteBatch(
        name=str(raw.get("name") or metadata.get("name") or ""),
        state=states.normalize(metadata.get("state")),
        display_name=metadata.get("displayName"),
        model=metadata.get("model"),
        create_time=_time(metadata.get("createTime")),
        update_time=_time(metadata.get("updateTime")),
        end_time=_time(metadata.get("endTime")),
        dest_file_name=output.get("responsesFile"),
        inlined_responses=inlined,
        input_file_name=input_config.get("fileName"),
        request_count=request_count,
        succeeded_count=succeeded,
        failed_count=failed,
        pending_count=pending,
        error_message=_error_text(raw.get("error")),
        raw=raw,
    )


def from_sdk_job(job: Any) -> RemoteBatch:
    """What ``batches.create`` answered (a PENDING batch), via the SDK's own model."""
    state = job.state.value if job.state is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return RemoteBatch(
            name=job.name or "",
            state=states.normalize(state),
            display_name=job.display_name,
            model=job.model,
            create_time=job.create_time,
            update_time=job.update_time,
            end_time=job.end_time,
            dest_file_name=job.dest.file_name if job.dest else None,
            inlined_responses=None,
            input_file_name=None,
            request_count=None,
            succeeded_count=None,
            failed_count=None,
            pending_count=None,
            error_message=None,
            raw=job.model_dump(mode="json", exclude_none=True),
        )


def inline_results_jsonl(responses: list[dict[str, Any]]) -> Iterator[bytes]:
    """Inline results as the same JSONL a result file holds: one compact line per
    request, ``key`` from the request's metadata, in input order."""
    for index, item in enumerate(responses):
        metadata = item.get("metadata") or {}
        line: dict[str, Any] = {}
        if "response" in item:
            line["response"] = item["response"]
        if "error" in item:
            line["error"] = item["error"]
        line["key"] = metadata.get("key", str(index))
        if len(metadata) > 1 or "key" not in metadata:
            line["metadata"] = metadata
        yield json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
