"""The WebhookService endpoints: :class:`Api` with the ``webhooks_*`` handlers its routes name.

The app installs this class in place of the plain :class:`Api`, so the batch endpoints stay
as they are and the webhook ones live beside the registry they serve
(:mod:`gembatch.emulator.webhooks`, :mod:`gembatch.emulator.hooks`).
"""

from __future__ import annotations

from gembatch.emulator.api import Api, Request, Response, json_response
from gembatch.emulator.config import EmulatorConfig
from gembatch.emulator.hooks import Hooks
from gembatch.emulator.store import Store


class HooksApi(Api):
    def __init__(self, store: Store, config: EmulatorConfig, hooks: Hooks) -> None:
        super().__init__(store, config)
        self.hooks = hooks

    def webhooks_list(self, request: Request) -> Response:
        return json_response(self.hooks.service.list(request.query))

    def webhooks_create(self, request: Request) -> Response:
        return json_response(self.hooks.service.create(request.json()))

    def webhooks_get(self, request: Request) -> Response:
        return json_response(self.hooks.service.get(request.params[1]))

    def webhooks_update(self, request: Request) -> Response:
        mask = request.query.get("update_mask") or request.query.get("updateMask")
        return json_response(self.hooks.service.update(request.params[1], request.json(), mask))

    def webhooks_delete(self, request: Request) -> Response:
        self.hooks.service.delete(request.params[1])
        return json_response({})

    def webhooks_ping(self, request: Request) -> Response:
        return json_response(self.hooks.ping(request.params[1]))

    def webhooks_rotate(self, request: Request) -> Response:
        behavior = request.json().get("revocation_behavior")
        return json_response(self.hooks.service.rotate(request.params[1], behavior))
