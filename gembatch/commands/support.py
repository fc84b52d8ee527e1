"""Shared pieces of the click layer: the app context and output helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gembatch.common.locations import Locations
from gembatch.store.database import Store, discard_if_new, open_store


@dataclass
class AppContext:
    """What every sub-command gets through :data:`pass_app`."""

    locations: Locations
    debug: bool = False
    _store: Store | None = field(default=None, repr=False)

    def store(self) -> Store:
        """The migrated database, opened on first use."""
        if self._store is None:
            self._store = open_store(self.locations.db_url)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None

    def abandon(self) -> None:
        """The command failed: close, and take back a database file it created
        if nothing was stored in it (a mistyped ``--db`` leaves no stray file)."""
        if self._store is not None:
            store, self._store = self._store, None
            discard_if_new(store)


if TYPE_CHECKING:
    from gembatch.remote.client import Gemini

F = TypeVar("F", bound=Callable[..., Any])

pass_app = click.make_pass_decorator(AppContext)

base_url_option = click.option(
    "--base-url",
    default=None,
    metavar="URL",
    help="API endpoint [env GOOGLE_GEMINI_BASE_URL; default: the Gemini API].",
)


def retries_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--retries", type=click.IntRange(0, 20), default=5, show_default=True, help=help
    )


def make_gemini(base_url: str | None, retries: int = 5) -> Gemini:
    """The one API client of a command: key and endpoint from flags and environment."""
    from gembatch.remote.client import connect

    return connect(base_url, retries=retries)


def output_options(fn: F) -> F:
    """Add ``--table`` (default), ``--json``, ``--nl`` and ``--csv``; the command gets ``fmt``."""
    options = [
        click.option(
            "--table", "fmt", flag_value="table", default=True, help="A table (the default)."
        ),
        click.option("--json", "fmt", flag_value="json", help="A JSON array of objects."),
        click.option("--nl", "fmt", flag_value="nl", help="One JSON object per line."),
        click.option("--csv", "fmt", flag_value="csv", help="CSV with a header row."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn
