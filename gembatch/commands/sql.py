"""``gembatch sql``: read-only SQL over the jobs and events tables."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from gembatch.commands.support import AppContext, output_options, pass_app
from gembatch.common.errors import BadInput

if TYPE_CHECKING:
    from gembatch.store.sqlschema import TableInfo
    from gembatch.view.output import Format


@click.command()
@click.argument("query", required=False)
@click.option("--schema", is_flag=True, help="Print the tables and their columns instead.")
@output_options
@pass_app
def sql(app: AppContext, query: str | None, schema: bool, fmt: Format) -> None:
    """Run a read-only SQL QUERY (or - to read it from stdin) and print the rows.

    Statements that would change anything fail and change nothing.
    See docs/schema.md for the tables and example queries.
    """
    # Imported here: every command module is imported by `gembatch --help`.
    from gembatch.store.sqlquery import run_query
    from gembatch.view.output import write_rows

    store = app.store()
    if schema:
        if query is not None:
            raise BadInput("sql: give either QUERY or --schema, not both")
        from gembatch.store.sqlschema import describe_schema

        _print_schema(describe_schema(store), fmt)
        return
    if query is None:
        raise BadInput("sql: missing QUERY (or --schema); use - to read it from stdin")
    text = sys.stdin.read() if query == "-" else query
    with run_query(store, text) as result:
        write_rows(result.columns, result.rows, fmt)


def _print_schema(tables: list[TableInfo], fmt: Format) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from gembatch.store.sqlschema import schema_rows
    from gembatch.view.output import write_rows

    if fmt != "table":
        columns, rows = schema_rows(tables)
        write_rows(columns, rows, fmt)
        return
    console = Console()
    for info in tables:
        table = Table("column", "type", "null", "key", title=info.name, title_justify="left")
        for column in info.columns:
            table.add_row(
                Text(column.name),
                Text(column.type),
                "yes" if column.nullable else "no",
                "primary" if column.primary_key else "",
            )
        console.print(table)
        for index in info.indexes:
            unique = "unique " if index.unique else ""
            console.print(Text(f"  {unique}index {index.name} ({', '.join(index.columns)})"))
        for foreign_key in info.foreign_keys:
            console.print(Text(f"  foreign key {foreign_key}"))
        console.print()


command = sql
