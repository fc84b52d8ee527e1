"""The ``gembatch`` command: global options, error handling, and the sub-commands.

Each sub-command lives in ``gembatch/commands/<name>.py``; this module only
wires them together. Commands parse and render; logic lives in plain modules.

Start-up stays cheap: the sub-commands are found without importing them, and
one is imported only when it runs (or when ``--help`` lists it), so
``gembatch --help`` never loads the database layer or the API client.
"""

from __future__ import annotations

import os
from typing import Any

import click

from gembatch import __version__
from gembatch.commands import discover
from gembatch.commands.support import AppContext
from gembatch.common.errors import EXIT_INTERRUPTED, GembatchError
from gembatch.common.locations import DB_ENV, DEFAULT_JOB_INFO, resolve


class UserError(click.ClickException):
    """A :class:`GembatchError` shown as one line, with its own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"gembatch: error: {self.format_message()}", err=True, file=file)


class GembatchGroup(click.Group):
    """Turns gembatch's own errors into one line and an exit code, and Ctrl+C into 130.

    Any other exception is a bug: one line pointing at ``--debug`` unless
    ``--debug`` (or ``GEMBATCH_DEBUG=1``) asks for the traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return self._invoke_or_abandon(ctx)
        except GembatchError as exc:
            if _debug(ctx):
                raise
            raise UserError(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # Output piped into `head` and closed early: nothing worth a traceback.
            raise click.exceptions.Exit(0) from None
        except OSError as exc:
            # A file or directory the user named (or implied) cannot be used.
            if _debug(ctx) or isinstance(exc, ConnectionError):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            raise UserError(f"{where}{exc.strerror or exc}", 2) from None
        except Exception as exc:
            if _debug(ctx):
                raise
            message = f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)"
            raise UserError(message, 1) from None

    def _invoke_or_abandon(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit as exc:
            if exc.exit_code != 0:
                _abandon(ctx)
            raise
        except BaseException:
            _abandon(ctx)
            raise


def _abandon(ctx: click.Context) -> None:
    app = ctx.obj
    if isinstance(app, AppContext):
        app.abandon()


def _debug(ctx: click.Context) -> bool:
    app = ctx.obj
    if isinstance(app, AppContext) and app.debug:
        return True
    return os.environ.get("GEMBATCH_DEBUG") not in (None, "", "0")


@click.group(
    cls=GembatchGroup,
    # Lazy: a lookup imports that one command's module, listing the names imports none.
    commands=discover(),
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--job-info",
    "job_info",
    type=click.Path(dir_okay=False, path_type=str),
    default=DEFAULT_JOB_INFO,
    show_default=True,
    help="The job-info JSONL file; relative input paths are resolved against its directory.",
)
@click.option(
    "--db",
    "db",
    metavar="URL|PATH",
    default=None,
    help=(
        f"SQLAlchemy URL or SQLite file path [env {DB_ENV}; "
        "default: gembatch.db beside the job-info file]."
    ),
)
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(__version__, prog_name="gembatch")
@click.pass_context
def cli(ctx: click.Context, job_info: str, db: str | None, debug: bool) -> None:
    """Track, poll, download and clean up Gemini Batch API jobs."""
    app = AppContext(locations=resolve(job_info, db), debug=debug)
    ctx.obj = app
    ctx.call_on_close(app.close)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    try:
        cli.main(args=argv, prog_name="gembatch")
    except KeyboardInterrupt:
        # Ctrl+C before any command started (while Python was still importing).
        click.echo("\ninterrupted", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
