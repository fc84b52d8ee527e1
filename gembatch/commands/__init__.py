"""Sub-commands of ``gembatch``; each module defines one click command."""

from __future__ import annotations

import click

from gembatch.commands.db import db

COMMANDS: list[click.Command] = [db]
