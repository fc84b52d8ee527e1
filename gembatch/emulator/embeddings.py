"""Embedding requests of an embeddings batch: what makes one invalid, and its seeded answer.

An answer is an ``EmbedContentResponse``: ``{"embedding": {"values": [...]}, "usageMetadata":
{"promptTokenCount": n}}``. The values are a pure function of (seed, text, task type, title),
so the same text embeds the same way in every batch, and a smaller ``outputDimensionality``
gives a prefix of the full vector, as the live model's truncation does.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from typing import Any

# gemini-embedding-001 returns 3072 values unless asked for fewer (its model page: "128 -
# 3072"); the emulator also accepts smaller sizes so that tests stay small.
DEFAULT_DIMENSIONS = 3072
MAX_DIMENSIONS = 3072


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _config(request: dict[str, Any]) -> dict[str, Any]:
    """Embedding options sit on the request itself, or in its ``embedContentConfig``."""
    nested = _get(request, "embedContentConfig", "embed_content_config")
    return nested if isinstance(nested, dict) else {}


def _option(request: dict[str, Any], camel: str, snake: str) -> Any:
    value = _get(request, camel, snake)
    return _get(_config(request), camel, snake) if value is None else value


def _texts(content: dict[str, Any]) -> Iterator[str]:
    for part in content.get("parts") or ():
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            yield part["text"]


def embed_problem(request: dict[str, Any]) -> str | None:
    """Why the service would reject one embedding request (answered by an error, code 3)."""
    content = request.get("content")
    if not content:
        return "* EmbedContentRequest.content: content is not specified\n"
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return "* EmbedContentRequest.content: must be a Content object with parts\n"
    size = _option(request, "outputDimensionality", "output_dimensionality")
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_DIMENSIONS
    ):
        return (
            f"* EmbedContentRequest.output_dimensionality: must be between 1 and {MAX_DIMENSIONS}\n"
        )
    return None


def embed_response(request: dict[str, Any], *, seed: int) -> dict[str, Any]:
    """A seeded ``EmbedContentResponse`` for a valid request (see :func:`embed_problem`)."""
    text = "\n".join(_texts(request["content"]))
    task = _option(request, "taskType", "task_type") or ""
    title = _option(request, "title", "title") or ""
    size = _option(request, "outputDimensionality", "output_dimensionality") or DEFAULT_DIMENSIONS
    digest = hashlib.blake2b(repr((seed, text, task, title)).encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    # Scaled so that the full vector has about unit length; a prefix is simply shorter.
    scale = 1 / math.sqrt(DEFAULT_DIMENSIONS)
    values = [round(rng.gauss(0.0, 1.0) * scale, 7) for _ in range(size)]
    # About four characters per token, as for generated answers.
    tokens = max(1, math.ceil(len(text) / 4))
    return {"embedding": {"values": values}, "usageMetadata": {"promptTokenCount": tokens}}
