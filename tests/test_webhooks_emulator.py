"""The emulator's webhooks through the real SDK: the WebhookService (``client.webhooks.*``),
signed deliveries when batches end, retries, and the switches that tamper with deliveries.

Deliveries are received by a plain HTTP server here and checked with the libraries a
receiver would use (``standardwebhooks`` for HMAC, PyJWT for the RS256 tokens), never with
the emulator's own code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from google import genai
from jobfactory import client_for
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from waiting import wait_for

from gembatch.emulator import Emulator, running_emulator

MODEL = "models/gemini-2.5-flash"
REQUEST = {"contents": [{"parts": [{"text": "hello"}]}]}


class Sink:
    """An HTTP endpoint that keeps every POST and answers with the statuses it is given."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []  # popped per request; 200 once empty
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink.lock:
                    sink.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = sink.answers.pop(0) if sink.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body in self.received]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    # Batches run until forced: each test decides when one ends.
    with running_emulator(pending_s=0.0, running_s=3600.0) as emulator:
        emulator.webhooks.configure(backoff_s=0.05, max_backoff_s=0.2, timeout_s=2.0)
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[genai.Client]:
    made = client_for(emu)
    yield made
    made.close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    made = Sink()
    yield made
    made.close()


def new_batch(client: genai.Client, **config: Any) -> str:
    job = client.batches.create(model=MODEL, src=[REQUEST], config=config or None)  # type: ignore[arg-type]
    assert job.name
    return job.name


def delivered(emu: Emulator, count: int = 1) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        items = [d for d in emu.webhooks.deliveries() if d["state"] != "pending"]
        return items if len(items) >= count else None

    return wait_for(done)


# --------------------------------------------------------------------- WebhookService


def test_create_shows_the_secret_once_and_get_list_show_it_truncated(client: genai.Client) -> None:
    made = client.webhooks.create(
        name="finished", subscribed_events=["batch.succeeded"], uri="https://example.com/h"
    )
    assert made.id and len(made.id) == 36
    secret = made.new_signing_secret
    assert secret and secret.startswith("whsec_")
    Webhook(secret)  # a valid Standard Webhooks secret
    got = client.webhooks.get(id=made.id)
    assert got.new_signing_secret is None
    assert got.state == "enabled"
    assert got.name == "finished" and got.uri == "https://example.com/h"
    assert got.subscribed_events == ["batch.succeeded"]
    assert [s.truncated_secret for s in got.signing_secrets or []] == [f"whsec_...{secret[-4:]}"]
    listed = client.webhooks.list()
    assert [w.id for w in listed.webhooks or []] == [made.id]
    assert all(w.new_signing_secret is None for w in listed.webhooks or [])


def test_list_pages_update_and_delete(client: genai.Client) -> None:
    ids = [
        client.webhooks.create(subscribed_events=["batch.failed"], uri=f"https://e.com/{n}").id
        for n in range(3)
    ]
    first = client.webhooks.list(page_size=2)
    assert len(first.webhooks or []) == 2 and first.next_page_token
    second = client.webhooks.list(page_size=2, page_token=first.next_page_token)
    assert second.next_page_token is None
    seen = [w.id for w in (first.webhooks or []) + (second.webhooks or [])]
    assert sorted(seen) == sorted(ids)

    changed = client.webhooks.update(id=ids[0], name="renamed", state="disabled")
    assert (changed.name, changed.state) == ("renamed", "disabled")
    masked = client.webhooks.update(id=ids[0], uri="https://other.com/", update_mask="uri")
    assert (masked.uri, masked.name, masked.state) == ("https://other.com/", "renamed", "disabled")

    client.webhooks.delete(id=ids[0])
    with pytest.raises(Exception) as missing:
        client.webhooks.get(id=ids[0])
    assert getattr(missing.value, "status_code", None) == 404
    assert len(client.webhooks.list().webhooks or []) == 2


@pytest.mark.parametrize(
    "bad",
    [
        {"subscribed_events": ["batch.exploded"], "uri": "https://e.com/"},
        {"subscribed_events": [], "uri": "https://e.com/"},
        {"subscribed_events": ["batch.failed"], "uri": "ftp://e.com/"},
    ],
)
def test_create_refuses_bad_input_with_400(client: genai.Client, bad: dict[str, Any]) -> None:
    with pytest.raises(Exception) as refused:
        client.webhooks.create(**bad)
    assert getattr(refused.value, "status_code", None) == 400
    assert client.webhooks.list().webhooks is None


