"""Sub-commands of ``gembatch``.

Each module here defines one click command (or group) in a module-level
attribute named ``command``; :func:`discover` finds them, so adding a command
never means editing a shared list.

Finding them imports none of them: a module is a command when its source binds
``command`` at the top level, and the command is named after the module (a
trailing ``_`` dropped: ``import_`` is ``import``). A module is imported only
when its command runs or is listed in ``gembatch --help``, which is why every
module here must itself be cheap to import.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import re
from collections.abc import Iterator, MutableMapping
from pathlib import Path

import click

# The marker of a command module: `command = ...` (or `command: ... = ...`) at the top level.
_MARKER = re.compile(r"^command\s*(?::[^=\n]*)?=", re.MULTILINE)


class Commands(MutableMapping[str, click.Command]):
    """The sub-commands by name, each module imported on first lookup.

    It stands in for the plain dict of :attr:`click.Group.commands`, so the
    group's own ``list_commands`` (names only) and ``get_command`` (one import)
    are lazy without being rewritten, and a command added with
    ``add_command`` is kept as usual.
    """

    def __init__(self) -> None:
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            module = command_modules().get(name)
            if module is None:
                raise KeyError(name)
            self._loaded[name] = _load(name, module)
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        # Only what was loaded or added goes: a command module itself stays listed.
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*command_modules(), *self._loaded}))

    def __len__(self) -> int:
        return len({*command_modules(), *self._loaded})

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in command_modules()


def discover() -> Commands:
    """Every sub-command, found without importing any."""
    return Commands()


@functools.cache
def command_modules() -> dict[str, str]:
    """Command name -> module name, for every command module in this package."""
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.ispkg and _is_command_module(info):
            found[info.name.rstrip("_")] = f"{__name__}.{info.name}"
    return found


def _is_command_module(info: pkgutil.ModuleInfo) -> bool:
    folder = getattr(info.module_finder, "path", None)
    source = Path(folder, f"{info.name}.py") if isinstance(folder, str) else None
    if source is not None and source.is_file():
        return _MARKER.search(source.read_text(encoding="utf-8")) is not None
    # No source to read (a zip or bytecode-only install): ask the module itself.
    module = importlib.import_module(f"{__name__}.{info.name}")
    return isinstance(getattr(module, "command", None), click.Command)


def _load(name: str, module_name: str) -> click.Command:
    command = getattr(importlib.import_module(module_name), "command", None)
    if not isinstance(command, click.Command):
        raise TypeError(f"{module_name}.command is not a click command")
    if command.name != name:
        # Listed under one name and run under another would confuse help and errors.
        raise TypeError(f"{module_name}: command {command.name!r} must be named {name!r}")
    return command
