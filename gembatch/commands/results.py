"""``gembatch results``: every request joined to its result, by key."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from gembatch.commands.support import AppContext, LazyOption, pass_app

if TYPE_CHECKING:
    from rich.table import Column

# The join, the writers and rich are imported inside the functions that use them:
# every command module is imported by `gembatch --help`, which needs none of them
# (and the join loads the database layer).

# What a table shows unless --fields says otherwise: a terminal's width holds these.
_TABLE_FIELDS = ("job", "key", "status", "request", "response", "total_tokens", "error")
# A table is for a look at the terminal: longer texts are cut, and after this many
# rows the rest is only counted (jsonl and csv always carry everything).
_TABLE_ROWS = 500
_TABLE_TEXT = 120


def _fields_help() -> dict[str, Any]:
    from gembatch.report.joined import FIELDS

    return {"help": f"Columns to show [default: the usual ones; all: {', '.join(FIELDS)}]."}


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
    cls=LazyOption,
    lazy=_fields_help,
    metavar="A,B,...",
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
    from gembatch.report.joined import FIELD_KINDS, FIELDS, ResultsJoin, parse_fields
    from gembatch.view import parquet
    from gembatch.view.output import write_csv, write_nl

    if fmt is None:
        fmt = "table" if output is None and sys.stdout.isatty() else "jsonl"
    names = parse_fields(fields) if fields is not None or fmt != "table" else list(_TABLE_FIELDS)
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
    from gembatch.common.atomic import atomic_writer

    mode = "wb" if binary else "w"
    kwargs: dict[str, Any] = {} if binary else {"encoding": "utf-8", "newline": ""}
    with atomic_writer(output, mode, **kwargs) as handle:
        yield handle


def _cut(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    value = " ".join(value.split())  # one paragraph per cell: a look, not the text
    return value if len(value) <= _TABLE_TEXT else value[: _TABLE_TEXT - 1] + "…"


def _column(name: str) -> Column:
    from rich.table import Column

    from gembatch.report.joined import FIELD_KINDS

    # Texts share what is left of the width; short fields keep theirs whole.
    if FIELD_KINDS[name] == "int":
        return Column(name, justify="right", no_wrap=True)
    if name in ("key", "status", "finish_reason", "input_file"):
        return Column(name, no_wrap=True, min_width=len(name), max_width=32)
    return Column(name, ratio=1, overflow="fold")


def _table(names: list[str], rows: Iterator[list[Any]], out: IO[Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    shown = []
    more = 0
    for row in rows:
        if len(shown) < _TABLE_ROWS:
            shown.append([_cut(value) for value in row])
        else:
            more += 1
    console = Console(file=out) if out is not sys.stdout else Console()
    table = Table(*(_column(name) for name in names), header_style="bold")
    for row in shown:
        table.add_row(*(Text("") if value is None else Text(str(value)) for value in row))
    console.print(table)
    if more:
        console.print(f"… and {more:,} more rows (--format jsonl or csv carries every row)")


command = results
