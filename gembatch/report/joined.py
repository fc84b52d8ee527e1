"""Each request joined to its result, by key: what ``gembatch results`` and the
Python API's ``requests()`` stream.

The result side is the ``requests`` table (each file indexed first if it is not
yet); the text of a response is read from the result file at the row's offset.
The request side is the job's input file, read once per job into a map of key to
byte offset, so a request is found by its key and never by its position: a
service that answers out of order, or skips a request, cannot pair a prompt with
another prompt's answer. A key on one side only is never dropped: an input
request without a result comes out with status ``missing``, a result whose key
the input lacks comes out without its request text, and both are counted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gembatch.common import states
from gembatch.common.errors import BadInput
from gembatch.common.failed import JobRef
from gembatch.common.locations import Locations
from gembatch.common.resultlines import OK, Scan, request_key
from gembatch.report.failed import indexed_jobs
from gembatch.report.inputindex import InputIndex
from gembatch.report.resultstats import GRPC_NAMES
from gembatch.report.texts import embedding_values, request_text, response_texts
from gembatch.store import requests as request_rows
from gembatch.store.database import Store
from gembatch.store.reports import job_refs

MISSING = "missing"  # in the input, no result line answers it


@dataclass(frozen=True, slots=True)
class TokenCounts:
    prompt: int | None = None
    output: int | None = None
    thinking: int | None = None
    total: int | None = None


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One request and what came of it."""

    job_id: int
    input_file: str
    key: str | None
    status: str  # ok, error, malformed, missing
    text: str | None  # the request's text (None with --no-input or no input line)
    response: str | None  # the answer's text, thoughts left out
    thinking: str | None  # the thought summaries, when the model returned them
    finish_reason: str | None
    tokens: TokenCounts
    error_code: int | None
    error_message: str | None
    embedding_dim: int | None
    embedding: list[float] | None  # only when asked for
    line_no: int | None  # in the result file
    in_input: bool

    @property
    def error(self) -> str | None:
        """``13 INTERNAL: Internal error`` (None when the request succeeded)."""
        if self.status == OK:
            return None
        if self.status == MISSING:
            return "no result line for this key"
        if self.error_code is None:
            return "malformed result line"
        name = GRPC_NAMES.get(self.error_code)
        head = f"{self.error_code} {name}" if name else str(self.error_code)
        return f"{head}: {self.error_message}" if self.error_message else head


@dataclass
class JoinCounts:
    """What a join found, for the summary the caller prints."""

    rows: int = 0
    jobs: int = 0
    missing: int = 0  # input requests without a result line
    unmatched: int = 0  # result lines whose key the input lacks
    warnings: list[str] = field(default_factory=list)


# --- the join ----------------------------------------------------------------------------


