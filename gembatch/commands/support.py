"""Shared pieces of the click layer: the app context and output helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gembatch.common.locations import Locations

if TYPE_CHECKING:
    from gembatch.remote.client import Gemini
    from gembatch.store.database import Store


@dataclass
class AppContext:
    """What every sub-command gets through :data:`pass_app`."""

    locations: Locations
    debug: bool = False
    _store: Store | None = field(default=None, repr=False)

    def store(self) -> Store:
        """The migrated database, opened on first use."""
        if self._store is None:
            # Here, not at the top: `gembatch --help` must not load the database layer.
            from gembatch.store.database import open_store

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
            from gembatch.store.database import discard_if_new

            store, self._store = self._store, None
            discard_if_new(store)


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


def _duration(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    from datetime import timedelta

    from gembatch.common.ages import parse_duration

    if value is None or isinstance(value, timedelta):
        return value
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


# `poll`, `watch` and `status` mark the same jobs stuck: one option, one default.
stuck_after_option = click.option(
    "--stuck-after",
    default="24h",
    show_default=True,
    metavar="DURATION",
    callback=_duration,
    help="Mark a job pending or running longer than this as stuck (90m, 24h, 2d, or seconds).",
)


def make_gemini(base_url: str | None, retries: int = 5) -> Gemini:
    """The one API client of a command: key and endpoint from flags and environment."""
    from gembatch.remote.client import connect

    return connect(base_url, retries=retries)


class LazyOption(click.Option):
    """An option whose default, shown default or help text come from a module that
    is slow to import (the engine, the report): ``lazy`` returns those attributes,
    and is called only when the command runs or shows its own help, never when
    ``gembatch --help`` lists the commands."""

    def __init__(self, *args: Any, lazy: Callable[[], dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy: Callable[[], dict[str, Any]] | None = lazy

    def _resolve(self) -> None:
        if self._lazy is not None:
            lazy, self._lazy = self._lazy, None
            for name, value in lazy().items():
                setattr(self, name, value)

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        self._resolve()
        return super().get_default(ctx, call=call)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self._resolve()
        return super().get_help_record(ctx)

    def to_info_dict(self) -> dict[str, Any]:
        self._resolve()
        return super().to_info_dict()


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
