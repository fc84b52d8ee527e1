"""The ``/_emulator/...`` control paths: what tests and benchmarks in another process use.

The SDK never calls these. They need no API key (the emulator binds to loopback).

- ``GET  /_emulator/health``                    ``{"ok": true}``
- ``GET  /_emulator/stats``                     counts by endpoint and status, recent requests
- ``POST /_emulator/reset-stats``
- ``GET  /_emulator/batches``                   ``{"states": {"PENDING": n, ...}}``
- ``POST /_emulator/faults``                    ``{"rate", "codes", "endpoints", "latency_s",
  "latency_by_endpoint", "fail_next": [{"endpoint", "code", "count"}], "fail_after": [...],
  "drop_download": {"after_bytes", "count"}, "jitter_s",
  "hang_up": [{"endpoint", "count", "carried_out"}]}``
- ``POST /_emulator/faults/clear``
- ``POST /_emulator/advance``                   ``{"seconds": 60}`` moves the clock forward
- ``POST /_emulator/finish-all``                 live batches end now with their outcome
- ``POST /_emulator/batches/<id>:set-state``    ``{"state": "SUCCEEDED", "message": "..."}``
- ``POST /_emulator/rules``                     ``{"rule": "FAILED:name=bad-*"}`` appends a rule
- ``POST /_emulator/large-batch``               ``{"size_bytes": N, "display_name": "..."}``
- ``GET  /_emulator/jwks.json``, ``/_emulator/webhooks/...``: see :mod:`gembatch.emulator.hooks`
- ``GET  /_emulator/switches``                  the switches in force (see ``switches``)
- ``POST /_emulator/switches``                  ``{"max_running": 1, "shuffle_inline": true,
  "output_delay_s": 5, "long_file_ids": true, "batch_stats": "numbers"}`` (any subset)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gembatch.emulator import hooks
from gembatch.emulator.api import Request, Response, json_response
from gembatch.emulator.config import parse_rule
from gembatch.emulator.wire import bad_request, not_found

if TYPE_CHECKING:
    from gembatch.emulator.app import Emulator

PREFIX = "/_emulator/"


def handle(emulator: Emulator, request: Request) -> Response:
    route = request.path[len(PREFIX) :]
    method = request.method
    body: dict[str, Any] = request.json() if method == "POST" else {}
    if method == "GET" and route == "health":
        return json_response({"ok": True})
    if hooks.wants(route):  # the JWKS and the webhook deliveries (gembatch.emulator.hooks)
        return json_response(emulator.webhooks.control(method, route, body))
    if method == "GET" and route == "stats":
        return json_response(emulator.stats().to_json())
    if method == "POST" and route == "reset-stats":
        emulator.reset_stats()
        return json_response({})
    if method == "GET" and route == "batches":
        return json_response({"states": emulator.store.counts_by_state()})
    if method == "POST" and route == "faults":
        _configure_faults(emulator, body)
        return json_response(emulator.faults.pending())
    if method == "POST" and route == "faults/clear":
        emulator.faults.clear()
        return json_response({})
    if method == "POST" and route == "advance":
        emulator.advance(float(body.get("seconds", 0)))
        return json_response({})
    if method == "POST" and route == "finish-all":
        return json_response({"finished": emulator.finish_all()})
    if method == "POST" and route.startswith("batches/") and route.endswith(":set-state"):
        name = route.removesuffix(":set-state")
        emulator.set_state(name, str(body.get("state", "")), body.get("message"))
        return json_response({})
    if method == "POST" and route == "rules":
        try:
            emulator.add_rule(parse_rule(str(body.get("rule", ""))))
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return json_response({})
    if route == "switches" and method in ("GET", "POST"):
        if method == "POST":
            emulator.switches.set(**body)
        return json_response(emulator.switches.values())
    if method == "POST" and route == "large-batch":
        name = emulator.make_large_result(
            int(body["size_bytes"]), display_name=body.get("display_name")
        )
        return json_response({"name": name, "file": emulator.result_file(name)})
    raise not_found(f"No control path {method} {request.path}")


def _configure_faults(emulator: Emulator, body: dict[str, Any]) -> None:
    faults = emulator.faults
    faults.configure(
        rate=body.get("rate"),
        codes=body.get("codes"),
        endpoints=body.get("endpoints"),
        latency_s=body.get("latency_s"),
        latency_by_endpoint=body.get("latency_by_endpoint"),
        jitter_s=body.get("jitter_s"),
    )
    for plan in body.get("fail_next") or ():
        faults.fail_next(plan["endpoint"], int(plan.get("code", 503)), int(plan.get("count", 1)))
    for plan in body.get("fail_after") or ():
        faults.fail_after(plan["endpoint"], int(plan.get("code", 503)), int(plan.get("count", 1)))
    for plan in body.get("hang_up") or ():
        faults.hang_up(
            plan["endpoint"],
            int(plan.get("count", 1)),
            carried_out=bool(plan.get("carried_out", False)),
        )
    drop = body.get("drop_download")
    if drop:
        faults.drop_download(int(drop.get("after_bytes", 0)), int(drop.get("count", 1)))