def test_ping_posts_a_test_event_signed_with_the_secret(
    client: genai.Client, emu: Emulator, sink: Sink
) -> None:
    made = client.webhooks.create(subscribed_events=["batch.succeeded"], uri=sink.url)
    client.webhooks.ping(id=made.id)
    delivered(emu)
    headers, body = sink.received[0]
    payload = Webhook(made.new_signing_secret or "").verify(body, headers)
    assert payload["type"] == "webhook.ping"


def test_rotation_signs_with_both_secrets_until_the_old_one_is_revoked(
    client: genai.Client, emu: Emulator, sink: Sink
) -> None:
    made = client.webhooks.create(subscribed_events=["batch.succeeded"], uri=sink.url)
    old = made.new_signing_secret or ""
    new = client.webhooks.rotate_signing_secret(id=made.id).secret or ""
    assert new.startswith("whsec_") and new != old
    shown = client.webhooks.get(id=made.id).signing_secrets or []
    assert [s.truncated_secret for s in shown] == [f"whsec_...{new[-4:]}", f"whsec_...{old[-4:]}"]
    assert shown[0].expire_time is None and shown[1].expire_time is not None

    emu.set_state(new_batch(client), "SUCCEEDED")
    delivered(emu)
    headers, body = sink.received[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)

    client.webhooks.rotate_signing_secret(
        id=made.id, revocation_behavior="revoke_previous_secrets_immediately"
    )
    assert len(client.webhooks.get(id=made.id).signing_secrets or []) == 1


# ------------------------------------------------------------------------- deliveries


def test_an_ending_batch_goes_to_each_enabled_subscribed_webhook(
    client: genai.Client, emu: Emulator, sink: Sink
) -> None:
    wanted = client.webhooks.create(subscribed_events=["batch.succeeded"], uri=sink.url)
    client.webhooks.create(subscribed_events=["batch.failed"], uri=sink.url + "/failed-only")
    off = client.webhooks.create(subscribed_events=["batch.succeeded"], uri=sink.url + "/off")
    client.webhooks.update(id=off.id, state="disabled")
    name = new_batch(client)
    time.sleep(0.2)
    assert sink.received == []  # a running batch tells nobody
    emu.set_state(name, "SUCCEEDED")
    [item] = delivered(emu)
    assert item["registered"] == wanted.id and item["scheme"] == "hmac"
    [(headers, body)] = sink.received
    event = Webhook(wanted.new_signing_secret or "").verify(body, headers)
    assert event["type"] == "batch.succeeded"
    assert event["data"]["id"] == name
    assert event["data"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert headers["webhook-id"].startswith("msg_")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60


def test_per_batch_uris_replace_the_registered_webhooks_and_carry_a_jwt(
    client: genai.Client, emu: Emulator, sink: Sink
) -> None:
    client.webhooks.create(subscribed_events=["batch.succeeded"], uri=sink.url + "/registered")
    config = {"uris": [sink.url], "user_metadata": {"gembatch_job_id": "7"}}
    name = new_batch(client, webhook_config=config)
    emu.set_state(name, "SUCCEEDED")
    [item] = delivered(emu)
    assert item["scheme"] == "jwt" and item["url"] == sink.url
    [(headers, body)] = sink.received
    token = headers["webhook-signature"]
    key = jwt.PyJWKClient(emu.webhooks.jwks_url).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=sink.url)
    assert claims["jti"] == headers["webhook-id"]
    assert claims["exp"] > claims["iat"]
    event = json.loads(body)
    assert event["data"]["id"] == name
    assert event["data"]["user_metadata"] == {"gembatch_job_id": "7"}
    # The token names the very body it was issued for.
    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
    assert claims["body_sha256"] == digest


def test_failed_and_expired_batches_have_events_and_a_cancelled_one_none(
    client: genai.Client, emu: Emulator, sink: Sink
) -> None:
    client.webhooks.create(
        subscribed_events=["batch.succeeded", "batch.failed", "batch.expired"], uri=sink.url
    )
    failed, expired, cancelled = (new_batch(client) for _ in range(3))
    client.batches.cancel(name=cancelled)
    emu.set_state(failed, "FAILED", "broken")
    emu.set_state(expired, "EXPIRED")
    delivered(emu, 2)
    time.sleep(0.2)  # a few more scans: the cancelled batch must stay silent
    by_batch = {e["data"]["id"]: e for e in sink.events()}
    assert set(by_batch) == {failed, expired}
    assert by_batch[failed]["type"] == "batch.failed"
    assert by_batch[failed]["data"]["error_message"] == "broken"
    assert by_batch[expired]["type"] == "batch.expired"


