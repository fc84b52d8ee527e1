"""The Gemini Developer API endpoints for batch work: routing and request/response bodies."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, BinaryIO

from gembatch.emulator.config import EmulatorConfig
from gembatch.emulator.store import Store
from gembatch.emulator.switches import MAX_FILE_ID
from gembatch.emulator.wire import ApiError, bad_request, dumps, not_found

_V = r"(v1|v1beta|v1alpha)"
_ID = r"([^/:]+)"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes
    stream: BinaryIO  # the unread body, for upload chunks (streamed to disk)
    length: int
    public_url: str
    params: tuple[str, ...] = ()

    def json(self) -> dict[str, Any]:
        if not self.body.strip():
            return {}
        try:
            value = json.loads(self.body)
        except ValueError as exc:
            raise bad_request(f"Invalid JSON payload received. {exc}") from None
        if not isinstance(value, dict):
            raise bad_request("Invalid JSON payload received. Expected an object.")
        return value


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    file: tuple[Path, int] | None = None  # streamed from disk instead of ``body``


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    merged = {"Content-Type": "application/json; charset=UTF-8", **(headers or {})}
    return Response(status, dumps(obj), merged)


def error_response(error: ApiError) -> Response:
    return json_response(error.body(), error.http_status, error.headers)


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    endpoint: str
    handler: str  # method name on Api


def _route(method: str, pattern: str, endpoint: str, handler: str) -> Route:
    return Route(method, re.compile(f"^{pattern}$"), endpoint, handler)


# One entry per endpoint, matched in order; a new endpoint is one more line (and a handler
# method of that name on Api, or on a subclass that the app installs).
ROUTES = (
    _route("POST", rf"/upload/{_V}/files", "files.upload", "upload"),
    _route("GET", rf"/{_V}/files", "files.list", "files_list"),
    _route("GET", rf"/(?:download/)?{_V}/files/{_ID}:download", "files.download", "download"),
    _route("GET", rf"/{_V}/files/{_ID}", "files.get", "files_get"),
    _route("DELETE", rf"/{_V}/files/{_ID}", "files.delete", "files_delete"),
    _route(
        "POST",
        rf"/{_V}/((?:models|tunedModels)/[^/:]+):batchGenerateContent",
        "batches.create",
        "batches_create",
    ),
    _route(
        "POST",
        rf"/{_V}/((?:models|tunedModels)/[^/:]+):asyncBatchEmbedContent",
        "batches.create_embeddings",
        "batches_create_embeddings",
    ),
    _route("GET", rf"/{_V}/batches", "batches.list", "batches_list"),
    _route("GET", rf"/{_V}/batches/{_ID}", "batches.get", "batches_get"),
    _route("POST", rf"/{_V}/batches/{_ID}:cancel", "batches.cancel", "batches_cancel"),
    _route("DELETE", rf"/{_V}/batches/{_ID}", "batches.delete", "batches_delete"),
    # The WebhookService (handlers: gembatch.emulator.webhooks_api, installed by the app).
    _route("GET", rf"/{_V}/webhooks", "webhooks.list", "webhooks_list"),
    _route("POST", rf"/{_V}/webhooks", "webhooks.create", "webhooks_create"),
    _route("POST", rf"/{_V}/webhooks/{_ID}:ping", "webhooks.ping", "webhooks_ping"),
    _route(
        "POST",
        rf"/{_V}/webhooks/{_ID}:rotateSigningSecret",
        "webhooks.rotate_signing_secret",
        "webhooks_rotate",
    ),
    _route("GET", rf"/{_V}/webhooks/{_ID}", "webhooks.get", "webhooks_get"),
    _route("PATCH", rf"/{_V}/webhooks/{_ID}", "webhooks.update", "webhooks_update"),
    _route("DELETE", rf"/{_V}/webhooks/{_ID}", "webhooks.delete", "webhooks_delete"),
)


def match(method: str, path: str, query: dict[str, str]) -> tuple[str, str, tuple[str, ...]]:
    """(endpoint, handler name, path parameters); ``("unknown", "", ())`` if nothing matches."""
    for route in ROUTES:
        if route.method != method:
            continue
        found = route.pattern.match(path)
        if found:
            if route.endpoint == "files.upload" and "upload_id" in query:
                return "files.upload_data", "upload_data", found.groups()
            return route.endpoint, route.handler, found.groups()
    return "unknown", "", ()


class Api:
    def __init__(self, store: Store, config: EmulatorConfig) -> None:
        self.store = store
        self.config = config

    def _page_size(self, request: Request) -> int:
        raw = request.query.get("pageSize") or request.query.get("page_size")
        if raw is None:
            return self.config.page_size_default
        try:
            size = int(raw)
        except ValueError:
            raise bad_request(f"Invalid pageSize: {raw}") from None
        if size < 0:
            raise bad_request("pageSize must not be negative.")
        return min(size or self.config.page_size_default, self.config.page_size_max)

    # ------------------------------------------------------------------------- files

    def upload(self, request: Request) -> Response:
        if request.headers.get("X-Goog-Upload-Protocol", "").lower() != "resumable":
            raise bad_request("Only the resumable upload protocol is supported.")
        if request.headers.get("X-Goog-Upload-Command", "").lower() != "start":
            raise bad_request("A resumable upload must begin with X-Goog-Upload-Command: start.")
        body = request.json()
        meta = body.get("file") or {}
        if not isinstance(meta, dict):
            raise bad_request("Invalid JSON payload: 'file' must be an object.")
        declared = request.headers.get("X-Goog-Upload-Header-Content-Length")
        try:
            size = int(declared) if declared else None
        except ValueError:
            raise bad_request("Invalid X-Goog-Upload-Header-Content-Length.") from None
        session = self.store.start_upload(
            meta, size, request.headers.get("X-Goog-Upload-Header-Content-Type")
        )
        version = request.params[0]
        url = (
            f"{request.public_url}/upload/{version}/files"
            f"?upload_id={session.upload_id}&upload_protocol=resumable"
        )
        return Response(
            200,
            b"",
            {"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active", "Content-Length": "0"},
        )

    def upload_data(self, request: Request) -> Response:
        command = request.headers.get("X-Goog-Upload-Command", "").lower()
        parts = {p.strip() for p in command.split(",")}
        if not parts & {"upload", "finalize"}:
            raise bad_request(f"Unsupported X-Goog-Upload-Command: {command}")
        offset_header = request.headers.get("X-Goog-Upload-Offset")
        offset = int(offset_header) if offset_header and offset_header.isdigit() else None
        length = request.length if "upload" in parts else 0
        record = self.store.upload_chunk(
            request.query["upload_id"], offset, request.stream, length, "finalize" in parts
        )
        if record is None:
            return Response(200, b"", {"X-Goog-Upload-Status": "active"})
        return json_response(
            {"file": record.resource(request.public_url)},
            headers={"X-Goog-Upload-Status": "final"},
        )

    def _check_file_id(self, request: Request, call: str) -> None:
        """With the ``long_file_ids`` switch, refuse ids over 40 characters as the live
        service's files.get and files.delete do (python-genai issues #1613, #1759)."""
        file_id = request.params[1].removeprefix("files/")
        if self.store.switches.long_file_ids and len(file_id) > MAX_FILE_ID:
            raise bad_request(
                f"* {call}.name: File ID (name excluding 'files/') cannot be more than "
                f"{MAX_FILE_ID} characters.\n"
            )

    def files_get(self, request: Request) -> Response:
        self._check_file_id(request, "GetFileRequest")
        record = self.store.get_file(request.params[1])
        return json_response(record.resource(request.public_url))

    def files_list(self, request: Request) -> Response:
        records, token = self.store.list_files(
            self._page_size(request), request.query.get("pageToken")
        )
        body: dict[str, Any] = {}
        if records:  # the live service leaves the list out when it is empty
            body["files"] = [r.resource(request.public_url) for r in records]
        if token:
            body["nextPageToken"] = token
        return json_response(body)

    def files_delete(self, request: Request) -> Response:
        self._check_file_id(request, "DeleteFileRequest")
        self.store.delete_file(request.params[1])
        return json_response({})

    def download(self, request: Request) -> Response:
        if request.query.get("alt") != "media":
            raise bad_request("Downloads need the query parameter alt=media.")
        record = self.store.get_file(request.params[1])
        if record.source != "GENERATED":
            raise bad_request(
                f"Only generated files can be downloaded; {record.name} was uploaded."
            )
        return Response(
            200,
            headers={"Content-Type": "application/octet-stream"},
            file=(record.path, record.size_bytes),
        )

    # ----------------------------------------------------------------------- batches

    def batches_create(self, request: Request) -> Response:
        record = self.store.create_batch(request.params[1], request.json())
        return json_response(self.store.operation(record))

    def batches_create_embeddings(self, request: Request) -> Response:
        record = self.store.create_embeddings(request.params[1], request.json())
        return json_response(self.store.operation(record))

    def batches_get(self, request: Request) -> Response:
        record = self.store.get_batch(request.params[1])
        return json_response(self.store.operation(record))

    def batches_list(self, request: Request) -> Response:
        records, token = self.store.list_batches(
            self._page_size(request), request.query.get("pageToken")
        )
        body: dict[str, Any] = {}
        if records:
            body["operations"] = [self.store.operation(r) for r in records]
        if token:
            body["nextPageToken"] = token
        return json_response(body)

    def batches_cancel(self, request: Request) -> Response:
        self.store.cancel_batch(request.params[1])
        return json_response({})

    def batches_delete(self, request: Request) -> Response:
        self.store.delete_batch(request.params[1])
        return json_response({})

    def handle(self, handler: str, request: Request) -> Response:
        if not handler:
            raise not_found(f"Method not found: {request.method} {request.path}")
        method: Handler = getattr(self, handler)
        return method(request)
