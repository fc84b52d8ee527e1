"""Batch input validation and generated results in the live service's shape.

Everything here is a pure function of (seed, input): the same input file and seed give the
same result bytes, whatever the batch id or the time. ``kind`` is ``"generate"`` for
``batchGenerateContent`` batches and ``"embed"`` for ``asyncBatchEmbedContent`` ones, whose
requests and answers come from :mod:`gembatch.emulator.embeddings`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from gembatch.emulator.config import seeded_unit
from gembatch.emulator.embeddings import embed_problem, embed_response
from gembatch.emulator.wire import GRPC_CODE_NAMES, dumps, rpc_status

_VOCABULARY = (
    "the answer depends on context and scale so here is a careful summary with examples "
    "energy data model batch request result token output input system design trade offs "
    "first second finally however because therefore in practice this means we can see "
    "that each step follows from the previous one while the overall picture stays simple"
)
_WORDS = tuple(_VOCABULARY.split())

_ERROR_MESSAGES = {
    1: "The request was cancelled.",
    3: "Request contains an invalid argument.",
    4: "Deadline expired before operation could complete.",
    8: "Resource has been exhausted (e.g. check quota).",
    13: "Internal error encountered.",
    14: "The service is currently unavailable.",
}


class InputError(ValueError):
    """The input file is broken: the live service fails the whole batch."""


@dataclass(frozen=True)
class InputScan:
    request_count: int
    error_count: int  # requests that will get an error line instead of a response
    problem: str | None = None  # set when the file is broken and the batch must fail


def _rng(seed: int, *parts: object) -> random.Random:
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    """Request fields may be lowerCamel or snake_case; the service accepts both."""
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def iter_input(stream: BinaryIO, file_name: str) -> Iterator[tuple[int, Any, dict[str, Any]]]:
    """Yield (line number, key, request) for each non-blank line; raise InputError if broken."""
    for lineno, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue  # blank lines (a trailing newline included) carry no request
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{file_name} line {lineno}: invalid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{file_name} line {lineno}: expected a JSON object")
        request = obj.get("request")
        if not isinstance(request, dict):
            raise InputError(f"{file_name} line {lineno}: missing the 'request' object")
        yield lineno, obj.get("key"), request


def request_problem(request: dict[str, Any], kind: str = "generate") -> str | None:
    """Why the service would reject one request (answered by an error line, code 3)."""
    if kind == "embed":
        return embed_problem(request)
    contents = request.get("contents")
    if not contents:
        return "* GenerateContentRequest.contents: contents is not specified\n"
    if not isinstance(contents, list) or not all(isinstance(c, dict) for c in contents):
        return "* GenerateContentRequest.contents: must be a list of Content objects\n"
    return None


def request_fails(seed: int, rate: float, index: int, key: Any) -> bool:
    """Whether the request at this position gets a seeded per-request error."""
    return rate > 0 and seeded_unit(seed, "request-error", index, repr(key)) < rate


def scan_input(
    path: Path, file_name: str, *, seed: int, error_rate: float, kind: str = "generate"
) -> InputScan:
    """Count and validate an input file without holding it in memory."""
    count = errors = 0
    try:
        with open(path, "rb") as stream:
            for _, key, request in iter_input(stream, file_name):
                if request_problem(request, kind) or request_fails(seed, error_rate, count, key):
                    errors += 1
                count += 1
    except InputError as exc:
        return InputScan(count, 0, str(exc))
    return InputScan(count, errors)


def _texts(content: Any) -> Iterator[str]:
    if isinstance(content, dict):
        for part in content.get("parts") or ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]


def _prompt_text(request: dict[str, Any]) -> str:
    pieces: list[str] = []
    for content in request.get("contents") or ():
        pieces.extend(_texts(content))
    pieces.extend(_texts(_get(request, "systemInstruction", "system_instruction")))
    return "\n".join(pieces)


def _tokens(text: str) -> int:
    # About four characters per token, as Google's own rule of thumb says.
    return max(1, math.ceil(len(text) / 4))


def _schema_value(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A value that fits an OpenAPI/JSON schema, enough for structured-output pipelines."""
    if not isinstance(schema, dict) or depth > 6:
        return None
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    kind = schema.get("type") or ("OBJECT" if "properties" in schema else "STRING")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).upper() != "NULL"), "NULL")
    kind = str(kind).upper()
    if kind == "OBJECT":
        props = schema.get("properties") or {}
        order = _get(schema, "propertyOrdering", "property_ordering") or []
        names = [n for n in order if n in props] + [n for n in props if n not in order]
        return {name: _schema_value(props[name], rng, depth + 1) for name in names}
    if kind == "ARRAY":
        low = int(_get(schema, "minItems", "min_items") or 1)
        high = max(low, min(int(_get(schema, "maxItems", "max_items") or 3), 3))
        items = schema.get("items") or {}
        return [_schema_value(items, rng, depth + 1) for _ in range(rng.randint(low, high))]
    if kind == "INTEGER":
        return rng.randint(0, 100)
    if kind == "NUMBER":
        return round(rng.uniform(0, 100), 2)
    if kind == "BOOLEAN":
        return rng.random() < 0.5
    if kind == "NULL":
        return None
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))


def _answer_text(request: dict[str, Any], prompt: str, rng: random.Random) -> str:
    config = _get(request, "generationConfig", "generation_config") or {}
    mime = _get(config, "responseMimeType", "response_mime_type")
    if mime == "application/json":
        schema = (
            _get(config, "responseSchema", "response_schema")
            or _get(config, "responseJsonSchema", "response_json_schema")
            or {"type": "OBJECT", "properties": {"answer": {"type": "STRING"}}}
        )
        return json.dumps(_schema_value(schema, rng), indent=2)
    topic = " ".join(prompt.split())[:80]
    words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(20, 160)))
    return f'Emulated answer to "{topic}": {words}.'