def test_a_refused_delivery_is_retried_with_the_same_webhook_id(
    client: genai.Client, emu: Emulator, sink: Sink
) -> None:
    sink.answers = [503, 500]
    made = client.webhooks.create(subscribed_events=["batch.succeeded"], uri=sink.url)
    emu.set_state(new_batch(client), "SUCCEEDED")
    [item] = delivered(emu)
    assert item["state"] == "delivered"
    assert [a["status"] for a in item["attempts"]] == [503, 500, 200]
    ids = {headers["webhook-id"] for headers, _ in sink.received}
    assert ids == {item["webhook_id"]}
    for headers, body in sink.received:  # each attempt signed anew, all valid
        Webhook(made.new_signing_secret or "").verify(body, headers)


def test_an_unreachable_receiver_is_given_up_after_max_attempts(
    client: genai.Client, emu: Emulator, sink: Sink
) -> None:
    emu.webhooks.configure(max_attempts=3)
    url = sink.url
    sink.close()  # nothing listens there any more: connection refused
    client.webhooks.create(subscribed_events=["batch.succeeded"], uri=url)
    emu.set_state(new_batch(client), "SUCCEEDED")
    [item] = delivered(emu)
    assert item["state"] == "gave_up"
    assert [a["status"] for a in item["attempts"]] == [None, None, None]
    assert all(a["error"] for a in item["attempts"])


# ----------------------------------------------------------------- tampering switches


def test_forge_and_stale_deliveries_do_not_verify(
    client: genai.Client, emu: Emulator, sink: Sink
) -> None:
    made = client.webhooks.create(subscribed_events=["batch.succeeded"], uri=sink.url)
    emu.webhooks.tamper("forge")
    emu.webhooks.tamper("stale")
    emu.set_state(new_batch(client), "SUCCEEDED")
    emu.set_state(new_batch(client), "SUCCEEDED")
    items = delivered(emu, 2)
    assert sorted(i["tamper"] for i in items) == ["forge", "stale"]
    checker = Webhook(made.new_signing_secret or "")
    for headers, body in sink.received:
        with pytest.raises(WebhookVerificationError):
            checker.verify(body, headers)
    stale = next(h for h, _ in sink.received if int(h["webhook-timestamp"]) < time.time() - 500)
    assert stale


def test_a_forged_token_does_not_verify_against_the_jwks(
    client: genai.Client, emu: Emulator, sink: Sink
) -> None:
    emu.webhooks.tamper("forge")
    emu.set_state(new_batch(client, webhook_config={"uris": [sink.url]}), "SUCCEEDED")
    delivered(emu)
    token = sink.received[0][0]["webhook-signature"]
    key = jwt.PyJWKClient(emu.webhooks.jwks_url).get_signing_key_from_jwt(token)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, key.key, algorithms=["RS256"], options={"verify_aud": False})


def test_replay_and_reuse_id_through_the_control_paths(
    client: genai.Client, emu: Emulator, sink: Sink
) -> None:
    client.webhooks.create(subscribed_events=["batch.succeeded"], uri=sink.url)
    for kind in ("replay", "reuse_id"):
        control(emu, "webhooks/tamper", {"kind": kind})
        emu.set_state(new_batch(client), "SUCCEEDED")
        delivered(emu, 1 if kind == "replay" else 2)
    items = control(emu, "webhooks/deliveries")["deliveries"]
    first, second = items
    assert [a["replay"] for a in first["attempts"]] == [False, True]
    assert sink.received[0] == sink.received[1]  # the very same request, twice
    assert second["webhook_id"] == first["webhook_id"]
    assert second["payload"] != first["payload"]
    jwks = control(emu, "jwks.json")
    assert jwks["keys"][0]["kty"] == "RSA" and jwks["keys"][0]["alg"] == "RS256"


def control(emu: Emulator, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{emu.base_url}/_emulator/{route}",
        data=data,
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())
