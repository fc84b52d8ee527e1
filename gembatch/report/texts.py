"""The texts of a request and of its answer, read from their JSON lines.

A generation request carries ``contents`` (a list of turns), an embedding
request one ``content``; an answer's text is its first candidate's text parts,
with the parts marked ``thought`` (thought summaries) kept apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _parts(content: Any) -> Iterator[dict[str, Any]]:
    if isinstance(content, dict):
        for part in content.get("parts") or ():
            if isinstance(part, dict):
                yield part


def request_text(line: dict[str, Any]) -> str | None:
    """The text parts of an input line's request: ``contents`` for generation,
    ``content`` for an embedding."""
    request = line.get("request")
    if not isinstance(request, dict):
        return None
    contents = request.get("contents")
    if not isinstance(contents, list):
        contents = [request.get("content")]
    texts = [
        part["text"]
        for content in contents
        for part in _parts(content)
        if isinstance(part.get("text"), str)
    ]
    return "\n".join(texts) if texts else None


def response_texts(line: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(answer, thoughts) of a result line's first candidate."""
    response = line.get("response") if line else None
    if not isinstance(response, dict):
        return None, None
    candidates = response.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        return None, None
    answer: list[str] = []
    thoughts: list[str] = []
    for part in _parts(candidates[0].get("content") if isinstance(candidates[0], dict) else None):
        if isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else answer).append(part["text"])
    return ("".join(answer) if answer else None), ("".join(thoughts) if thoughts else None)


def embedding_values(line: dict[str, Any] | None) -> list[float] | None:
    response = line.get("response") if line else None
    embedding = response.get("embedding") if isinstance(response, dict) else None
    values = embedding.get("values") if isinstance(embedding, dict) else None
    return values if isinstance(values, list) else None
