"""Sub-commands of ``gembatch``.

Each module here defines one click command (or group) in a module-level
attribute named ``command``; :func:`discover` collects them, so adding a
command never means editing a shared list.
"""

from __future__ import annotations

import importlib
import pkgutil

import click


def discover() -> list[click.Command]:
    found: list[click.Command] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        command = getattr(module, "command", None)
        if isinstance(command, click.Command):
            found.append(command)
    return found
