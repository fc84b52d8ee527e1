"""The one module that talks to the Gemini Batch API, through the google-genai SDK.

Nothing else in gembatch imports the SDK. Everything here returns plain
gembatch values (:class:`RemoteBatch`, :class:`Download`) and raises
gembatch's own errors (:class:`RemoteError` and its subclasses), with any API
key scrubbed from every message.

Three SDK internals are used, all only here and all guarded by
``tests/test_gemini_adapter.py``:

* ``Client._api_client.request(method, path, {})`` returns the raw JSON body.
  ``batches.get``/``batches.list`` drop ``batchStats`` (request counts) and the
  operation ``error`` in Developer API mode; reading the raw body keeps them
  while still going through the SDK's own HTTP stack, headers and auth.
* ``Client._api_client.download_file(path, destination=, chunk_size=None)``
  streams a result file as ``files.download`` does, minus its re-packing of
  every read into 1 MiB chunks (a third of the throughput).
* ``google.genai.errors.APIError.response`` gives the HTTP response of a failed
  call, for its ``Retry-After`` header (the SDK itself ignores it).

Retries are gembatch's, not the SDK's: the SDK would ignore ``Retry-After``,
and a 429 must slow every worker of the poller, not just the one that saw it
(:class:`Throttle`).
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from gembatch.common.batch import CreateExtras, Download, RemoteBatch
from gembatch.remote import config, creates
from gembatch.remote.errors import TRANSPORT_ERRORS, Interrupted, NotFound, RemoteError
from gembatch.remote.retry import RetryPolicy, Throttle, retry_after
from gembatch.remote.transfer import DiskSink, ProgressFile
from gembatch.remote.wire import check_batch_name, from_sdk_job, parse_operation

DEFAULT_API_VERSION = "v1beta"
LIST_PAGE_SIZE = 100

T = TypeVar("T")


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
            # Only a 404 says "it does not exist". The live service is reported to
            # answer 403 for a missing file too, but a 403 also means "not yours" or
            # "not allowed": taken as absence, results never downloaded would count
            # as nothing to keep, and a refused delete as done.
            kind = NotFound if exc.code == 404 else RemoteError
            error = kind(text, code=exc.code, status=exc.status)
            error.retry_after = retry_after(exc)  # type: ignore[attr-defined]
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
        check_batch_name(name)
        raw = self._call("batches.get", lambda: self._raw_json("get", name))
        return parse_operation(raw)

    def list_batches(self, page_size: int = LIST_PAGE_SIZE) -> Iterator[RemoteBatch]:
        """Every batch of the account, newest first as the API lists them, page by page."""
        for operation in self._listing("batches.list", "batches", "operations", page_size):
            yield parse_operation(operation)

    def _listing(
        self, call: str, collection: str, key: str, page_size: int
    ) -> Iterator[dict[str, Any]]:
        """The items of a paged list call, one page fetched (and retried) at a time."""
        token: str | None = None
        while True:
            query: dict[str, Any] = {"pageSize": page_size}
            if token:
                query["pageToken"] = token
            path = f"{collection}?{urlencode(query)}"
            page = self._call(call, lambda path=path: self._raw_json("get", path))
            yield from page.get(key) or []
            token = page.get("nextPageToken") or None
            if not token:
                return

    def cancel_batch(self, name: str) -> None:
        check_batch_name(name)
        self._call("batches.cancel", lambda: self._client.batches.cancel(name=name))

    def delete_batch(self, name: str) -> None:
        check_batch_name(name)
        self._call("batches.delete", lambda: self._client.batches.delete(name=name))

    def create_batch(
        self,
        *,
        model: str,
        src: str,
        display_name: str | None = None,
        extras: CreateExtras | None = None,
    ) -> RemoteBatch:
        """Create a batch from an uploaded file (``files/...``): a generation batch
        through ``batches.create``, an embeddings batch through
        ``batches.create_embeddings``. Never retried: a create that reached the
        server but was answered with an error has made a batch, and a blind retry
        would make a second one. The caller reconciles (by display name) instead."""
        extras = extras or CreateExtras()
        config: dict[str, Any] = {}
        if display_name:
            config["display_name"] = display_name
        extra = creates.extra_batch_fields(extras)
        if extra:
            config["http_options"] = {"extra_body": {"batch": extra}}

        def create() -> RemoteBatch:
            batches = self._client.batches
            if extras.embed:
                with warnings.catch_warnings():
                    # create_embeddings is marked experimental in the SDK.
                    warnings.simplefilter("ignore")
                    job = batches.create_embeddings(
                        model=model,
                        src={"file_name": src},
                        config=config or None,  # type: ignore[arg-type]
                    )
            else:
                job = batches.create(model=model, src=src, config=config or None)  # type: ignore[arg-type]
            return from_sdk_job(job)

        return self._call("batches.create", create, retry=False)

    def create_inline_batch(
        self,
        *,
        model: str,
        requests: list[dict[str, Any]],
        display_name: str | None = None,
        extras: CreateExtras | None = None,
    ) -> RemoteBatch:
        """Create a batch whose requests travel in the call (``[{"key", "request"}]``).

        Sent as the wire JSON (through the SDK's HTTP stack) rather than as the
        SDK's ``InlinedRequest``: each ``request`` goes exactly as written in the
        input file, in either field case, as a file-based batch would read it.
        Never retried, like :meth:`create_batch`.
        """
        extras = extras or CreateExtras()
        body = creates.inline_body(requests, display_name, extras)
        path = creates.create_path(model, extras.kind)

        def create() -> RemoteBatch:
            response = self._client._api_client.request("post", path, body, None)
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
                with ProgressFile(path, progress, self.stop) as stream:
                    uploaded = self._client.files.upload(file=stream, config=config)  # type: ignore[arg-type]
            if not uploaded.name:
                raise RemoteError("files.upload: the API returned no file name")
            return uploaded.name

        return self._call("files.upload", upload)

    def delete_file(self, name: str) -> None:
        self._call("files.delete", lambda: self._client.files.delete(name=name))

    def list_files(self, page_size: int = LIST_PAGE_SIZE) -> Iterator[dict[str, Any]]:
        """Every uploaded file of the account, as the API's JSON objects."""
        return self._listing("files.list", "files", "files", page_size)

    def download_file(
        self,
        name: str,
        temp_path: Path,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> Download:
        """Stream a result file into ``temp_path`` (the caller renames it into place).

        Memory stays flat whatever the size: each read is handed to a disk
        thread (:class:`DiskSink`) that hashes, writes and flushes it as it
        comes, while this thread reads on. Downloads are retried here (the SDK
        gives them a single attempt); each attempt starts the file afresh.
        """

        def attempt() -> Download:
            with open(temp_path, "wb") as handle:
                sink = DiskSink(handle, self.stop, progress)
                try:
                    self._download_into(name, sink)
                finally:
                    sink.close()
                handle.flush()
                return Download(path=temp_path, size=sink.size, sha256=sink.hexdigest())

        return self._call("files.download", attempt)

    def _download_into(self, name: str, sink: DiskSink) -> None:
        # SDK internal (see module docstring): ``files.download`` re-packs the
        # stream into 1 MiB chunks, which costs a third of the throughput; the
        # same call with ``chunk_size=None`` hands over each read as it comes,
        # still through the SDK's own request building, auth and HTTP stack.
        api = getattr(self._client, "_api_client", None)
        file_id = name.removeprefix("files/")
        if api is None or not hasattr(api, "download_file") or "/" in file_id:
            self._client.files.download(file=name, destination=sink)
            return
        path = f"files/{file_id}:download?{urlencode({'alt': 'media'})}"
        api.download_file(path, destination=sink, chunk_size=None)


def connect(base_url: str | None = None, *, api_key: str | None = None, retries: int = 5) -> Gemini:
    """The client of one command (or Python API call): the key and endpoint given,
    else from the environment (``remote.config``); ``retries`` extra attempts a call."""
    return Gemini(
        api_key or config.api_key(),
        base_url=config.base_url(base_url),
        retry=RetryPolicy(retries + 1),
    )