class ResultsJoin:
    """Every request of the chosen jobs (all by default) with its result, job by
    job in id order, each job's results in result-file order and then its input
    requests that have none. Iterate once; ``counts`` fills in as it goes.

    Raises :class:`BadInput` for a job that does not exist, an input file that
    is gone, or one that changed since the job was submitted (joined by key, a
    rewritten input pairs answers with the wrong prompts), all before yielding
    anything of that job; and, part-way through a job, for a result line that
    no longer holds the key its index row names (written to ``-o FILE``,
    nothing of the output is kept).
    """

    def __init__(
        self,
        store: Store,
        locations: Locations,
        job_ids: list[int] | None = None,
        *,
        failed: bool = False,
        with_input: bool = True,
        embeddings: bool = False,
    ) -> None:
        self.store = store
        self.locations = locations
        self.failed = failed
        self.with_input = with_input
        self.embeddings = embeddings
        self.counts = JoinCounts()
        jobs = job_refs(store, job_ids)
        if job_ids:
            unknown = sorted(set(job_ids) - {job.id for job in jobs})
            if unknown:
                raise BadInput(f"no job #{unknown[0]} (see `gembatch status`)")
        self.jobs = [job for job in jobs if job.result_path]
        waiting = [job for job in jobs if not job.result_path]
        for job in waiting if job_ids else ():
            self.counts.warnings.append(
                f"#{job.id} {job.input_file}: no results ({states.short(job.state)})"
            )
        if waiting and not job_ids:
            self.counts.warnings.append(f"{len(waiting):,} jobs have no results yet (or none)")
        if with_input:
            for job in self.jobs:
                path = locations.resolve_input(job.input_file)
                if not path.is_file():
                    raise BadInput(
                        f"{path}: input file of job #{job.id} not found "
                        "(--no-input joins without the requests)"
                    )

    def __iter__(self) -> Iterator[RequestResult]:
        indexed = indexed_jobs(self.store, self.locations, self.jobs)
        for job in self.jobs:
            self.counts.jobs += 1
            yield from self._job(job, job.id in indexed)

    def _job(self, job: JobRef, indexed: bool) -> Iterator[RequestResult]:
        assert job.result_path is not None
        result_path = self.locations.resolve_result(job.result_path)
        rows: Iterable[Any]
        if indexed:
            rows = request_rows.iter_requests(self.store, job.id)
        elif result_path.is_file():
            rows = Scan(result_path)
        else:
            self.counts.warnings.append(f"#{job.id} {job.input_file}: {result_path} not found")
            return
        inputs = self._inputs(job)
        result_file = open(result_path, "rb") if result_path.is_file() else None  # noqa: SIM115
        if result_file is None:
            self.counts.warnings.append(
                f"#{job.id} {job.input_file}: {result_path} is gone; answers' texts left out"
            )
        unmatched = keyless = 0
        if inputs is not None:
            self._input_notes(job, inputs)
        try:
            for row in rows:
                offset = inputs.take(row.key) if inputs is not None else None
                if inputs is not None and offset is None:
                    if row.key is None:
                        keyless += 1
                    else:
                        unmatched += 1
                if self.failed and row.status == OK:
                    continue
                line = None
                if result_file is not None:
                    result_file.seek(row.byte_offset)
                    line = _json(result_file.read(row.byte_length))
                    if row.key is not None and (
                        line is None or request_key(line.get("key")) != row.key
                    ):
                        # Checked on every line: an answer is never shown beside
                        # another request's key.
                        raise BadInput(
                            f"{result_path}: line {row.line_no} is no longer the result of key "
                            f"{row.key!r} (the file changed); run `gembatch db reindex {job.id}`"
                        )
                request = inputs.line(offset) if inputs is not None and offset is not None else None
                yield self._row(job, row, line, request, inputs is None or offset is not None)
            if inputs is not None:
                yield from self._unanswered(job, inputs)
        finally:
            if result_file is not None:
                result_file.close()
            if inputs is not None:
                inputs.close()
        if unmatched:
            self.counts.unmatched += unmatched
            self.counts.warnings.append(
                f"#{job.id} {job.input_file}: {unmatched:,} result line(s) name a key "
                "its input does not have (their request text is empty)"
            )
        if keyless:
            self.counts.unmatched += keyless
            self.counts.warnings.append(
                f"#{job.id} {job.input_file}: {keyless:,} result line(s) carry no key "
                "and cannot be joined to a request"
            )

    def _input_notes(self, job: JobRef, inputs: InputIndex) -> None:
        where = f"#{job.id} {job.input_file}"
        if inputs.repeats:
            shown = ", ".join(repr(key) for key in inputs.repeated)
            self.counts.warnings.append(
                f"{where}: {inputs.repeats:,} input line(s) repeat a key ({shown}); "
                "each repeat is paired with that key's next result, in file order"
            )
        if inputs.keyless:
            self.counts.warnings.append(
                f"{where}: {inputs.keyless:,} input line(s) have no key; each is known by "
                "its position ('0', '1', …), which only inline results name"
            )

    def _inputs(self, job: JobRef) -> InputIndex | None:
        if not self.with_input:
            return None
        path = self.locations.resolve_input(job.input_file)
        try:
            inputs = InputIndex(path)
        except FileNotFoundError:
            raise BadInput(f"{path}: input file of job #{job.id} not found") from None
        if job.input_sha256 and inputs.sha256 != job.input_sha256:
            raise BadInput(
                f"{path}: changed since job #{job.id} was submitted, so its keys may name "
                "other requests now (--no-input joins without them)"
            )
        return inputs

    def _unanswered(self, job: JobRef, inputs: InputIndex) -> Iterator[RequestResult]:
        left = inputs.unanswered()
        if not left:
            return
        self.counts.missing += len(left)
        self.counts.warnings.append(
            f"#{job.id} {job.input_file}: {len(left):,} request(s) have no result line "
            f"(status missing), first key {left[0][1]!r}"
        )
        for offset, key in left:
            self.counts.rows += 1
            yield RequestResult(
                job_id=job.id,
                input_file=job.input_file,
                key=key,
                status=MISSING,
                text=request_text(inputs.line(offset) or {}),
                response=None,
                thinking=None,
                finish_reason=None,
                tokens=TokenCounts(),
                error_code=None,
                error_message=None,
                embedding_dim=None,
                embedding=None,
                line_no=None,
                in_input=True,
            )

    def _row(
        self,
        job: JobRef,
        row: Any,
        line: dict[str, Any] | None,
        request: dict[str, Any] | None,
        in_input: bool,
    ) -> RequestResult:
        answer, thoughts = response_texts(line)
        self.counts.rows += 1
        return RequestResult(
            job_id=job.id,
            input_file=job.input_file,
            key=row.key,
            status=row.status,
            text=request_text(request) if request is not None else None,
            response=answer,
            thinking=thoughts,
            finish_reason=row.finish_reason,
            tokens=TokenCounts(
                row.prompt_tokens, row.output_tokens, row.thinking_tokens, row.total_tokens
            ),
            error_code=row.error_code,
            error_message=row.error_message,
            embedding_dim=row.embedding_dim,
            embedding=embedding_values(line) if self.embeddings else None,
            line_no=row.line_no,
            in_input=in_input,
        )


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


