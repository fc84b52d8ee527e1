"""Conventions of the Gemini REST wire: resource ids, timestamps, JSON and Google's error shape."""

from __future__ import annotations

import json
import secrets
import string
import time
from typing import Any

_ALNUM = string.ascii_lowercase + string.digits

BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
BATCH_OUTPUT_TYPE = (
    "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
)
# Embedding batches: the resource and output the API reference names EmbedContentBatch and
# EmbedContentBatchOutput, in the same package as the generation ones (unverified on the wire).
EMBED_BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatch"
EMBED_OUTPUT_TYPE = (
    "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatchOutput"
)
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"

# HTTP status -> canonical google.rpc status name, as Google's front end pairs them.
HTTP_STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ALREADY_EXISTS",
    411: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# Messages the live service is known to send for these statuses.
DEFAULT_MESSAGES: dict[int, str] = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: (
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting"
    ),
    502: "Bad Gateway",
    503: "The service is currently unavailable.",
    504: "Deadline expired before operation could complete.",
}

# gRPC codes, used inside operations and result files (never HTTP statuses there).
GRPC_CODE_NAMES: dict[int, str] = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    13: "INTERNAL",
    14: "UNAVAILABLE",
}


def new_id(length: int) -> str:
    """A random lowercase alphanumeric id like the live service's (not seeded: ids never repeat
    across emulator runs, so a database that outlives an emulator cannot confuse two batches)."""
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def rfc3339(ns: int) -> str:
    """``2025-12-10T18:27:01.407650525Z``: RFC 3339, UTC, nine fractional digits."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as the live service writes result lines."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def int64(value: int) -> str:
    """int64 fields travel as JSON strings in proto3 JSON."""
    return str(value)


class ApiError(Exception):
    """An answer in Google's JSON error shape: ``{"error": {"code", "message", "status"}}``."""

    def __init__(
        self,
        http_status: int,
        message: str | None = None,
        *,
        status: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.http_status = http_status
        self.message = message or DEFAULT_MESSAGES.get(http_status, "Request failed.")
        self.status = status or HTTP_STATUS_NAMES.get(http_status, "UNKNOWN")
        self.details = details
        self.headers = dict(headers or {})
        super().__init__(f"{http_status} {self.status}: {self.message}")

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.http_status,
            "message": self.message,
            "status": self.status,
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}


def either_case(obj: dict[str, Any], camel: str, snake: str) -> Any:
    """A request field by its camelCase name, else its snake_case one (proto3 JSON accepts both)."""
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def rate_limited(message: str | None = None, retry_after_s: int = 1) -> ApiError:
    """A 429 as the live service sends it: RetryInfo detail plus a ``Retry-After`` header."""
    return ApiError(
        429,
        message,
        details=[{"@type": RETRY_INFO_TYPE, "retryDelay": f"{retry_after_s}s"}],
        headers={"Retry-After": str(retry_after_s)},
    )


def http_error(code: int, message: str | None = None) -> ApiError:
    """The error answer for an HTTP status code, with the live service's extras for 429."""
    if code == 429:
        return rate_limited(message)
    return ApiError(code, message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def rpc_status(code: int, message: str) -> dict[str, Any]:
    """A google.rpc.Status without ``details``: the SDK types inline ``details`` as list[str]
    and would reject the objects a full Status carries (protocol doc §7)."""
    return {"code": code, "message": message}
