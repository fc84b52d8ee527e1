"""``demo``: the whole tool end to end, in one command, with no API key and no network.

It starts the emulator in this process, writes a small workspace (nine
input files under ``DIR/batch/``, one of them an embeddings batch), and then
runs the very code paths the real commands run: submit, the live poll (jobs
finish at staggered times, each with its progress; one fails, one is cancelled
through ``cancel``, one has per-request errors), and the report. Only the
endpoint and the key differ from a real run.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from gembatch.common import states
from gembatch.common.atomic import atomic_writer
from gembatch.common.errors import BadInput
from gembatch.common.locations import DEFAULT_DB_NAME, DEFAULT_JOB_INFO, Locations, sqlite_url
from gembatch.emulator import Emulator, OutcomeRule
from gembatch.engine.cancel import cancel_jobs, describe
from gembatch.engine.poller import PollOptions, RunSummary
from gembatch.engine.progress import QuietSubmitReporter
from gembatch.engine.submit import submit_files
from gembatch.engine.units import SubmitOptions, SubmitReport
from gembatch.remote.client import Gemini
from gembatch.remote.retry import RetryPolicy
from gembatch.store import tracker
from gembatch.store.cancels import created_job_for_input
from gembatch.store.database import Store, open_store

DEFAULT_DIR = "gembatch-demo"
MARKER = ".gembatch-demo"
DEMO_KEY = "demo-key-not-a-real-key"
MODEL = "gemini-2.5-flash"
FAILING = "06-recipes.jsonl"
CANCELLED = "08-long-essays.jsonl"
WITH_ERRORS = "03-summaries.jsonl"

# (file, request count, prompt template); {n} is the request number.
_INPUTS: list[tuple[str, int, str]] = [
    ("01-capitals.jsonl", 12, "Name the capital of country number {n} in the UN member list."),
    ("02-translations.jsonl", 20, "Translate sentence {n} of 'The Little Prince' into French."),
    (WITH_ERRORS, 30, "Summarize news article {n} of today's front page in two sentences."),
    ("04-haiku.jsonl", 10, "Write a haiku about the number {n}."),
    ("05-math.jsonl", 25, "What is {n} squared, and is it a prime number? Explain briefly."),
    (FAILING, 15, "Give me recipe idea {n} for a quick vegetarian dinner."),
    ("07-code-review.jsonl", 40, "Review code snippet {n}: `def f(x): return x*{n}`."),
    (CANCELLED, 50, "Write a 2,000-word essay on topic {n} of the history of science."),
]
# One embeddings batch (``submit --embed``): each line holds one "content" to embed.
EMBEDDINGS = "09-embeddings.jsonl"
EMBED_MODEL = "gemini-embedding-001"
_EMBED_COUNT = 24
_EMBED_TEXT = "Product description {n}: a small, sturdy, water-resistant backpack."


@dataclass(frozen=True)
class Schedule:
    """Emulator timing: each batch is pending, then running, each plus a seeded jitter."""

    pending_s: float
    running_s: float
    jitter_s: float
    interval_s: float
    cancel_after_s: float


# Jobs end between 7 s and about 27 s after they are created, one by one.
NORMAL = Schedule(pending_s=2.0, running_s=5.0, jitter_s=10.0, interval_s=1.0, cancel_after_s=6.0)
# For tests: the same story in a few seconds.
FAST = Schedule(pending_s=0.1, running_s=0.2, jitter_s=0.8, interval_s=0.2, cancel_after_s=0.3)


@dataclass
class DemoResult:
    directory: Path
    submit: SubmitReport
    poll: RunSummary
    counts: dict[str | None, int]

    @property
    def ok(self) -> bool:
        return not self.submit.failed and not self.poll.given_up


# --------------------------------------------------------------------------- workspace


def prepare_dir(directory: Path) -> None:
    """Use an empty (or new) directory, or one a previous demo made: clear what it wrote."""
    if directory.exists() and not directory.is_dir():
        raise BadInput(f"--dir {directory}: exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise BadInput(
                f"--dir {directory}: not empty and not a previous gembatch demo; "
                "choose another directory"
            )
        shutil.rmtree(directory / "batch", ignore_errors=True)
        for pattern in (f"{DEFAULT_DB_NAME}*", f"{DEFAULT_JOB_INFO}*"):
            for leftover in directory.glob(pattern):
                leftover.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_writer(directory / MARKER, "w", encoding="utf-8") as handle:
        handle.write("made by `gembatch demo`; safe to delete\n")


def write_inputs(directory: Path) -> list[Path]:
    """The example inputs, in the shape the Batch API reads (key + request per line)."""
    batch = directory / "batch"
    batch.mkdir(parents=True, exist_ok=True)
    written = []
    for name, count, template in _INPUTS:
        lines = [
            json.dumps(
                {
                    "key": f"{Path(name).stem}-{n:03d}",
                    "request": {"contents": [{"parts": [{"text": template.format(n=n)}]}]},
                }
            )
            for n in range(1, count + 1)
        ]
        path = batch / name
        with atomic_writer(path, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        written.append(path)
    return written


def write_embed_input(directory: Path) -> Path:
    """The embeddings input: ``{"key", "request": {"content", "outputDimensionality"}}``."""
    path = directory / "batch" / EMBEDDINGS
    lines = [
        json.dumps(
            {
                "key": f"{Path(EMBEDDINGS).stem}-{n:03d}",
                "request": {
                    "content": {"parts": [{"text": _EMBED_TEXT.format(n=n)}]},
                    "outputDimensionality": 256,
                },
            }
        )
        for n in range(1, _EMBED_COUNT + 1)
    ]
    with atomic_writer(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def emulator_for(schedule: Schedule) -> Emulator:
    return Emulator(
        pending_s=schedule.pending_s,
        running_s=schedule.running_s,
        jitter_s=schedule.jitter_s,
        seed=7,
        rules=[
            OutcomeRule(
                "FAILED",
                display_name=f"*batch/{FAILING}:*",
                message="Demo: this batch was set up to fail",
            ),
            OutcomeRule(
                "SUCCEEDED", display_name=f"*batch/{WITH_ERRORS}:*", request_error_rate=0.2
            ),
        ],
    )


# --------------------------------------------------------------------------- the run


class _Printer(QuietSubmitReporter):
    """Submit lines, indented under the step they belong to (no progress bar: tiny files)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def line(self, text: str) -> None:
        print(f"   {text}", file=self._out, flush=True)


