"""The ``gembatch`` command: global options, error handling, and the sub-commands.

Each sub-command lives in ``gembatch/commands/<name>.py``; this module only
wires them together. Commands parse and render; logic lives in plain modules.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from gembatch import __version__
from gembatch.cli_support import AppContext
from gembatch.errors import GembatchError
from gembatch.locations import DB_ENV, DEFAULT_JOB_INFO, resolve

EXIT_INTERRUPTED = 130


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


def _register() -> None:
    from gembatch.commands import discover

    for command in discover():
        cli.add_command(command)


_register()


def _wants_debug(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("GEMBATCH_DEBUG") not in (None, "", "0")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors, documented exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _wants_debug(args)
    try:
        cli.main(args=args, prog_name="gembatch", standalone_mode=False)
    except GembatchError as exc:
        if debug:
            raise
        click.echo(f"gembatch: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("\ninterrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error worth a traceback.
        sys.stderr.close()
        sys.exit(0)
    except Exception as exc:
        if debug:
            raise
        click.echo(
            f"gembatch: internal error: {type(exc).__name__}: {exc} (rerun with --debug)", err=True
        )
        sys.exit(1)
    sys.exit(0)


def run(args: list[str], **kwargs: Any) -> Any:
    """Helper for tests: invoke through click's CliRunner-compatible entry."""
    return cli.main(args=args, standalone_mode=False, **kwargs)
