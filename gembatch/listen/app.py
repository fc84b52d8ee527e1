"""The receiver as a plain ASGI application (served by uvicorn: :mod:`gembatch.listen.runner`).

``POST <path>``: the body is read whole up to ``max_body`` bytes (413 past it), verified
(:mod:`gembatch.listen.verify`), read as an event (:mod:`gembatch.listen.events`) and
recorded in the database; only once that transaction has committed does the sender get its
2xx. Then the event's job is handed to the hint worker, so the answer never waits for a poll.

- ``200 {"status": "recorded"}``: new, committed; its job is polled now.
- ``200 {"status": "duplicate"}``: this webhook-id with this content was recorded before (a
  retry or a replay): nothing is recorded or polled again. Standard Webhooks senders retry
  every non-2xx, so refusing would only make a lost answer be sent again and again.
- ``409``: this webhook-id was recorded with other content. A sender never reuses an id for
  another event, so it is refused and nothing is recorded.
- ``400`` (not an event), ``401`` (not verified, or too far off in time), ``404`` (another
  path), ``405`` (another method), ``413`` (too large), ``503`` (the key set or the
  database cannot be reached now: the sender retries later).
- ``GET /healthz``: ``{"ok": true}``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gembatch.listen.events import Hint, read_event
from gembatch.listen.verify import Rejected, Verified, Verifier
from gembatch.store.webhook_events import CONFLICT, DUPLICATE, RECORDED, RecordedEvent

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 1 << 20  # an event is a few hundred bytes; a megabyte is plenty
HEALTH_PATH = "/healthz"


class ListenApp:
    def __init__(
        self,
        verifier: Verifier,
        record: Callable[[Verified, Hint], RecordedEvent],
        on_event: Callable[[RecordedEvent, Hint], None],
        say: Callable[[str], None],
        *,
        path: str = "/",
        max_body: int = MAX_BODY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verifier = verifier
        self.record = record
        self.on_event = on_event
        self.say = say
        self.path = path
        self.max_body = max_body
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            await _answer(send, 200, {"ok": True})
        elif path != self.path:
            await _answer(send, 404, {"error": "not found"})
        elif method != "POST":
            await _answer(send, 405, {"error": "POST only"}, [(b"allow", b"POST")])
        else:
            status, body = await self._delivery(scope, receive)
            await _answer(send, status, body)

    async def _delivery(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers") or []
        }
        body = await _read_body(receive, headers, self.max_body)
        if body is None:
            return self._refuse(headers, Rejected(413, f"the body is over {self.max_body} bytes"))
        try:
            verified = await asyncio.to_thread(self.verifier.verify, headers, body, self.clock())
            hint = read_event(verified.payload, verified.token_batch)
        except Rejected as refusal:
            return self._refuse(headers, refusal)
        try:
            recorded = await asyncio.to_thread(self.record, verified, hint)
        except Exception as exc:  # the database: say 503, and the sender retries later
            self.say(f"event {verified.webhook_id}: not recorded ({type(exc).__name__}: {exc})")
            return 503, {"error": "the event could not be recorded now"}
        return self._recorded(recorded, hint, verified)

    def _recorded(
        self, recorded: RecordedEvent, hint: Hint, verified: Verified
    ) -> tuple[int, dict[str, Any]]:
        what = f"{hint.event_type} {hint.batch_name or ''}".strip()
        if recorded.outcome == CONFLICT:
            self.say(
                f"refused {what} (409): webhook-id {verified.webhook_id} seen with other content"
            )
            return 409, {"error": "this webhook-id was recorded with other content"}
        if recorded.outcome == DUPLICATE:
            self.say(f"{what}: webhook-id {verified.webhook_id} seen before; nothing done again")
        elif recorded.job_id is None:
            why = "no job here tracks that batch" if hint.about_a_batch else "not about a batch"
            self.say(f"recorded {what} ({verified.scheme}): {why}; nothing polled")
        else:
            self.say(f"recorded {what} ({verified.scheme}) for job {recorded.job_id}")
        if recorded.job_id is not None and not recorded.polled:
            # A duplicate whose first delivery was never polled for (a crash in between)
            # is polled for now; one already queued here is not queued twice.
            self.on_event(recorded, hint)
        status = RECORDED if recorded.outcome == RECORDED else DUPLICATE
        return 200, {"status": status}

    def _refuse(self, headers: dict[str, str], refusal: Rejected) -> tuple[int, dict[str, Any]]:
        shown = headers.get("webhook-id", "")[:80] or "without webhook-id"
        self.say(f"refused a delivery ({shown}): {refusal.status} {refusal.reason}")
        return refusal.status, {"error": refusal.reason}


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes | None:
    """The whole body, or None once it passes ``limit`` (read no further)."""
    declared = headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(
    send: Send,
    status: int,
    body: dict[str, Any],
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    data = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
