"""Webhooks behind one handle: the WebhookService, the signing key and the deliveries.

Python (``emu.webhooks``)::

    emu.webhooks.deliveries()          # every delivery, its payload and each attempt
    emu.webhooks.configure(backoff_s=0.05, max_attempts=5, timeout_s=1)
    emu.webhooks.tamper("forge")       # also "stale", "replay", "reuse_id"
    emu.webhooks.jwks_url              # where the per-batch tokens' public key is

Control paths (no key, not counted), for tests in another process:

- ``GET  /_emulator/jwks.json``               the JWKS of the per-batch (JWT) deliveries
- ``GET  /_emulator/webhooks/deliveries``     ``{"deliveries": [...]}``
- ``POST /_emulator/webhooks/config``         ``{"backoff_s", "max_backoff_s", "max_attempts",
  "give_up_s", "timeout_s"}``
- ``POST /_emulator/webhooks/tamper``         ``{"kind": "forge", "count": 1}``
"""

from __future__ import annotations

from typing import Any

from gembatch.emulator.delivery import Deliveries, Delivery, message_id
from gembatch.emulator.signing import JwtSigner
from gembatch.emulator.store import Store
from gembatch.emulator.webhooks import WebhookService
from gembatch.emulator.wire import bad_request, dumps, not_found, rfc3339

JWKS_PATH = "jwks.json"
CONFIG_FIELDS = ("backoff_s", "max_backoff_s", "max_attempts", "give_up_s", "timeout_s")


class Hooks:
    def __init__(self, store: Store) -> None:
        self.clock = store.clock
        self.service = WebhookService(store.clock)
        self.signer = JwtSigner()
        self.sender = Deliveries(self.service, self.signer, store)
        self.base_url = ""

    def start(self, base_url: str) -> None:
        self.base_url = base_url
        self.sender.start()

    def stop(self) -> None:
        self.sender.stop()

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/_emulator/{JWKS_PATH}"

    def deliveries(self) -> list[dict[str, Any]]:
        return self.sender.views()

    def configure(self, **changes: Any) -> None:
        unknown = set(changes) - set(CONFIG_FIELDS)
        if unknown:
            raise ValueError(f"unknown delivery options: {', '.join(sorted(unknown))}")
        self.sender.configure(**changes)

    def tamper(self, kind: str, count: int = 1) -> None:
        self.sender.tamper(kind, count)

    def poke(self) -> None:
        self.sender.poke()

    # ------------------------------------------------------------- API (api.py calls)

    def ping(self, webhook_id: str) -> dict[str, Any]:
        """Queue a signed test event to the webhook; the answer is empty, as the SDK's."""
        record = self.service.record(webhook_id)
        event = {
            "type": "webhook.ping",
            "timestamp": rfc3339(self.clock.now_ns()),
            "data": {"id": record.id},
        }
        self.sender.add(
            Delivery(
                message_id(), "webhook.ping", None, record.uri, "hmac", dumps(event), record.id
            )
        )
        return {}

    # ------------------------------------------------------------------ control paths

    def control(self, method: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
        if method == "GET" and route == JWKS_PATH:
            return self.signer.jwks()
        if method == "GET" and route == "webhooks/deliveries":
            return {"deliveries": self.deliveries()}
        if method == "POST" and route == "webhooks/config":
            try:
                self.configure(**body)
            except (TypeError, ValueError) as exc:
                raise bad_request(str(exc)) from None
            return {}
        if method == "POST" and route == "webhooks/tamper":
            try:
                self.tamper(str(body.get("kind", "")), int(body.get("count", 1)))
            except ValueError as exc:
                raise bad_request(str(exc)) from None
            return {}
        raise not_found(f"No control path {method} /_emulator/{route}")


def wants(route: str) -> bool:
    """Whether a ``/_emulator/<route>`` path is one of this module's."""
    return route == JWKS_PATH or route.startswith("webhooks/")
