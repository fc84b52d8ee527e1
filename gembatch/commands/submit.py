"""``gembatch submit``: validate JSONL inputs, upload them, create batches, track them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from gembatch.commands.support import (
    AppContext,
    LazyOption,
    base_url_option,
    make_gemini,
    pass_app,
    retries_option,
)
from gembatch.common.errors import EXIT_INTERRUPTED

# The engine and rich are imported inside the functions that use them: every
# command module is imported by `gembatch --help`, and the engine loads the API client.


class CliSubmitReporter:
    """Plain lines on stdout; an upload progress bar on stderr when it is a terminal."""

    def __init__(self) -> None:
        from rich.console import Console

        self._console = Console(stderr=True)

    def line(self, text: str) -> None:
        click.echo(text)

    @contextlib.contextmanager
    def upload(self, label: str, total: int) -> Iterator[Callable[[int], None]]:
        if not self._console.is_terminal:
            yield lambda done: None
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = (
            TextColumn("uploading {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self._console, transient=True) as progress:
            task = progress.add_task(label, total=total)
            yield lambda done: progress.update(task, completed=done)


def _check_webhook_url(url: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{url!r} is not an http(s) URL", param_hint="'--webhook-url'")


def _model_default() -> dict[str, Any]:
    from gembatch.engine.units import DEFAULT_MODEL, MODEL_ENV

    return {
        "default": lambda: os.environ.get(MODEL_ENV) or DEFAULT_MODEL,
        "show_default": f"{DEFAULT_MODEL}, env {MODEL_ENV}",
    }


def _max_bytes_default() -> dict[str, Any]:
    from gembatch.engine.inputs import MAX_INPUT_BYTES

    return {"default": MAX_INPUT_BYTES}


@click.command("submit")
@click.argument("files", nargs=-1, type=click.Path(path_type=str))
@click.option(
    "-m",
    "--model",
    cls=LazyOption,
    lazy=_model_default,
    help="Model for every request.",
)
@click.option(
    "--display-name",
    default=None,
    metavar="NAME",
    help="Label for the batches (a short unique suffix is always added).",
)
@click.option("--force", is_flag=True, help="Submit files that were already submitted.")
@click.option(
    "--split",
    is_flag=True,
    help="Split inputs larger than the API accepts into NAME.part-001.jsonl, ... "
    "(default: refuse them).",
)
@click.option(
    "--inline", is_flag=True, help="Send the requests in the create call (small inputs, <20 MB)."
)
@click.option(
    "--max-bytes",
    cls=LazyOption,
    lazy=_max_bytes_default,
    type=click.IntRange(min=1),
    hidden=True,
    help="Largest input file the API accepts (for tests).",
)
@click.option(
    "--embed",
    is_flag=True,
    help='Embeddings batches (asyncBatchEmbedContent): each request holds one "content"; '
    "the model defaults to $GEMBATCH_EMBED_MODEL or gemini-embedding-001.",
)
@click.option(
    "--priority",
    type=click.IntRange(-(2**63), 2**63 - 1),
    default=None,
    metavar="N",
    help="Batch priority: higher runs first, may be negative [API default: 0].",
)
@click.option(
    "--webhook-url",
    default=None,
    metavar="URL",
    help="Have the API post this batch's events (batch.succeeded, ...) to URL "
    "(see `gembatch listen`).",
)
@base_url_option
@retries_option(
    "Extra attempts on 429/5xx (a create is retried only after checking it made nothing)."
)
@pass_app
def submit(
    app: AppContext,
    files: tuple[str, ...],
    model: str,
    display_name: str | None,
    force: bool,
    split: bool,
    inline: bool,
    max_bytes: int,
    embed: bool,
    priority: int | None,
    webhook_url: str | None,
    base_url: str | None,
    retries: int,
) -> None:
    """Submit JSONL request files as batch jobs and track them.

    Every line must be a JSON object with a unique "key" and a "request" object;
    a bad line stops everything before anything is uploaded. A file already
    submitted with the same content is skipped (--force submits it again).
    Without FILES, only settles submissions an interrupted run left behind.
    """
    from gembatch.engine.submit import submit_files
    from gembatch.engine.units import DUPLICATE, UNDONE, SubmitOptions

    ctx = click.get_current_context()
    if embed and ctx.get_parameter_source("model") is click.core.ParameterSource.DEFAULT:
        from gembatch.engine.units import DEFAULT_EMBED_MODEL, EMBED_MODEL_ENV

        model = os.environ.get(EMBED_MODEL_ENV) or DEFAULT_EMBED_MODEL
    if webhook_url is not None:
        _check_webhook_url(webhook_url)
    options = SubmitOptions(
        model=model,
        kind="embed" if embed else "generate",
        priority=priority,
        webhook_url=webhook_url,
        display_name=display_name,
        force=force,
        split=split,
        inline=inline,
        max_bytes=max_bytes,
        create_attempts=retries + 1,
    )
    pairs = [(Path(name), name) for name in files]
    gemini = make_gemini(base_url, retries)
    store = app.store()
    try:
        report = submit_files(store, gemini, app.locations, pairs, options, CliSubmitReporter())
    except KeyboardInterrupt:
        gemini.stop.set()
        click.echo(
            "\ninterrupted: run `gembatch submit` again; it settles what was in flight first",
            err=True,
        )
        ctx.exit(EXIT_INTERRUPTED)
    finally:
        gemini.close()
    made = report.count("submitted") + report.count("adopted")
    parts = [f"{made} submitted", f"{report.count('skipped')} skipped"]
    if report.count(UNDONE):
        parts.append(f"{report.count(UNDONE)} interrupted earlier and undone")
    if report.count(DUPLICATE):
        parts.append(f"duplicate batches of {report.count(DUPLICATE)} input(s) cancelled")
    if report.failed:
        parts.append(f"{report.failed} failed")
    click.echo(f"done: {', '.join(parts)}")
    if made:
        click.echo("next: `gembatch poll` downloads the results as the jobs finish")
    if report.failed:
        click.echo("some submissions failed; see above and `gembatch status`", err=True)
        ctx.exit(1)


command = submit
