"""Result JSONL, one request at a time: what each line says, where it is, and the file's hash.

A result line holds ``response`` or ``error`` plus ``key`` (protocol §4.5), in any
key order and with any extra fields; an embedding result's ``response`` holds an
``embedding`` (``values``) and a ``tokenCount`` instead of candidates. Each line is
parsed on its own and dropped, so a scan's memory stays flat however large the
file. The data layer indexes these rows (table ``requests``); the report, the
results join and retry read them back.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

# Bump when what a scan records changes, so every index is rebuilt from its file.
INDEX_VERSION = 2

OK = "ok"
ERROR = "error"
# Not a JSON object with a response or an error: kept, counted apart, never a crash.
MALFORMED = "malformed"


# A file where every error message differs (it names the key, say) keeps this many
# kinds in its figures; the rest fold into one entry.
MAX_ERROR_KINDS = 50
OTHER_ERRORS = (-1, "(other error kinds)")
MALFORMED_KIND = (-2, "(malformed result line)")


def top_error_kinds(
    counts: Iterable[tuple[tuple[int, str], int]], *, other: int = 0, malformed: int = 0
) -> list[tuple[tuple[int, str], int]]:
    """The :data:`MAX_ERROR_KINDS` most frequent ``((code, message), count)``, the
    rest (and ``other``, already folded) as :data:`OTHER_ERRORS`, malformed lines
    as :data:`MALFORMED_KIND`: most frequent first, ties by code and message."""
    kinds = sorted(counts, key=lambda item: (-item[1], item[0]))
    kept = kinds[:MAX_ERROR_KINDS]
    rest = sum(count for _, count in kinds[MAX_ERROR_KINDS:]) + other
    if rest:
        kept.append((OTHER_ERRORS, rest))
    if malformed:
        kept.append((MALFORMED_KIND, malformed))
    return sorted(kept, key=lambda item: (-item[1], item[0]))


class RequestRow(NamedTuple):
    """One result line as the ``requests`` table holds it (tokens ``None`` when the
    line carries no ``usageMetadata``)."""

    line_no: int
    byte_offset: int
    byte_length: int
    key: str | None
    status: str
    error_code: int | None
    error_message: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    output_tokens: int | None
    thinking_tokens: int | None
    total_tokens: int | None
    embedding_dim: int | None


def request_key(value: Any) -> str | None:
    """Keys compare as strings: an input's ``"key": 7`` and a result's ``"7"`` are one request."""
    if value is None:
        return None
    return storable(value if isinstance(value, str) else json.dumps(value))


def storable(text: str) -> str:
    """Text every database column takes: JSON may escape a lone surrogate
    (``"\\ud800"``), which no UTF-8 encoder writes, or a NUL, which PostgreSQL's
    text refuses; each becomes U+FFFD. Input and result keys go through the same
    function, so they still compare equal."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


# What the columns hold: counts are 64-bit, error codes and lengths 32-bit, a
# finish reason 64 characters. A value outside is not stored as if it were one.
COUNT_MAX = 2**63 - 1
CODE_MAX = 2**31 - 1
REASON_MAX = 64


def _int(value: Any, limit: int = COUNT_MAX) -> int | None:
    # Counts are JSON integers; the API's int64 fields may come as decimal strings.
    if type(value) is not int:  # bool is an int subclass, and no count
        if not (isinstance(value, str) and value.isascii() and value.isdecimal()):
            return None
        value = int(value)
    return value if 0 <= value <= limit else None


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _usage(response: dict[str, Any]) -> tuple[int | None, int | None, int | None, int | None]:
    usage = _get(response, "usageMetadata", "usage_metadata")
    if not isinstance(usage, dict):
        # An embedding response counts only its input: ``tokenCount``.
        count = _int(_get(response, "tokenCount", "token_count"))
        return (count, None, None, count) if count is not None else (None, None, None, None)
    prompt = _int(_get(usage, "promptTokenCount", "prompt_token_count"))
    output = _int(_get(usage, "candidatesTokenCount", "candidates_token_count"))
    thinking = _int(_get(usage, "thoughtsTokenCount", "thoughts_token_count"))
    total = _int(_get(usage, "totalTokenCount", "total_token_count"))
    if not total and (prompt, output, thinking) != (None, None, None):
        total = min((prompt or 0) + (output or 0) + (thinking or 0), COUNT_MAX)
    return prompt, output, thinking, total


def _finish_reason(response: dict[str, Any]) -> str | None:
    candidates = response.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        reason = _get(candidates[0], "finishReason", "finish_reason")
        return storable(reason[:REASON_MAX]) if isinstance(reason, str) else None
    return None


def _embedding_dim(response: dict[str, Any]) -> int | None:
    embedding = response.get("embedding")
    if embedding is None:
        embeddings = response.get("embeddings")
        if isinstance(embeddings, list) and embeddings:
            embedding = embeddings[0]
    if isinstance(embedding, dict) and isinstance(embedding.get("values"), list):
        return min(len(embedding["values"]), CODE_MAX)
    return None


def _error(error: Any) -> tuple[int, str]:
    if not isinstance(error, dict):
        return 2, storable(str(error))  # 2 = UNKNOWN
    code = _int(error.get("code"), CODE_MAX)
    message = error.get("message")
    return (2 if code is None else code), (
        storable(message.strip()) if isinstance(message, str) else ""
    )


def classify(raw: bytes, line_no: int, offset: int) -> RequestRow | None:
    """One line as a row; ``None`` for a blank line (it holds no request)."""
    if not raw.strip():
        return None
    length = len(raw)
    try:
        obj = json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        obj = None
    if not isinstance(obj, dict):
        return RequestRow(line_no, offset, length, None, MALFORMED, *(None,) * 8)
    key = request_key(obj.get("key"))
    error = obj.get("error")
    if error is not None:
        code, message = _error(error)
        return RequestRow(line_no, offset, length, key, ERROR, code, message, *(None,) * 6)
    response = obj.get("response")
    if not isinstance(response, dict):
        return RequestRow(line_no, offset, length, key, MALFORMED, *(None,) * 8)
    return RequestRow(
        line_no,
        offset,
        length,
        key,
        OK,
        None,
        None,
        _finish_reason(response),
        *_usage(response),
        _embedding_dim(response),
    )


class Scan:
    """Iterate over the rows of one result file; afterwards ``sha256``, ``size``
    and ``mtime_ns`` say exactly which bytes the rows came from."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.sha256: str | None = None
        self.size = 0
        self.mtime_ns: int | None = None

    def __iter__(self) -> Iterator[RequestRow]:
        digest = hashlib.sha256()
        offset = 0
        with open(self.path, "rb") as stream:
            before = os.fstat(stream.fileno())
            for line_no, raw in enumerate(stream, start=1):
                digest.update(raw)
                row = classify(raw, line_no, offset)
                offset += len(raw)
                if row is not None:
                    yield row
            after = os.fstat(stream.fileno())
        self.size = offset
        # A file written to while it was read has no single identity.
        self.mtime_ns = after.st_mtime_ns if after.st_mtime_ns == before.st_mtime_ns else None
        self.sha256 = digest.hexdigest()
