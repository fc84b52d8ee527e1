"""The WebhookService: project-level (static) webhooks, as ``client.webhooks.*`` speaks it.

Wire facts (docs/webhooks.md says how each is known): the paths are ``/{v}/webhooks``,
``/{v}/webhooks/{id}``, ``/{v}/webhooks/{id}:ping`` and ``/{v}/webhooks/{id}:rotateSigningSecret``
(SDK ``_gaos/webhooks.py``); bodies and answers use snake_case field names, the SDK's models
having no camelCase aliases (``_gaos/types/webhooks/``); list pages take ``page_size`` (at most
1000, 50 by default) and ``page_token``; an update takes ``update_mask``. The signing secret
is in the create answer alone (``new_signing_secret``); get and list show each secret in force
truncated, ``whsec_...3frh``, with the ``expire_time`` of one that was rotated out.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gembatch.emulator.records import Ordered, decode_token, encode_token
from gembatch.emulator.signing import new_secret, truncated
from gembatch.emulator.state import NS, Clock
from gembatch.emulator.wire import ApiError, bad_request, new_id, not_found, rfc3339

BATCH_EVENTS = ("batch.succeeded", "batch.failed", "batch.expired")
# Every event the SDK's WebhookSubscribedEvent names; the emulator emits the batch ones.
KNOWN_EVENTS = frozenset(
    {
        *BATCH_EVENTS,
        "interaction.requires_action",
        "interaction.completed",
        "interaction.failed",
        "video.generated",
    }
)
STATES = frozenset({"enabled", "disabled", "disabled_due_to_failed_deliveries"})
UPDATABLE = ("name", "state", "subscribed_events", "uri")
PAGE_DEFAULT, PAGE_MAX = 50, 1000
# A secret rotated out with the default behaviour still signs for a day.
GRACE_NS = 24 * 3600 * NS
IMMEDIATELY = "revoke_previous_secrets_immediately"
AFTER_DAY = "revoke_previous_secrets_after_h24"


@dataclass
class Secret:
    value: str
    expire_ns: int | None = None  # set once rotated out


@dataclass
class WebhookRecord:
    id: str
    seq: int
    uri: str
    subscribed_events: list[str]
    name: str | None
    state: str
    secrets: list[Secret]  # newest first
    create_ns: int
    update_ns: int

    def live_secrets(self, now: int) -> list[str]:
        return [s.value for s in self.secrets if s.expire_ns is None or s.expire_ns > now]

    def resource(self, now: int) -> dict[str, Any]:
        secrets = []
        for s in self.secrets:
            if s.expire_ns is not None and s.expire_ns <= now:
                continue
            shown: dict[str, Any] = {"truncated_secret": truncated(s.value)}
            if s.expire_ns is not None:
                shown["expire_time"] = rfc3339(s.expire_ns)
            secrets.append(shown)
        out: dict[str, Any] = {"id": self.id}
        if self.name is not None:
            out["name"] = self.name
        # No create_time/update_time: the live service's answers observed so far carry
        # none (the SDK reads them as None in Google's own cookbook output).
        out.update(
            {
                "uri": self.uri,
                "subscribed_events": list(self.subscribed_events),
                "state": self.state,
                "signing_secrets": secrets,
            }
        )
        return out


@dataclass
class WebhookService:
    """Every registered webhook, by id and in creation order."""

    clock: Clock
    records: Ordered = field(default_factory=Ordered)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: int = 0

    # ------------------------------------------------------------------------- the API

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        uri = _uri(body.get("uri"))
        events = _events(body.get("subscribed_events"))
        name = _name(body.get("name"))
        now = self.clock.now_ns()
        secret = new_secret()
        with self.lock:
            self._seq += 1
            record = WebhookRecord(
                id=new_id(36),
                seq=self._seq,
                uri=uri,
                subscribed_events=events,
                name=name,
                state="enabled",
                secrets=[Secret(secret)],
                create_ns=now,
                update_ns=now,
            )
            self.records.add(record)
        # The one answer that carries the whole secret.
        return {**record.resource(now), "new_signing_secret": secret}

    def list(self, query: dict[str, str]) -> dict[str, Any]:
        size = _page_size(query.get("page_size") or query.get("pageSize"))
        token = query.get("page_token") or query.get("pageToken")
        before = decode_token("webhooks", token) if token else None
        now = self.clock.now_ns()
        with self.lock:
            records, cursor = self.records.page(before, size)
            shown = [r.resource(now) for r in records]
        body: dict[str, Any] = {}
        if shown:
            body["webhooks"] = shown
        if cursor is not None:
            body["next_page_token"] = encode_token("webhooks", cursor)
        return body

    def get(self, webhook_id: str) -> dict[str, Any]:
        with self.lock:
            return self._find(webhook_id).resource(self.clock.now_ns())

    def update(
        self, webhook_id: str, body: dict[str, Any], mask: str | None = None
    ) -> dict[str, Any]:
        fields = _mask(mask) if mask else [f for f in UPDATABLE if body.get(f) is not None]
        changes: dict[str, Any] = {}
        for name in fields:
            value = body.get(name)
            if name == "uri":
                changes[name] = _uri(value)
            elif name == "subscribed_events":
                changes[name] = _events(value)
            elif name == "state":
                if value not in STATES:
                    raise bad_request(f"Invalid webhook state: {value!r}.")
                changes[name] = value
            else:
                changes[name] = _name(value)
        now = self.clock.now_ns()
        with self.lock:
            record = self._find(webhook_id)
            for name, value in changes.items():
                setattr(record, name, value)
            record.update_ns = now
            return record.resource(now)

    def delete(self, webhook_id: str) -> None:
        with self.lock:
            self.records.remove(self._find(webhook_id))

    def rotate(self, webhook_id: str, behavior: str | None) -> dict[str, Any]:
        if behavior not in (None, IMMEDIATELY, AFTER_DAY):
            raise bad_request(f"Invalid revocation_behavior: {behavior!r}.")
        now = self.clock.now_ns()
        secret = new_secret()
        with self.lock:
            record = self._find(webhook_id)
            for old in record.secrets:
                if behavior == IMMEDIATELY:
                    old.expire_ns = now
                elif old.expire_ns is None:
                    old.expire_ns = now + GRACE_NS
            record.secrets = [Secret(secret)] + [
                s for s in record.secrets if s.expire_ns is None or s.expire_ns > now
            ]
            record.update_ns = now
        return {"secret": secret}

    # ------------------------------------------------------------------ for deliveries

    def record(self, webhook_id: str) -> WebhookRecord:
        with self.lock:
            return self._find(webhook_id)

    def subscribers(self, event_type: str) -> list[tuple[str, str, list[str]]]:
        """(webhook id, uri, secrets in force) of every enabled webhook taking ``event_type``."""
        now = self.clock.now_ns()
        with self.lock:
            return [
                (r.id, r.uri, r.live_secrets(now))
                for r in self.records.by_id.values()
                if r.state == "enabled" and event_type in r.subscribed_events
            ]

    def secrets_of(self, webhook_id: str) -> list[str] | None:
        """The secrets a retry signs with now (a rotation between attempts applies)."""
        with self.lock:
            record = self.records.by_id.get(webhook_id)
            return None if record is None else record.live_secrets(self.clock.now_ns())

    def __len__(self) -> int:
        with self.lock:
            return len(self.records)

    def _find(self, webhook_id: str) -> WebhookRecord:
        record = self.records.by_id.get(webhook_id.removeprefix("webhooks/"))
        if record is None:
            raise not_found(f"Webhook {webhook_id} not found.")
        return record


def _uri(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise bad_request("webhook.uri is required.")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise bad_request(f"Invalid webhook uri: {value!r}.")
    return value


def _events(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise bad_request("webhook.subscribed_events must be a non-empty list.")
    for event in value:
        if event not in KNOWN_EVENTS:
            raise bad_request(f"Unknown event in subscribed_events: {event!r}.")
    return list(dict.fromkeys(value))


def _name(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise bad_request("webhook.name must be a string.")
    return value


def _mask(mask: str) -> list[str]:
    fields = [f.strip() for f in mask.split(",") if f.strip()]
    for name in fields:
        if name not in UPDATABLE:
            raise bad_request(f"Invalid update_mask field: {name!r}.")
    return fields


def _page_size(raw: str | None) -> int:
    if raw is None:
        return PAGE_DEFAULT
    try:
        size = int(raw)
    except ValueError:
        raise bad_request(f"Invalid page_size: {raw}") from None
    if size < 0:
        raise ApiError(400, "page_size must not be negative.")
    return min(size or PAGE_DEFAULT, PAGE_MAX)