def generate_response(
    request: dict[str, Any], *, model: str, seed: int, index: int, key: Any
) -> dict[str, Any]:
    """A GenerateContentResponse with plausible text and ``usageMetadata`` token counts."""
    digest_input = json.dumps(request, sort_keys=True, ensure_ascii=False)
    rng = _rng(seed, index, repr(key), digest_input)
    prompt = _prompt_text(request)
    text = _answer_text(request, prompt, rng)
    finish = "STOP"
    config = _get(request, "generationConfig", "generation_config") or {}
    max_tokens = _get(config, "maxOutputTokens", "max_output_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0 and _tokens(text) > max_tokens:
        text, finish = text[: max_tokens * 4], "MAX_TOKENS"
    prompt_tokens = _tokens(prompt)
    answer_tokens = _tokens(text)
    response_id = base64.urlsafe_b64encode(rng.randbytes(15)).decode()
    return {
        "candidates": [
            {
                "content": {"parts": [{"text": text}], "role": "model"},
                "finishReason": finish,
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": answer_tokens,
            "totalTokenCount": prompt_tokens + answer_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
        },
        "modelVersion": model.rsplit("/", 1)[-1],
        "responseId": response_id,
    }


@dataclass(frozen=True)
class ErrorPolicy:
    seed: int
    rate: float
    code: int


def answer(
    request: dict[str, Any],
    *,
    model: str,
    index: int,
    key: Any,
    policy: ErrorPolicy,
    kind: str = "generate",
) -> tuple[str, dict[str, Any]]:
    """("response", GenerateContentResponse or EmbedContentResponse) or ("error",
    google.rpc.Status) for one request."""
    problem = request_problem(request, kind)
    if problem:
        return "error", rpc_status(3, problem)
    if request_fails(policy.seed, policy.rate, index, key):
        message = _ERROR_MESSAGES.get(policy.code, GRPC_CODE_NAMES.get(policy.code, "Error."))
        return "error", rpc_status(policy.code, message)
    if kind == "embed":
        return "response", embed_response(request, seed=policy.seed)
    return "response", generate_response(
        request, model=model, seed=policy.seed, index=index, key=key
    )


def write_results(
    input_path: Path,
    output_path: Path,
    *,
    file_name: str,
    model: str,
    policy: ErrorPolicy,
    kind: str = "generate",
) -> int:
    """Stream a result file from an input file, line by line; return its size in bytes.

    Written to a temporary name and renamed, so a download never sees half a file.
    """
    tmp = output_path.with_name(output_path.name + ".part")
    with open(input_path, "rb") as src, open(tmp, "wb", buffering=1 << 20) as out:
        for index, (_, key, request) in enumerate(iter_input(src, file_name)):
            field, body = answer(
                request, model=model, index=index, key=key, policy=policy, kind=kind
            )
            line: dict[str, Any] = {field: body}
            if key is not None:
                line["key"] = key
            out.write(dumps(line) + b"\n")
    os.replace(tmp, output_path)
    return output_path.stat().st_size


def inline_responses(
    requests: list[dict[str, Any]], *, model: str, policy: ErrorPolicy, kind: str = "generate"
) -> list[dict[str, Any]]:
    """``InlinedResponse`` (or ``InlinedEmbedContentResponse``) objects in input order, each
    echoing the request's metadata."""
    out: list[dict[str, Any]] = []
    for index, item in enumerate(requests):
        metadata = item.get("metadata")
        field, body = answer(
            item["request"], model=model, index=index, key=metadata, policy=policy, kind=kind
        )
        entry: dict[str, Any] = {field: body}
        if metadata is not None:
            entry["metadata"] = metadata
        out.append(entry)
    return out


def write_large_result(path: Path, size_bytes: int, *, model: str) -> int:
    """A valid result file of exactly ``size_bytes`` bytes (padded answer texts).

    Benchmarks use it to stream a multi-gigabyte result without a multi-gigabyte input.
    Every line is a well-formed result line; only the answer texts are filler. Returns the
    number of lines.
    """
    line_target = 64 * 1024
    pad_char = "x"

    def line(key: str, pad: int) -> bytes:
        body = {
            "response": {
                "candidates": [
                    {
                        "content": {"parts": [{"text": pad_char * pad}], "role": "model"},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 8,
                    "candidatesTokenCount": max(1, pad // 4),
                    "totalTokenCount": 8 + max(1, pad // 4),
                },
                "modelVersion": model.rsplit("/", 1)[-1],
            },
            "key": key,
        }
        return dumps(body) + b"\n"

    # Keys have a fixed width and the token count a fixed digit count, so every full line
    # has the same length and the last one absorbs the remainder.
    overhead = len(line("request-000000000", 40000)) - 40000
    if size_bytes < overhead + 1:
        raise ValueError(f"size_bytes must be at least {overhead + 1}")
    full_pad = line_target - overhead
    count = max(1, size_bytes // line_target)
    written = 0
    with open(path, "wb", buffering=1 << 20) as out:
        template = line("request-000000000", full_pad)
        for number in range(count - 1):
            key = f"request-{number:09d}".encode()
            out.write(template.replace(b"request-000000000", key, 1))
            written += len(template)
        remaining = size_bytes - written
        pad = remaining - overhead
        last = line(f"request-{count - 1:09d}", pad)
        # The token count's width can differ for the last line; trim or extend the padding.
        pad += remaining - len(last)
        last = line(f"request-{count - 1:09d}", pad)
        if len(last) != remaining:
            pad += remaining - len(last)
            last = line(f"request-{count - 1:09d}", pad)
        out.write(last)
    return count
