"""``gembatch results``: every request joined to its result, by key."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console

from gembatch.commands.support import AppContext, pass_app
from gembatch.common.atomic import atomic_writer
from gembatch.report.joined import FIELD_KINDS, FIELDS, ResultsJoin, parse_fields
from gembatch.view import parquet
from gembatch.view.output import result_table, write_csv, write_nl

# A table is for a look at the terminal: longer texts are cut, and after this many
# rows the rest is only counted (jsonl and csv always carry everything).
_TABLE_ROWS = 500
_TABLE_TEXT = 120


@click.command("results")
@click.argument("job_ids", metavar="[JOB]...", nargs=-1, type=int)
@click.option("--failed", is_flag=True, help="Only requests that failed or have no result.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "parquet", "table"]),
    default=None,
    help="Output format [default: table on a terminal, jsonl otherwise].",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE (appears only when complete) instead of standard output.",
)
@click.option(
    "--fields",
    metavar="A,B,...",
    help=f"Columns to show [default: the usual ones; all: {', '.join(FIELDS)}].",
)
@click.option(
    "--no-input", is_flag=True, help="Leave the requests' text out (their input files are gone)."
)
@pass_app
def results(
    app: AppContext,
    job_ids: tuple[int, ...],
    failed: bool,
    fmt: str | None,
    output: Path | None,
    fields: str | None,
    no_input: bool,
) -> None:
    """Each request of JOB... (all jobs by default) with its result, joined by key.

    One row per request: the request's text from its input file, the answer's
    text, finish reason, tokens and error. Requests with no result line come
    out with status "missing", and results whose key the input lacks are
    counted; a summary goes to standard error.
    """
    names = parse_fields(fields)
    if fmt is None:
        fmt = "table" if output is None and sys.stdout.isatty() else "jsonl"
    if fmt == "parquet":
        parquet.check_available()
        if output is None:
            raise click.UsageError("--format parquet writes a file: give it with -o FILE")
    join = ResultsJoin(
        app.store(),
        app.locations,
        list(job_ids) or None,
        failed=failed,
        with_input=not no_input,
        embeddings="embedding" in names,
    )
    getters = [FIELDS[name] for name in names]
    rows = ([get(result) for get in getters] for result in join)
    with _target(output, binary=fmt == "parquet") as out:
        if fmt == "jsonl":
            write_nl(names, rows, out)
        elif fmt == "csv":
            write_csv(names, rows, out)
        elif fmt == "parquet":
            parquet.write_parquet(names, FIELD_KINDS, rows, out)
        else:
            _table(names, rows, out)
    counts = join.counts
    for warning in counts.warnings:
        click.echo(f"warning: {warning}", err=True)
    where = f" to {output}" if output is not None else ""
    click.echo(
        f"{counts.rows:,} requests from {counts.jobs:,} job{'s' if counts.jobs != 1 else ''}"
        f"{where} ({counts.missing:,} without a result, "
        f"{counts.unmatched:,} results not in the input)",
        err=True,
    )


@contextlib.contextmanager
def _target(output: Path | None, *, binary: bool) -> Iterator[IO[Any]]:
    if output is None:
        yield sys.stdout
        return
    mode = "wb" if binary else "w"
    kwargs: dict[str, Any] = {} if binary else {"encoding": "utf-8", "newline": ""}
    with atomic_writer(output, mode, **kwargs) as handle:
        yield handle


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _TABLE_TEXT:
        return value[: _TABLE_TEXT - 1] + "…"
    return value


def _table(names: list[str], rows: Iterator[list[Any]], out: IO[Any]) -> None:
    shown = []
    more = 0
    for row in rows:
        if len(shown) < _TABLE_ROWS:
            shown.append([_cut(value) for value in row])
        else:
            more += 1
    console = Console(file=out) if out is not sys.stdout else Console()
    console.print(result_table(names, shown))
    if more:
        console.print(f"… and {more:,} more rows (--format jsonl or csv carries every row)")


command = results
