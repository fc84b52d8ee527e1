"""The errors every remote call raises instead of the SDK's own."""

from __future__ import annotations

# HTTP statuses worth another attempt; other 4xx are the caller's mistake.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


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
    """The remote object does not exist (404)."""


class ResultsNotReady(RemoteError):
    """The API says a batch succeeded but does not name (or carry) its results yet.

    The service is known to report SUCCEEDED a little before the output exists.
    Not an error of the job: it is asked again next cycle, never given up on,
    and nothing is deleted meanwhile."""


class Interrupted(Exception):
    """A long transfer stopped because the caller asked it to (Ctrl+C)."""


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