def _cancel_later(
    store: Store,
    gemini: Gemini,
    locations: Locations,
    emulator: Emulator,
    job_id: int,
    batch_name: str,
    delay_s: float,
    say: Callable[[str], None],
) -> threading.Timer:
    """Cancel one job a few seconds into the poll, through the same code as ``gembatch cancel``."""

    def fire() -> None:
        try:
            say(f"demo: gembatch cancel batch/{CANCELLED}")
            for outcome in cancel_jobs(store, gemini, locations, [job_id]):
                say(f"demo: {describe(outcome)}")
        except Exception as exc:
            # Never leave the poll waiting for a job held running: end it anyway.
            say(f"demo: cancel failed ({exc}); ending the job on the emulator instead")
            emulator.set_state(batch_name, "CANCELLED")

    timer = threading.Timer(delay_s, fire)
    timer.daemon = True
    return timer


# The screens of the poll and report steps: the command wires the view in, so
# the demo runs exactly what ``gembatch poll`` and ``gembatch report`` show.
PollScreen = Callable[[Store, Gemini, Locations, PollOptions, float], RunSummary]
ReportScreen = Callable[[Store, Locations], None]


def run_demo(
    directory: Path,
    out: TextIO,
    *,
    poll: PollScreen,
    report: ReportScreen,
    fast: bool = False,
) -> DemoResult:
    schedule = FAST if fast else NORMAL
    directory = directory.absolute()
    prepare_dir(directory)

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    locations = Locations(
        job_info=directory / DEFAULT_JOB_INFO, db_url=sqlite_url(directory / DEFAULT_DB_NAME)
    )
    inputs = write_inputs(directory)
    embed_input = write_embed_input(directory)
    requests = sum(count for _, count, _ in _INPUTS) + _EMBED_COUNT
    say("gembatch demo: the real commands against a local emulator of the Gemini Batch API")
    say("(no API key, no network; nothing leaves this machine)")
    say("")
    say(
        f"1. wrote {len(inputs) + 1} input files with {requests} requests under "
        f"{directory / 'batch'} (one of them for embeddings)"
    )

    emulator = emulator_for(schedule).start()
    store = open_store(locations.db_url)
    gemini = Gemini(
        DEMO_KEY,
        base_url=emulator.base_url,
        retry=RetryPolicy(initial_delay=0.2, max_delay=2.0, jitter=0.1),
    )
    timer: threading.Timer | None = None
    try:
        say("2. gembatch submit batch/0[1-8]*.jsonl")
        options = SubmitOptions(model=MODEL)
        files = [(path, str(path.relative_to(directory))) for path in inputs]
        submitted = submit_files(store, gemini, locations, files, options, _Printer(out))
        say(f"   gembatch submit --embed batch/{EMBEDDINGS}")
        embed = SubmitOptions(model=EMBED_MODEL, kind="embed")
        shown = str(embed_input.relative_to(directory))
        embedded = submit_files(
            store, gemini, locations, [(embed_input, shown)], embed, _Printer(out)
        )
        submitted.outcomes.extend(embedded.outcomes)
        job = created_job_for_input(store, f"batch/{CANCELLED}")
        if job is not None:
            # Held running until the cancel below, so the story is the same on any machine.
            emulator.set_state(job[1], "RUNNING")
            timer = _cancel_later(
                store, gemini, locations, emulator, job[0], job[1], schedule.cancel_after_s, say
            )
        say("")
        say(
            "3. gembatch poll   (jobs finish one by one; one fails, one gets cancelled, "
            "one has per-request errors)"
        )
        if timer is not None:
            timer.start()
        summary = poll(store, gemini, locations, PollOptions(concurrency=8), schedule.interval_s)
        say("")
        say("4. gembatch report")
        report(store, locations)
        counts = tracker.state_counts(store)
    finally:
        if timer is not None:
            timer.cancel()
        gemini.stop.set()
        gemini.close()
        store.dispose()
        emulator.stop()
    say("")
    say(f"Results are in {directory / 'batch' / 'results'}")
    say(f"The database is {directory / DEFAULT_DB_NAME} (try `gembatch sql` in that directory).")
    say("")
    say("To run the same against the real Gemini API:")
    say("  export GEMINI_API_KEY=...        # https://aistudio.google.com/apikey")
    say(f"  cd {directory}")
    say("  gembatch submit batch/0[1-8]*.jsonl   # real batches are billed (at the batch discount)")
    say(f"  gembatch submit --embed batch/{EMBEDDINGS}")
    say("  gembatch poll")
    say("  gembatch report")
    return DemoResult(directory, submitted, summary, counts)


def expected_counts() -> dict[str, int]:
    """What a demo run ends with (for tests and for the final check)."""
    return {
        states.SUCCEEDED: len(_INPUTS) - 2 + 1,  # and the embeddings job
        states.FAILED: 1,
        states.CANCELLED: 1,
    }
