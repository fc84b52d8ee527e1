"""Errors that reach the user as one line and an exit code, never a traceback."""

from __future__ import annotations

# Ctrl+C or SIGTERM: 128 + SIGINT, as shells report an interrupted command.
EXIT_INTERRUPTED = 130


class GembatchError(Exception):
    """A failure the user must look at (exit 1)."""

    exit_code = 1


class BadInput(GembatchError):
    """Bad input or usage: a file, a line or an argument is wrong (exit 2)."""

    exit_code = 2


class StoreError(GembatchError):
    """The database cannot be opened, created or migrated (exit 2: a bad location)."""

    exit_code = 2
