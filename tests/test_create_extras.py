"""The create seam: what the adapter puts on the wire for priority, webhooks and
embeddings, through the real google-genai client.

The SDK's create configs have no ``priority`` (and the embeddings one no
``webhook_config``): the adapter adds them through ``HttpOptions.extra_body``. A
capture server records the exact request bodies, so an SDK release that stops
merging ``extra_body`` (or renames a path) fails here, not silently on the service.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gembatch.common.batch import CreateExtras
from gembatch.remote.client import Gemini

_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"


class _Capture(ThreadingHTTPServer):
    bodies: list[tuple[str, dict[str, Any]]]


class _Handler(BaseHTTPRequestHandler):
    server: _Capture

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.bodies.append((self.path.split("?")[0], body))
        batch = body.get("batch") or {}
        answer = {
            "name": "batches/captured",
            "metadata": {
                "@type": _TYPE,
                "name": "batches/captured",
                "displayName": batch.get("displayName", ""),
                "state": "BATCH_STATE_PENDING",
            },
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def capture() -> Iterator[_Capture]:
    server = _Capture(("127.0.0.1", 0), _Handler)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _gemini(server: _Capture) -> Gemini:
    return Gemini("test-key", base_url=f"http://127.0.0.1:{server.server_address[1]}")


def _only(server: _Capture) -> tuple[str, dict[str, Any]]:
    assert len(server.bodies) == 1, server.bodies
    return server.bodies[0]


HOOK = CreateExtras(
    priority=-7, webhook_url="https://example.test/hook", metadata={"gembatch_job_id": "12"}
)


def test_file_batch_carries_priority_and_the_sdks_webhook_config(capture: _Capture) -> None:
    gemini = _gemini(capture)
    try:
        made = gemini.create_batch(
            model="gemini-2.5-flash", src="files/in", display_name="d", extras=HOOK
        )
    finally:
        gemini.close()
    path, body = _only(capture)
    assert path == "/v1beta/models/gemini-2.5-flash:batchGenerateContent"
    batch = body["batch"]
    assert batch["priority"] == "-7"  # int64 as a JSON string
    assert batch["webhookConfig"] == {
        "uris": ["https://example.test/hook"],
        "userMetadata": {"gembatch_job_id": "12"},
    }
    assert batch["inputConfig"] == {"fileName": "files/in"}
    assert batch["displayName"] == "d"
    assert made.name == "batches/captured"


def test_embeddings_file_batch_goes_to_async_batch_embed_content(capture: _Capture) -> None:
    gemini = _gemini(capture)
    extras = CreateExtras(kind="embed", priority=3, webhook_url="http://127.0.0.1:9/h")
    try:
        gemini.create_batch(model="gemini-embedding-001", src="files/e", extras=extras)
    finally:
        gemini.close()
    path, body = _only(capture)
    assert path == "/v1beta/models/gemini-embedding-001:asyncBatchEmbedContent"
    batch = body["batch"]
    # google-genai 3.x writes this one field under its proto name (batches.py
    # ``_EmbeddingsBatchJobSource_to_mldev``); proto3 JSON parsers take both.
    assert batch["inputConfig"] in ({"fileName": "files/e"}, {"file_name": "files/e"})
    assert batch["priority"] == "3"
    # The embeddings config has no webhook field: it travels in extra_body.
    assert batch["webhookConfig"] == {"uris": ["http://127.0.0.1:9/h"]}


def test_inline_embeddings_keep_each_key_in_metadata(capture: _Capture) -> None:
    gemini = _gemini(capture)
    requests = [
        {"key": "b", "request": {"content": {"parts": [{"text": "two"}]}}},
        {"key": "a", "request": {"content": {"parts": [{"text": "one"}]}}},
    ]
    try:
        gemini.create_inline_batch(
            model="models/gemini-embedding-001",
            requests=requests,
            display_name="e",
            extras=CreateExtras(kind="embed"),
        )
    finally:
        gemini.close()
    path, body = _only(capture)
    assert path == "/v1beta/models/gemini-embedding-001:asyncBatchEmbedContent"
    sent = body["batch"]["inputConfig"]["requests"]["requests"]
    assert [item["metadata"]["key"] for item in sent] == ["b", "a"]
    assert sent[0]["request"] == {"content": {"parts": [{"text": "two"}]}}
    assert "priority" not in body["batch"]


def test_no_extras_send_nothing_extra(capture: _Capture) -> None:
    gemini = _gemini(capture)
    try:
        gemini.create_batch(model="gemini-2.5-flash", src="files/in")
    finally:
        gemini.close()
    _, body = _only(capture)
    assert set(body["batch"]) == {"inputConfig"}