# What a joined row can show, by name: the columns of `gembatch results` and of
# the Python API's data frames.
FIELDS: dict[str, Callable[[RequestResult], Any]] = {
    "job": lambda r: r.job_id,
    "input_file": lambda r: r.input_file,
    "key": lambda r: r.key,
    "status": lambda r: r.status,
    "request": lambda r: r.text,
    "response": lambda r: r.response,
    "thinking": lambda r: r.thinking,
    "finish_reason": lambda r: r.finish_reason,
    "prompt_tokens": lambda r: r.tokens.prompt,
    "output_tokens": lambda r: r.tokens.output,
    "thinking_tokens": lambda r: r.tokens.thinking,
    "total_tokens": lambda r: r.tokens.total,
    "error": lambda r: r.error,
    "error_code": lambda r: r.error_code,
    "error_message": lambda r: r.error_message,
    "embedding_dim": lambda r: r.embedding_dim,
    "embedding": lambda r: r.embedding,
    "line": lambda r: r.line_no,
    "in_input": lambda r: r.in_input,
}
DEFAULT_FIELDS = (
    "job",
    "key",
    "status",
    "request",
    "response",
    "finish_reason",
    "prompt_tokens",
    "output_tokens",
    "thinking_tokens",
    "total_tokens",
    "error",
)
# The kind of each field's values, for typed outputs (Parquet, data frames).
FIELD_KINDS: dict[str, str] = {
    **dict.fromkeys(FIELDS, "string"),
    **dict.fromkeys(
        (
            "job",
            "prompt_tokens",
            "output_tokens",
            "thinking_tokens",
            "total_tokens",
            "error_code",
            "embedding_dim",
            "line",
        ),
        "int",
    ),
    "embedding": "floats",
    "in_input": "bool",
}


def parse_fields(text: str | None) -> list[str]:
    """``key,response`` -> the field names, checked; None gives the defaults."""
    if text is None:
        return list(DEFAULT_FIELDS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FIELDS]
    if unknown or not names:
        raise BadInput(
            f"--fields {text!r}: unknown field {unknown[0]!r}; choose from {', '.join(FIELDS)}"
            if unknown
            else "--fields: name at least one field"
        )
    return names
