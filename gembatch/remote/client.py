"""The one module that talks to the Gemini Batch API, through the google-genai SDK.

Nothing else in gembatch imports the SDK. Everything here returns plain
gembatch values (:class:`RemoteBatch`, :class:`Download`) and raises
gembatch's own errors (:class:`RemoteError` and its subclasses), with any API
key scrubbed from every message.

Two SDK internals are used, both only here and both guarded by
``tests/test_gemini_adapter.py``:

* ``Client._api_client.request(method, path, {})`` returns the raw JSON body.
  ``batches.get``/``batches.list`` drop ``batchStats`` (request counts) and the
  operation ``error`` in Developer API mode; reading the raw body keeps them
  while still going through the SDK's own HTTP stack, headers and auth.
* ``google.genai.errors.APIError.response`` gives the HTTP response of a failed
  call, for its ``Retry-After`` header (the SDK itself ignores it).

Retries are gembatch's, not the SDK's: the SDK would ignore ``Retry-After``,
and a 429 must slow every worker of the poller, not just the one that saw it
(:class:`Throttle`).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from gembatch.common import states
from gembatch.common.timeutil import now as utcnow
from gembatch.common.timeutil import parse_timestamp

DEFAULT_API_VERSION = "v1beta"
LIST_PAGE_SIZE = 100
# HTTP statuses worth another attempt; other 4xx are the caller's mistake.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})

T = TypeVar("T")


# --------------------------------------------------------------------------- errors


class RemoteError(Exception):
    """A remote call failed. ``code`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, code: int | None = None, status: str | None = None):
        super().__init__(message)
        self.code = code
        self.status = status

    @property
    def transient(self) -> bool:
        return self.code is None or self.code in RETRYABLE_STATUS


class NotFound(RemoteError):
    """The remote object does not exist (404), or the API will not say (403 on files)."""


class Interrupted(Exception):
    """A long transfer stopped because the caller asked it to (Ctrl+C)."""


# --------------------------------------------------------------------------- values


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


@dataclass(frozen=True)
class Download:
    path: Path
    size: int
    sha256: str


# --------------------------------------------------------------------------- retries


class Throttle:
    """Shared by every worker: after a 429 (or Retry-After) nobody calls until it passes."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._lock = threading.Lock()
        self._until = 0.0
        self._sleep = sleep
        self.pauses = 0

    def pause(self, seconds: float) -> None:
        with self._lock:
            until = time.monotonic() + seconds
            if until > self._until:
                self._until = until
                self.pauses += 1

    def wait(self, stop: threading.Event | None = None) -> None:
        while True:
            with self._lock:
                delay = self._until - time.monotonic()
            if delay <= 0:
                return
            if stop is not None:
                if stop.wait(min(delay, 0.5)):
                    raise Interrupted("stopped while waiting out a rate limit")
            else:
                self._sleep(min(delay, 0.5))


@dataclass
class RetryPolicy:
    attempts: int = 6
    initial_delay: float = 0.5
    max_delay: float = 30.0
    exp_base: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Wait before retry ``attempt`` (1-based): exponential with jitter, never
        shorter than what the server asked for."""
        base = min(self.max_delay, self.initial_delay * self.exp_base ** (attempt - 1))
        wait = base + random.uniform(0, self.jitter)
        if retry_after is not None:
            wait = max(wait, min(retry_after, 300.0))
        return wait


def _transport_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name in ("httpx2", "httpx"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        found.append(module.TransportError)
    return tuple(found)


TRANSPORT_ERRORS = _transport_errors()


# --------------------------------------------------------------------------- the client


class Gemini:
    """One SDK client, kept alive for the whole run (closing it breaks its modules)."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        throttle: Throttle | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("an API key is required")
        self._api_key = api_key
        options = genai_types.HttpOptions(
            api_version=api_version, timeout=int(timeout_s * 1000), base_url=base_url
        )
        self._client = genai.Client(api_key=api_key, http_options=options)
        self.retry = retry or RetryPolicy()
        self.throttle = throttle or Throttle()
        self.stop = stop or threading.Event()
        self._count_lock = threading.Lock()
        self.calls: dict[str, int] = {}

    def close(self) -> None:
        self._client.close()

    # ----------------------------------------------------------------- plumbing

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _count(self, what: str) -> None:
        with self._count_lock:
            self.calls[what] = self.calls.get(what, 0) + 1

    def _translate(self, exc: BaseException, what: str) -> RemoteError:
        if isinstance(exc, genai_errors.APIError):
            message = exc.message or str(exc)
            text = self._scrub(f"{what}: {exc.code} {exc.status or ''}: {message}".strip())
            # The live service is reported to answer 403 PERMISSION_DENIED, not 404,
            # for a file that does not exist ("…or it may not exist").
            missing = exc.code == 404 or (exc.code == 403 and what.startswith("files."))
            kind = NotFound if missing else RemoteError
            error = kind(text, code=exc.code, status=exc.status)
            error.retry_after = _retry_after(exc)  # type: ignore[attr-defined]
            return error
        detail = str(exc) or type(exc).__name__
        return RemoteError(self._scrub(f"{what}: {type(exc).__name__}: {detail}"))

    def _call(self, what: str, fn: Callable[[], T], *, retry: bool = True) -> T:
        """Run one API call with gembatch's retry policy and the shared throttle."""
        attempt = 0
        while True:
            attempt += 1
            self.throttle.wait(self.stop)
            if self.stop.is_set():
                raise Interrupted(f"{what}: stopped")
            self._count(what)
            try:
                return fn()
            except Interrupted:
                raise
            except (genai_errors.APIError, *TRANSPORT_ERRORS) as exc:
                error = self._translate(exc, what)
            if not (retry and error.transient) or attempt >= self.retry.attempts:
                raise error
            retry_after = getattr(error, "retry_after", None)
            delay = self.retry.delay(attempt, retry_after)
            if error.code == 429 or retry_after is not None:
                # Quota is shared: every worker backs off, not just this one.
                self.throttle.pause(delay)
            elif self.stop.wait(delay):
                raise Interrupted(f"{what}: stopped")

    def _raw_json(self, method: str, path: str) -> dict[str, Any]:
        # SDK internal (see module docstring): the raw body, through the SDK's stack.
        response = self._client._api_client.request(method, path, {}, None)
        body = response.body
        return json.loads(body) if body else {}

    # ----------------------------------------------------------------- batches

    def get_batch(self, name: str) -> RemoteBatch:
        _check_batch_name(name)
        raw = self._call("batches.get", lambda: self._raw_json("get", name))
        return parse_operation(raw)

    def list_batches(self, page_size: int = LIST_PAGE_SIZE) -> Iterator[RemoteBatch]:
        """Every batch of the account, newest first as the API lists them, page by page."""
        token: str | None = None
        while True:
            query: dict[str, Any] = {"pageSize": page_size}
            if token:
                query["pageToken"] = token
            path = f"batches?{urlencode(query)}"
            page = self._call("batches.list", lambda path=path: self._raw_json("get", path))
            for operation in page.get("operations") or []:
                yield parse_operation(operation)
            token = page.get("nextPageToken") or None
            if not token:
                return

    def cancel_batch(self, name: str) -> None:
        _check_batch_name(name)
        self._call("batches.cancel", lambda: self._client.batches.cancel(name=name))

    def delete_batch(self, name: str) -> None:
        _check_batch_name(name)
        self._call("batches.delete", lambda: self._client.batches.delete(name=name))

    def create_batch(
        self,
        *,
        model: str,
        src: str | list[dict[str, Any]],
        display_name: str | None = None,
    ) -> RemoteBatch:
        """Create a batch. Never retried: a create that reached the server but
        was answered with an error has made a batch, and a blind retry would
        make a second one. The caller reconciles (by display name) instead."""
        config = {"display_name": display_name} if display_name else None

        def create() -> RemoteBatch:
            job = self._client.batches.create(model=model, src=src, config=config)  # type: ignore[arg-type]
            return _from_sdk_job(job)

        return self._call("batches.create", create, retry=False)

    def create_inline_batch(
        self,
        *,
        model: str,
        requests: list[dict[str, Any]],
        display_name: str | None = None,
    ) -> RemoteBatch:
        """Create a batch whose requests travel in the call (``[{"key", "request"}]``).

        Sent as the wire JSON (through the SDK's HTTP stack) rather than as the
        SDK's ``InlinedRequest``: each ``request`` goes exactly as written in the
        input file, in either field case, as a file-based batch would read it.
        Never retried, like :meth:`create_batch`.
        """
        path = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
        batch: dict[str, Any] = {
            "inputConfig": {
                "requests": {
                    "requests": [
                        {"request": item["request"], "metadata": {"key": str(item["key"])}}
                        for item in requests
                    ]
                }
            }
        }
        if display_name:
            batch["displayName"] = display_name
        body = {"batch": batch}

        def create() -> RemoteBatch:
            response = self._client._api_client.request(
                "post", f"{path}:batchGenerateContent", body, None
            )
            return parse_operation(json.loads(response.body) if response.body else {})

        return self._call("batches.create", create, retry=False)

    # ----------------------------------------------------------------- files

    def upload_file(
        self,
        path: Path,
        *,
        display_name: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> str:
        """Upload a JSONL input; returns the remote file name (``files/...``).

        ``progress(bytes_sent)`` follows the upload as the SDK reads the file.
        """
        config: dict[str, Any] = {"mime_type": "application/jsonl"}
        if display_name:
            config["display_name"] = display_name[:512]

        def upload() -> str:
            if progress is None:
                uploaded = self._client.files.upload(file=str(path), config=config)  # type: ignore[arg-type]
            else:
                # Each attempt reopens the file, so a retried upload starts from byte 0.
                with _ProgressFile(path, progress, self.stop) as stream:
                    uploaded = self._client.files.upload(file=stream, config=config)  # type: ignore[arg-type]
            if not uploaded.name:
                raise RemoteError("files.upload: the API returned no file name")
            return uploaded.name

        return self._call("files.upload", upload)

    def delete_file(self, name: str) -> None:
        self._call("files.delete", lambda: self._client.files.delete(name=name))

    def list_files(self, page_size: int = LIST_PAGE_SIZE) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            query: dict[str, Any] = {"pageSize": page_size}
            if token:
                query["pageToken"] = token
            path = f"files?{urlencode(query)}"
            page = self._call("files.list", lambda path=path: self._raw_json("get", path))
            yield from page.get("files") or []
            token = page.get("nextPageToken") or None
            if not token:
                return

    def download_file(
        self,
        name: str,
        temp_path: Path,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> Download:
        """Stream a result file into ``temp_path`` (the caller renames it into place).

        Memory stays flat whatever the size: the SDK hands over 1 MiB chunks,
        hashed and written as they come. Downloads are retried here (the SDK
        gives them a single attempt); each attempt starts the file afresh.
        """

        def attempt() -> Download:
            with open(temp_path, "wb") as handle:
                writer = _HashingWriter(handle, self.stop, progress)
                self._client.files.download(file=name, destination=writer)
                handle.flush()
                return Download(path=temp_path, size=writer.size, sha256=writer.hexdigest())

        return self._call("files.download", attempt)


class _ProgressFile(io.FileIO):
    """The upload source: a plain file that reports how far the SDK has read it."""

    def __init__(self, path: Path, progress: Callable[[int], None], stop: threading.Event) -> None:
        super().__init__(path, "rb")
        self._progress = progress
        self._stop = stop

    def read(self, size: int = -1) -> bytes:
        if self._stop.is_set():
            raise Interrupted("upload stopped")
        data = super().read(size)
        self._progress(self.tell())
        return data or b""


class _HashingWriter:
    """The SDK's download destination: writes, hashes and counts each chunk."""

    def __init__(
        self,
        handle: Any,
        stop: threading.Event,
        progress: Callable[[int], None] | None,
    ) -> None:
        self._handle = handle
        self._hash = hashlib.sha256()
        self._stop = stop
        self._progress = progress
        self.size = 0

    def write(self, chunk: bytes) -> int:
        if self._stop.is_set():
            raise Interrupted("download stopped")
        self._handle.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)
        if self._progress is not None:
            self._progress(self.size)
        return len(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


# --------------------------------------------------------------------------- parsing


def _check_batch_name(name: str) -> None:
    if not name.startswith("batches/") or len(name) <= len("batches/"):
        raise RemoteError(f"not a batch name: {name!r} (expected 'batches/<id>')", code=400)


def _retry_after(exc: genai_errors.APIError) -> float | None:
    """Seconds from a ``Retry-After`` header, else from a google.rpc.RetryInfo detail."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
                return max(0.0, (when - utcnow()).total_seconds())
            except (TypeError, ValueError):
                pass
    details = exc.details if isinstance(exc.details, dict) else {}
    for detail in (details.get("error") or {}).get("details") or []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            delay = str(detail.get("retryDelay", "")).rstrip("s")
            try:
                return max(0.0, float(delay))
            except ValueError:
                return None
    return None


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


def parse_operation(raw: dict[str, Any]) -> RemoteBatch:
    """Read a wire ``Operation`` (what ``batches.get``/``list`` answer) leniently.

    The state is mapped as the SDK maps it (``BATCH_STATE_X`` -> ``JOB_STATE_X``);
    a state nobody knows yet passes through and stays non-terminal.
    """
    metadata = raw.get("metadata") or {}
    output = metadata.get("output") or raw.get("response") or {}
    stats = metadata.get("batchStats") or {}
    inlined = output.get("inlinedResponses")
    if isinstance(inlined, dict):
        inlined = inlined.get("inlinedResponses")
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
        inlined_responses=inlined if isinstance(inlined, list) else None,
        input_file_name=input_config.get("fileName"),
        request_count=request_count,
        succeeded_count=succeeded,
        failed_count=failed,
        pending_count=pending,
        error_message=_error_text(raw.get("error")),
        raw=raw,
    )


def _from_sdk_job(job: Any) -> RemoteBatch:
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
