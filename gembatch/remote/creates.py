"""What a batch create sends: the method path of each kind, the inline body, and the
fields the SDK's create configs cannot carry.

The SDK's ``CreateBatchJobConfig`` has no ``priority``, and its
``CreateEmbeddingsBatchJobConfig`` has neither ``priority`` nor ``webhook_config``.
Those go through the SDK's own seam for fields it does not model,
``HttpOptions.extra_body``, which the SDK merges into the request body it built
(``BaseApiClient._build_request``: ``recursive_dict_update``). ``webhookConfig``
goes that way for generation batches too: the SDK's own ``webhook_config`` is
copied to the wire unconverted, as ``user_metadata`` (a name proto3 JSON parsers
accept, but not the canonical ``userMetadata`` every other field uses), so one
spelling for both kinds keeps the emulator and the service seeing the same body.
``tests/test_create_extras.py`` checks the bodies the SDK actually sends.
"""

from __future__ import annotations

from typing import Any

from gembatch.common.batch import CreateExtras

# Batch create methods, per kind (SDK batches.py: ``_create`` and ``_create_embeddings``).
METHODS = {"generate": "batchGenerateContent", "embed": "asyncBatchEmbedContent"}


def model_path(model: str) -> str:
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


def create_path(model: str, kind: str) -> str:
    return f"{model_path(model)}:{METHODS[kind]}"


def webhook_config(extras: CreateExtras) -> dict[str, Any] | None:
    """The wire ``webhookConfig`` (proto field names, as the SDK writes them)."""
    if not extras.webhook_url:
        return None
    config: dict[str, Any] = {"uris": [extras.webhook_url]}
    if extras.metadata:
        config["userMetadata"] = dict(extras.metadata)
    return config


def extra_batch_fields(extras: CreateExtras) -> dict[str, Any]:
    """``batch`` fields the SDK's configs do not model (or model loosely)."""
    fields: dict[str, Any] = {}
    if extras.priority is not None:
        # int64 travels as a JSON string in proto3 JSON, exact at any size.
        fields["priority"] = str(int(extras.priority))
    hook = webhook_config(extras)
    if hook is not None:
        fields["webhookConfig"] = hook
    return fields


def inline_body(
    requests: list[dict[str, Any]], display_name: str | None, extras: CreateExtras
) -> dict[str, Any]:
    """The whole create body of an inline batch: each ``request`` exactly as the
    input file holds it, its key in ``metadata`` (results are matched by it)."""
    batch: dict[str, Any] = {
        "inputConfig": {
            "requests": {
                "requests": [
                    {"request": item["request"], "metadata": {"key": str(item["key"])}}
                    for item in requests
                ]
            }
        }
    }
    if display_name:
        batch["displayName"] = display_name
    batch.update(extra_batch_fields(extras))
    return {"batch": batch}
