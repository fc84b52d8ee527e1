"""Webhook deliveries: an event for each batch that ends, posted, signed, and retried.

A background thread looks at the batches every ``scan_s`` (50 ms) and at once when a state is
forced. A batch seen SUCCEEDED, FAILED or EXPIRED for the first time makes one event
(``batch.succeeded`` ...; a cancelled batch makes none: the SDK names no such event). It goes
to the batch's own ``webhookConfig.uris`` when it has any, signed as an RS256 JWT, and
otherwise to every enabled registered webhook subscribed to it, HMAC-signed ("If set, these
webhook URIs will be used instead of the registered webhooks": SDK ``types.WebhookConfig``).

Every destination is a :class:`Delivery` with one ``webhook-id`` for all its attempts. A
non-2xx answer, a refused connection or a timeout is retried after ``backoff_s``, doubled each
time up to ``max_backoff_s``, until ``max_attempts`` or ``give_up_s`` (the live service: 24 h).
Each attempt is signed anew with its own ``webhook-timestamp``; the body never changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import string
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from gembatch.emulator.signing import JwtSigner, b64url, hmac_signature
from gembatch.emulator.store import BatchStatus, Store
from gembatch.emulator.webhooks import WebhookService
from gembatch.emulator.wire import ApiError

EVENT_OF = {"SUCCEEDED": "batch.succeeded", "FAILED": "batch.failed", "EXPIRED": "batch.expired"}
TERMINAL = frozenset({*EVENT_OF, "CANCELLED"})
TAMPERING = ("forge", "stale", "replay", "reuse_id")
# Issuer of the emulator's tokens (unverified for the live service: docs/webhooks.md).
ISSUER = "https://generativelanguage.googleapis.com"
_ALNUM = string.ascii_letters + string.digits


@dataclass
class Policy:
    backoff_s: float = 1.0
    max_backoff_s: float = 600.0
    max_attempts: int | None = None
    give_up_s: float = 24 * 3600.0
    timeout_s: float = 5.0


@dataclass
class Attempt:
    at: float  # wall clock, seconds
    timestamp: int  # the webhook-timestamp header sent
    status: int | None  # None: no HTTP answer (refused, timed out)
    error: str | None = None
    replay: bool = False  # an exact copy of the previous request (the "replay" switch)


@dataclass
class Delivery:
    webhook_id: str  # the webhook-id header: one per event, the same on every attempt
    event_type: str
    batch: str | None
    url: str
    scheme: str  # "hmac" (registered webhook) or "jwt" (the batch's own URIs)
    body: bytes
    registered: str | None = None  # the registered webhook's id
    tamper: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    state: str = "pending"  # pending, delivered, gave_up
    created: float = field(default_factory=time.time)
    due: float = 0.0  # monotonic time of the next attempt
    busy: bool = False

    def view(self) -> dict[str, Any]:
        """A plain copy for tests and the control path (the body as parsed JSON)."""
        return {
            "webhook_id": self.webhook_id,
            "event_type": self.event_type,
            "batch": self.batch,
            "url": self.url,
            "scheme": self.scheme,
            "registered": self.registered,
            "tamper": self.tamper,
            "state": self.state,
            "payload": json.loads(self.body),
            "attempts": [vars(replace(a)) for a in self.attempts],
        }


def message_id() -> str:
    """``msg_`` and 27 characters, the Standard Webhooks (Svix) form of a message id."""
    return "msg_" + "".join(secrets.choice(_ALNUM) for _ in range(27))


class Deliveries:
    """The watcher thread, the sender pool and the record of every delivery."""

    def __init__(
        self,
        hooks: WebhookService,
        signer: JwtSigner,
        store: Store,
        *,
        scan_s: float = 0.05,
    ) -> None:
        self.hooks = hooks
        self.signer = signer
        self.store = store
        self.scan_s = scan_s
        self.policy = Policy()
        self.items: list[Delivery] = []
        self._seen: set[str] = set()  # batches whose ending was already told
        self._tamper: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ start and stop

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="emulator-hook")
            self._thread = threading.Thread(target=self._run, name="emulator-hooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def poke(self) -> None:
        """Look now: a state was forced (``set_state``, ``finish_all``, cancel)."""
        self._wake.set()

    # --------------------------------------------------------------------- switches

    def configure(self, **changes: Any) -> None:
        with self._lock:
            self.policy = replace(self.policy, **changes)

    def tamper(self, kind: str, count: int = 1) -> None:
        """The next ``count`` deliveries go out tampered with, on every attempt: ``forge``
        (a signature that does not verify), ``stale`` (signed 10 minutes ago), ``replay``
        (once answered 2xx, the very same request is sent again) or ``reuse_id`` (a new
        event under the webhook-id of the one before, validly signed)."""
        if kind not in TAMPERING:
            raise ValueError(f"tamper must be one of {', '.join(TAMPERING)}")
        with self._lock:
            self._tamper.extend([kind] * count)
        self._wake.set()

    def views(self) -> list[dict[str, Any]]:
        with self._lock:
            return [d.view() for d in self.items]

    def add(self, delivery: Delivery) -> None:
        with self._lock:
            if self._tamper:
                delivery.tamper = self._tamper.pop(0)
                if delivery.tamper == "reuse_id" and self.items:
                    delivery.webhook_id = self.items[-1].webhook_id
            self.items.append(delivery)
        self._wake.set()

    # ------------------------------------------------------------------------ watching

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.scan_s)
            self._wake.clear()
            with contextlib.suppress(Exception):  # a bad batch must not end the watcher
                self._scan()
            self._send_due()

    def _scan(self) -> None:
        registered = len(self.hooks) > 0
        for record in self.store.batch_records():
            # Nobody to tell: not even the batch's state is computed (a benchmark's fleet
            # of idle batches costs the watcher nothing).
            if record.id in self._seen or not (registered or record.webhook_config):
                continue
            try:
                status = self.store.status(record.name)
            except ApiError:  # deleted meanwhile
                continue
            if status.state not in TERMINAL:
                if (record.webhook_config or {}).get("uris"):
                    # Made while the batch runs, not when its event is due.
                    _ = self.signer.key
                continue
            self._seen.add(record.id)
            if status.state in EVENT_OF:
                self._announce(status, self.store.operation(record))

    def _announce(self, status: BatchStatus, operation: dict[str, Any]) -> None:
        event_type = EVENT_OF[status.state]
        config = status.webhook_config or {}
        body = event_body(event_type, operation, config.get("userMetadata") or None)
        webhook_id = message_id()
        uris = config.get("uris") or []
        if uris:
            for uri in uris:
                self.add(Delivery(webhook_id, event_type, status.name, uri, "jwt", body))
            return
        for hook_id, uri, _ in self.hooks.subscribers(event_type):
            self.add(
                Delivery(webhook_id, event_type, status.name, uri, "hmac", body, registered=hook_id)
            )

    # ------------------------------------------------------------------------- sending

    def _send_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [d for d in self.items if d.state == "pending" and not d.busy and d.due <= now]
            for delivery in due:
                delivery.busy = True
        for delivery in due:
            if self._pool is None:
                return
            self._pool.submit(self._attempt, delivery)

    def _attempt(self, delivery: Delivery) -> None:
        replayed: Attempt | None = None
        try:
            if delivery.registered and self.hooks.secrets_of(delivery.registered) is None:
                # The webhook was deleted before its event got through: nobody to tell.
                with self._lock:
                    delivery.state = "gave_up"
                return
            headers, stamp = self._headers(delivery)
            status, error = self._post(delivery.url, delivery.body, headers)
            attempt = Attempt(time.time(), stamp, status, error)
            if delivery.tamper == "replay" and status is not None and 200 <= status < 300:
                again, again_error = self._post(delivery.url, delivery.body, headers)
                replayed = Attempt(time.time(), stamp, again, again_error, replay=True)
        except Exception as exc:  # an emulator bug: recorded on the attempt, retried
            status = None
            attempt = Attempt(time.time(), 0, None, f"{type(exc).__name__}: {exc}")
        try:
            with self._lock:
                delivery.attempts.append(attempt)
                if replayed is not None:
                    delivery.attempts.append(replayed)
                self._settle(delivery, status)
        finally:
            with self._lock:
                delivery.busy = False
            self._wake.set()

    def _settle(self, delivery: Delivery, status: int | None) -> None:
        policy = self.policy
        if status is not None and 200 <= status < 300:
            delivery.state = "delivered"
            return
        tries = len([a for a in delivery.attempts if not a.replay])
        waited = time.time() - delivery.created
        if (policy.max_attempts is not None and tries >= policy.max_attempts) or (
            waited >= policy.give_up_s
        ):
            delivery.state = "gave_up"
            return
        pause = min(policy.max_backoff_s, policy.backoff_s * 2 ** (tries - 1))
        delivery.due = time.monotonic() + pause

    def _headers(self, delivery: Delivery) -> tuple[dict[str, str], int]:
        stamp = int(time.time()) - (600 if delivery.tamper == "stale" else 0)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "gembatch-emulator-webhooks",
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(stamp),
        }
        if delivery.scheme == "jwt":
            token = self.signer.token(jwt_claims(delivery, stamp))
            if delivery.tamper == "forge":
                head, claims, signature = token.split(".")
                token = f"{head}.{claims}.{b64url(secrets.token_bytes(len(signature) * 3 // 4))}"
            headers["webhook-signature"] = token
        else:
            secrets_now = self.hooks.secrets_of(delivery.registered or "") or []
            if delivery.tamper == "forge":
                secrets_now = [f"whsec_{b64url(secrets.token_bytes(32))}="]
            headers["webhook-signature"] = " ".join(
                hmac_signature(s, delivery.webhook_id, stamp, delivery.body) for s in secrets_now
            )
        return headers, stamp

    def _post(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int | None, str | None]:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.policy.timeout_s) as answer:
                answer.read()
                return answer.status, None
        except urllib.error.HTTPError as exc:
            with contextlib.suppress(Exception):
                exc.read()
            return exc.code, None
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
            return None, f"{type(exc).__name__}: {exc}"


def event_body(
    event_type: str, operation: dict[str, Any], user_metadata: dict[str, Any] | None
) -> bytes:
    """The thin event: which batch, how it ended, where its results are; never the results."""
    meta = operation.get("metadata") or {}
    data: dict[str, Any] = {"id": operation.get("name"), "state": meta.get("state")}
    for wire, key in (("createTime", "create_time"), ("endTime", "end_time")):
        if meta.get(wire):
            data[key] = meta[wire]
    output = meta.get("output") or {}
    if output.get("responsesFile"):
        data["output_file_uri"] = output["responsesFile"]
    error = operation.get("error")
    if error:
        data["error_code"] = error.get("code")
        data["error_message"] = error.get("message")
    if user_metadata:
        data["user_metadata"] = user_metadata
    event = {"type": event_type, "timestamp": meta.get("endTime"), "data": data}
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def jwt_claims(delivery: Delivery, stamp: int) -> dict[str, Any]:
    """The token of a per-batch delivery: who sent it, for which URL, for how long, and
    which delivery and body it vouches for (unverified: docs/webhooks.md says why)."""
    return {
        "iss": ISSUER,
        "aud": delivery.url,
        "sub": delivery.batch or "",
        "iat": stamp,
        "exp": stamp + 300,
        "jti": delivery.webhook_id,
        "body_sha256": b64url(hashlib.sha256(delivery.body).digest()),
    }
