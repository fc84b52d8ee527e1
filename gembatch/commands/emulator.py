"""``gembatch emulator``: a local Gemini Batch API for trying gembatch without quota."""

from __future__ import annotations

import click

from gembatch.common.errors import BadInput

# The emulator itself is imported only when this command runs: every other gembatch
# command would otherwise pay for loading an HTTP server.


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        message = f"--fault-codes: expected comma-separated HTTP codes, got {text!r}"
        raise BadInput(message) from None


def _endpoints(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=0, show_default=True, help="Port (0: a free one).")
@click.option(
    "--api-key",
    envvar="GEMBATCH_EMULATOR_API_KEY",
    default=None,
    help="Accept only this key [env GEMBATCH_EMULATOR_API_KEY; default: any non-empty key].",
)
@click.option("--pending-s", default=2.0, show_default=True, help="Seconds a batch stays PENDING.")
@click.option("--running-s", default=8.0, show_default=True, help="Seconds a batch RUNS.")
@click.option("--jitter-s", default=1.0, show_default=True, help="Seeded extra 0..S seconds.")
@click.option("--latency-s", default=0.0, show_default=True, help="Delay before every answer.")
@click.option("--fault-rate", default=0.0, show_default=True, help="Share of calls that fail.")
@click.option(
    "--fault-codes", default="429,500,503", show_default=True, help="Codes the fault rate draws."
)
@click.option(
    "--fault-endpoints",
    default=None,
    help=(
        "Comma-separated endpoint globs the fault rate covers, e.g. batches.get,files.* "
        "[default: every endpoint but files.upload_data]."
    ),
)
@click.option(
    "--request-error-rate", default=0.0, show_default=True, help="Share of requests erroring."
)
@click.option(
    "--rule",
    "rules",
    multiple=True,
    metavar="OUTCOME[:key=value,...]",
    help="Outcome rule, e.g. FAILED:name=bad-* or EXPIRED:fraction=0.1 (repeatable).",
)
@click.option("--seed", default=0, show_default=True, help="Seed for schedules, faults, results.")
@click.option(
    "--missing-file-status",
    type=click.Choice(["404", "403"]),
    default="404",
    show_default=True,
    help="Status for a missing file (the live service is reported to send 403).",
)
@click.option(
    "--max-running",
    type=click.IntRange(min=1),
    default=None,
    help="At most N batches RUNNING at once; the rest wait, highest priority first "
    "[default: no limit].",
)
@click.option(
    "--shuffle-inline", is_flag=True, help="Answer inline requests in a shuffled (seeded) order."
)
@click.option(
    "--output-delay-s",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds a SUCCEEDED batch shows no output yet.",
)
@click.option(
    "--long-file-ids",
    is_flag=True,
    help="files.get/delete refuse result file ids over 40 characters, as the live service does.",
)
@click.option(
    "--batch-stats",
    type=click.Choice(["strings", "numbers", "missing"]),
    default="strings",
    show_default=True,
    help="batchStats counters as int64 strings, plain numbers, or left out.",
)
@click.option("--data-dir", default=None, help="Where to make the emulator's temporary folder.")
@click.option("-v", "--verbose", is_flag=True, help="Log every request to stderr (never keys).")
def emulator(
    host: str,
    port: int,
    api_key: str | None,
    pending_s: float,
    running_s: float,
    jitter_s: float,
    latency_s: float,
    fault_rate: float,
    fault_codes: str,
    fault_endpoints: str | None,
    request_error_rate: float,
    rules: tuple[str, ...],
    seed: int,
    missing_file_status: str,
    max_running: int | None,
    shuffle_inline: bool,
    output_delay_s: float,
    long_file_ids: bool,
    batch_stats: str,
    data_dir: str | None,
    verbose: bool,
) -> None:
    """Serve a local Gemini Batch API until interrupted.

    Prints the base URL as its first line. Point the SDK at it with
    GOOGLE_GEMINI_BASE_URL=<url> and any API key. SIGTERM exits 0; Ctrl+C exits 130.
    """
    from gembatch.emulator import Emulator, EmulatorConfig, parse_rule
    from gembatch.emulator.runner import describe, serve_until_signalled

    try:
        config = EmulatorConfig(
            host=host,
            port=port,
            api_key=api_key or None,
            pending_s=pending_s,
            running_s=running_s,
            jitter_s=jitter_s,
            seed=seed,
            rules=[parse_rule(rule) for rule in rules],
            request_error_rate=request_error_rate,
            latency_s=latency_s,
            fault_rate=fault_rate,
            fault_codes=_ints(fault_codes),
            fault_endpoints=_endpoints(fault_endpoints),
            missing_file_status=int(missing_file_status),
            max_running=max_running,
            shuffle_inline=shuffle_inline,
            output_delay_s=output_delay_s,
            long_file_ids=long_file_ids,
            batch_stats=batch_stats,
            data_dir=data_dir,
        )
        emu = Emulator(config)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    try:
        url = emu.bind()
    except OSError as exc:
        emu.stop()
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    click.echo(url)
    click.echo(
        f"export GOOGLE_GEMINI_BASE_URL={url} GEMINI_API_KEY=<any key>  "
        "# and api_version='v1beta'; stop with Ctrl+C",
        err=True,
    )
    if verbose:
        emu.on_request(lambda record: click.echo(describe(record), err=True))
    serve_until_signalled(emu, lambda why: click.echo(f"emulator {why}, stopped", err=True))


command = emulator
