"""Shared pieces of the click layer: the app context and output helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from gembatch.locations import Locations
from gembatch.store import Store, open_store


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


pass_app = click.make_pass_decorator(AppContext)
