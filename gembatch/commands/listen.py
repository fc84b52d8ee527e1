"""``gembatch listen``: receive the API's webhook events and poll each job at once."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

import click

from gembatch.commands.support import AppContext, base_url_option, make_gemini, pass_app
from gembatch.commands.support import retries_option as _retries

# The receiver (uvicorn, standardwebhooks, PyJWT: the optional `listen` extra) is imported
# inside the command: `gembatch --help` imports every command module.

SECRET_ENV = "GEMBATCH_WEBHOOK_SECRET"


def _path(value: str) -> str:
    if not value.startswith("/") or any(c in value for c in "?# "):
        raise click.BadParameter(f"{value!r} is not a URL path like /hooks", param_hint="--path")
    return value


def _url(value: str | None, hint: str) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{value!r} is not an http(s) URL", param_hint=hint)
    return value


@click.command("listen")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8787, show_default=True, help="Port (0: any)."
)
@click.option("--path", default="/", show_default=True, help="The path events are posted to.")
@click.option(
    "--jwks-url",
    default=None,
    metavar="URL",
    help="Key set for per-batch webhook tokens [default: Google's generativelanguage JWKS].",
)
@click.option(
    "--audience",
    default=None,
    metavar="URL",
    help="Require per-batch tokens to be issued for this URL (their aud claim).",
)
@click.option(
    "--max-body",
    type=click.IntRange(1024),
    default=1 << 20,
    show_default=True,
    help="Largest body accepted, in bytes.",
)
@click.option("--poll", "with_poll", is_flag=True, help="Run the poll loop in this process too.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds between poll cycles with --poll (events poll their job at once).",
)
@click.option(
    "--keep-remote", is_flag=True, help="Download results but never delete remote batches or files."
)
@base_url_option
@_retries("Extra attempts per API call on 429, 5xx, timeouts and dropped connections.")
@pass_app
def listen(
    app: AppContext,
    host: str,
    port: int,
    path: str,
    jwks_url: str | None,
    audience: str | None,
    max_body: int,
    with_poll: bool,
    interval: float,
    keep_remote: bool,
    base_url: str | None,
    retries: int,
) -> None:
    """Receive webhook events and poll each finished job at once.

    Verifies every delivery: HMAC with the secrets in GEMBATCH_WEBHOOK_SECRET
    (space-separated; never stored) for project webhooks, RS256 tokens against the
    JWKS for per-batch webhooks. A verified event is recorded, then answered, then its
    job polled through the normal poll steps.
    """
    from gembatch.engine.poller import PollOptions
    from gembatch.listen import require_extra

    require_extra()
    from gembatch.listen.runner import Lines, ListenSettings, Receiver, serve
    from gembatch.listen.verify import DEFAULT_JWKS_URL, parse_secrets

    settings = ListenSettings(
        host=host,
        port=port,
        path=_path(path),
        secrets=tuple(parse_secrets(os.environ.get(SECRET_ENV))),
        jwks_url=_url(jwks_url, "--jwks-url") or DEFAULT_JWKS_URL,
        audience=_url(audience, "--audience"),
        max_body=max_body,
    )
    ctx = click.get_current_context()
    gemini = make_gemini(base_url, retries)
    store = app.store()
    options = PollOptions(keep_remote=keep_remote)
    say = Lines(sys.stdout)
    try:
        receiver = Receiver(settings, store, gemini, app.locations, say, options=options)

        def poll_loop() -> None:
            from gembatch.commands.poll_screen import run_poll

            # A run ends once every job is done; new jobs may come, so look again later.
            while not gemini.stop.is_set():
                run_poll(
                    store,
                    gemini,
                    app.locations,
                    options,
                    interval=interval,
                    once=False,
                    out=sys.stdout,
                    live=False,
                )
                if gemini.stop.wait(interval):
                    return

        code = serve(receiver, gemini, companion=poll_loop if with_poll else None)
    finally:
        gemini.close()
    if code:
        ctx.exit(code)


command = listen
