"""Chaos: the whole life cycle with real processes, faults and SIGKILLs, then one clean run.

``gembatch submit`` of file and inline inputs (three of them with multi-MB results, so
kills land mid-download), two ``gembatch poll`` at once on the same database and
``gembatch cleanup``, while the emulator answers 10 % of calls with 429/500/503/403, drops
downloads and connections, carries creates out and then errors, adds jittered latency, and
the test SIGKILLs the processes at random instants. Then the faults stop and a clean run
(submit, two pollers, ``cleanup --all``) must finish everything: results identical to what
the emulator served, one batch per input, nothing left remotely, no temp files, a sound
database and a whole job-info.jsonl.

The seed is printed (``pytest -s``) and in every assertion message; rerun one with
``GEMBATCH_CHAOS_SEED=<seed>``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google import genai
from google.genai import types as genai_types
from sqlalchemy import create_engine, text

from gembatch.emulator import Emulator, running_emulator
from gembatch.emulator.app import CreatedBatch
from gembatch.emulator.results import ErrorPolicy, write_results

SEED = int(os.environ.get("GEMBATCH_CHAOS_SEED", "20261207"))
MODEL = "gemini-2.5-flash"
FILE_INPUTS = 25
INLINE_INPUTS = 4
LARGE_AT = (4, 11, 18)  # spread out, so big downloads happen in several rounds
LARGE_REQUESTS = 3500  # about 3.5 MB of results each
ROUNDS = 7
ROUND_CAP_S = 25.0  # whatever is still running then is killed too
FAULT_CODES = (429, 500, 503, 403)
FINAL_TIMEOUT_S = 180.0


# ------------------------------------------------------------------------ the workspace


def request_lines(tag: str, count: int) -> list[str]:
    return [
        json.dumps(
            {
                "key": f"{tag}-{n}",
                "request": {"contents": [{"parts": [{"text": f"question {tag}.{n}"}]}]},
            }
        )
        for n in range(count)
    ]


def write_inputs(ws: Path) -> tuple[list[str], list[str]]:
    """File inputs under batch/ (the large ones among them) and inline ones under inline/."""
    files, inline = [], []
    for index in range(FILE_INPUTS):
        large = index in LARGE_AT
        name = f"batch/{'big-' if large else ''}{index:03d}.jsonl"
        count = LARGE_REQUESTS if large else 3 + index % 5
        files.append(name)
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text("\n".join(request_lines(f"f{index}", count)) + "\n")
    for index in range(INLINE_INPUTS):
        name = f"inline/{index:03d}.jsonl"
        inline.append(name)
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text("\n".join(request_lines(f"i{index}", 2 + index)) + "\n")
    return files, inline


# ------------------------------------------------------------------------ processes


@dataclass
class Figures:
    seed: int = SEED
    started: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)
    exits: Counter[str] = field(default_factory=Counter)
    t0: float = field(default_factory=time.monotonic)

    def line(self, emulator: Emulator, db_kind: str) -> str:
        faults = answered_faults(emulator)
        creates = len(emulator.created_batches())
        return (
            f"chaos[{db_kind}] seed={self.seed} runtime={time.monotonic() - self.t0:.0f}s "
            f"started={dict(self.started)} kills={dict(self.kills)} exits={dict(self.exits)} "
            f"faults_by_code={faults} creates={creates} "
            f"calls={emulator.stats().total}"
        )


def answered_faults(emulator: Emulator) -> dict[int, int]:
    """Error answers by HTTP status (0: a hang-up), 404s excluded: those are real answers."""
    counts: Counter[int] = Counter()
    for (_, status), n in emulator.stats().counts.items():
        if status != 404 and not 200 <= status < 300:
            counts[status] += n
    return dict(sorted(counts.items()))


class Runner:
    """Starts the real CLI in subprocesses against the emulator; logs kept for diagnosis."""

    def __init__(self, emulator: Emulator, ws: Path, logs: Path, db: str | None) -> None:
        self.emulator = emulator
        self.ws = ws
        self.logs = logs
        self.db = db
        self.figures = Figures()
        self._serial = 0

    def start(self, kind: str, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "GEMINI_API_KEY": "test-key"}
        env.pop("GOOGLE_API_KEY", None)
        env["GOOGLE_GEMINI_BASE_URL"] = self.emulator.base_url
        if self.db is not None:
            env["GEMBATCH_DB"] = self.db
        self._serial += 1
        log = self.logs / f"{self._serial:03d}-{kind}.log"
        self.figures.started[kind] += 1
        with open(log, "wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "gembatch", *args],
                cwd=self.ws,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def submit(self, files: list[str], inline: list[str]) -> list[tuple[str, list[str]]]:
        return [
            ("submit", ["submit", "-m", MODEL, *files]),
            ("submit-inline", ["submit", "-m", MODEL, "--inline", *inline]),
        ]

    def poll_args(self) -> list[str]:
        return ["poll", "--plain", "--interval", "0.3", "--concurrency", "4"]

    def last_log(self, kind: str) -> str:
        logs = sorted(self.logs.glob(f"*-{kind}.log"))
        return logs[-1].read_text(errors="replace")[-3000:] if logs else ""


def chaos_round(runner: Runner, rng: random.Random, files: list[str], inline: list[str]) -> None:
    """Submits and two pollers start at staggered instants; each is killed at a random
    instant or left to finish; then a cleanup, maybe killed too."""
    plan_faults(runner.emulator, rng)
    steps: list[tuple[float, str, list[str], float | None]] = []
    for kind, args in runner.submit(files, inline):
        steps.append((rng.uniform(0.0, 0.5), kind, args, kill_after(rng, 0.6, 0.2, 4.0)))
    for _ in range(2):
        # A poller with nothing to do exits at once: start them once the submits got going.
        start = rng.uniform(1.0, 4.0)
        steps.append((start, "poll", runner.poll_args(), kill_after(rng, 0.7, 0.5, 6.0)))
    run_together(runner, steps)
    args = ["cleanup", "-y", *(["--all"] if rng.random() < 0.5 else [])]
    run_together(runner, [(0.0, "cleanup", args, kill_after(rng, 0.4, 0.1, 2.0))])


def kill_after(rng: random.Random, p: float, low: float = 0.3, high: float = 8.0) -> float | None:
    return rng.uniform(low, high) if rng.random() < p else None


def run_together(runner: Runner, steps: list[tuple[float, str, list[str], float | None]]) -> None:
    begin = time.monotonic()
    waiting = sorted(steps, key=lambda s: s[0])
    running: list[tuple[str, subprocess.Popen[bytes], float | None]] = []
    while waiting or running:
        now = time.monotonic() - begin
        while waiting and waiting[0][0] <= now:
            _, kind, args, kill = waiting.pop(0)
            deadline = None if kill is None else now + kill
            running.append((kind, runner.start(kind, *args), deadline))
        still = []
        for kind, process, deadline in running:
            if process.poll() is not None:
                runner.figures.exits[f"{kind}:{process.returncode}"] += 1
                continue
            if (deadline is not None and now >= deadline) or now >= ROUND_CAP_S:
                process.send_signal(signal.SIGKILL)
                process.wait()
                runner.figures.kills[kind] += 1
                continue
            still.append((kind, process, deadline))
        running = still
        time.sleep(0.01)


def plan_faults(emulator: Emulator, rng: random.Random) -> None:
    """This round's explicit faults, on top of the 10 % random answers."""
    faults = emulator.faults
    faults.fail_after("batches.create", 500, count=rng.randint(1, 3))
    if rng.random() < 0.5:
        faults.hang_up("batches.create", carried_out=True)
    faults.drop_download(after_bytes=rng.randint(0, 2_000_000), count=rng.randint(1, 2))
    if rng.random() < 0.5:
        faults.hang_up(rng.choice(["batches.get", "batches.list", "files.download"]))
    if rng.random() < 0.5:
        faults.hang_up(rng.choice(["batches.delete", "files.delete"]), carried_out=True)
    if rng.random() < 0.5:
        faults.fail_next(rng.choice(["batches.delete", "files.delete"]), 403)
    # An upload finalized whose answer is lost: the file exists all the same.
    faults.hang_up("files.upload_data", carried_out=True)


def run_clean(runner: Runner, kind: str, *args: str) -> tuple[int, str]:
    process = runner.start(kind, *args)
    try:
        code = process.wait(timeout=FINAL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        code = -9
    runner.figures.exits[f"{kind}:{code}"] += 1
    return code, runner.last_log(kind)


# ------------------------------------------------------------------------ checking


def expected_file_results(batch: CreatedBatch, local_input: Path, out: Path) -> bytes:
    """What the emulator served for this batch: its results are a pure function of
    (seed, input bytes, model), written by the emulator's own generator."""
    write_results(
        local_input,
        out,
        file_name=batch.input_file or "",
        model=batch.model,
        policy=ErrorPolicy(SEED, 0.0, 13),
    )
    return out.read_bytes()


def input_of(batch: CreatedBatch) -> str | None:
    """``gembatch:batch/003.jsonl:1a2b3c4d5e`` -> ``batch/003.jsonl``."""
    name = batch.display_name or ""
    if not name.startswith("gembatch:"):
        return None
    return name.removeprefix("gembatch:").rsplit(":", 1)[0]


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def history(url: str, job_ids: Iterator[int] | list[int]) -> str:
    ids = sorted(set(job_ids))
    if not ids:
        return ""
    rows = query(
        url,
        "select job_id, at, kind, message from events where job_id in "
        f"({','.join(str(i) for i in ids)}) order by job_id, id",
    )
    return "\n".join(" | ".join(str(v)[:160] for v in row) for row in rows[-80:])


def holders(url: str, names: list[str]) -> str:
    """The jobs that name these remote resources, and their history."""
    quoted = ",".join("'" + name.replace("'", "''") + "'" for name in names) or "''"
    jobs = query(
        url,
        "select id, input_file, batch_name, uploaded_file_name, dest_file_name, state, "
        f"cleaned_at from jobs where batch_name in ({quoted}) or uploaded_file_name in "
        f"({quoted}) or dest_file_name in ({quoted})",
    )
    shown = "\n".join(str(job) for job in jobs) or "(no job names them)"
    return f"{shown}\n{history(url, [int(str(job[0])) for job in jobs])}"


@dataclass(frozen=True)
class Seen:
    """What the emulator and the final commands showed at the end."""

    created: list[CreatedBatch]
    left_batches: list[str]
    left_files: list[str]
    untracked_before_cleanup: list[str]
    outcome: dict[str, tuple[int, str]]


def chaos_happened(figures: Figures, faults: dict[int, int]) -> list[str]:
    problems = []
    if sum(figures.kills.values()) < ROUNDS:
        problems.append(f"too few kills for a chaos test: {dict(figures.kills)}")
    if not all(faults.get(code, 0) > 0 for code in FAULT_CODES):
        problems.append(f"not every fault code was answered: {faults}")
    return problems


def check_workspace(
    ws: Path, url: str, files: list[str], inline: list[str], seen: Seen, *, scratch: Path
) -> list[str]:
    """Every end-state invariant, each failure described with the jobs' history."""
    inputs = [*files, *inline]
    jobs = query(
        url,
        "select id, input_file, batch_name, state, result_path, downloaded_at, cleaned_at, "
        "submit_state from jobs order by id",
    )
    by_input: dict[str, list[tuple[object, ...]]] = {}
    for job in jobs:
        if job[2] is not None:
            by_input.setdefault(str(job[1]), []).append(job)

    def ids_of(names: list[str]) -> list[int]:
        return [int(str(j[0])) for j in jobs if j[1] in names]

    problems: list[str] = []
    # Each input's batch was created exactly once (carried-out creates, deleted included).
    creates = Counter(input_of(b) for b in seen.created)
    wrong = {name: creates[name] for name in inputs if creates[name] != 1}
    if wrong:
        problems.append(
            f"inputs not created exactly once: {wrong}\n{history(url, ids_of(list(wrong)))}"
        )
    if set(creates) - set(inputs):
        problems.append(f"batches of unknown inputs: {creates}")

    # One tracked, finished, downloaded and cleaned job per input.
    def finished(job: tuple[object, ...]) -> bool:
        return job[3] == "JOB_STATE_SUCCEEDED" and job[5] is not None and job[6] is not None

    bad = [
        name
        for name in inputs
        if len(by_input.get(name, [])) != 1 or not all(map(finished, by_input[name]))
    ]
    if bad:
        rows = "\n".join(str(j) for j in jobs if j[1] in bad)
        problems.append(f"inputs without exactly one finished, cleaned job: {bad}\n{rows}")

    # Results byte-identical to what the emulator served (inline: the same answers).
    scratch.mkdir(exist_ok=True)
    by_batch = {b.name: b for b in seen.created}
    for name in inputs:
        if name in bad:
            continue
        job = by_input[name][0]
        problem = check_result(ws, name, job, by_batch[str(job[2])], scratch)
        if problem:
            problems.append(f"{problem}\n{history(url, [int(str(job[0]))])}")
    # No second result file for any input (a twin batch would have written one).
    results = {str(p.relative_to(ws)) for p in ws.glob("*/results/*") if not p.name.startswith(".")}
    wanted = {str(Path(n).parent / "results" / Path(n).name) for n in inputs}
    if results != wanted:
        problems.append(f"result files: extra {results - wanted}, missing {wanted - results}")

    # Nothing stranded: after the clean run every remote resource was tracked, and after
    # the final cleanup nothing gembatch made is left.
    if seen.untracked_before_cleanup:
        problems.append(f"remote resources nobody tracks: {seen.untracked_before_cleanup}")
    if seen.left_batches:
        problems.append(
            f"batches left remotely: {seen.left_batches}\n{holders(url, seen.left_batches)}"
        )
    if seen.left_files:
        problems.append(f"files left remotely: {seen.left_files}\n{holders(url, seen.left_files)}")

    # No temp file anywhere: killed runs' leftovers are removed by the next one.
    temps = sorted(str(p.relative_to(ws)) for p in ws.rglob(".*.tmp"))
    if temps:
        problems.append(f"temp files left: {temps}")

    # job-info.jsonl parses completely and names every input.
    in_info = set()
    for number, line in enumerate((ws / "job-info.jsonl").read_text().splitlines(), 1):
        try:
            in_info.add(json.loads(line).get("input_file"))
        except (ValueError, AttributeError):
            problems.append(f"job-info.jsonl:{number} is not a whole JSON object: {line[:200]}")
    if not set(inputs) <= in_info:
        problems.append(f"inputs missing from job-info.jsonl: {set(inputs) - in_info}")
    return problems


def check_result(
    ws: Path, name: str, job: tuple[object, ...], batch: CreatedBatch, scratch: Path
) -> str | None:
    result = ws / str(job[4])
    if result != ws / Path(name).parent / "results" / Path(name).name:
        return f"{name}: results at {job[4]}, not at results/{Path(name).name}"
    if batch.inline_requests is None:
        expected = expected_file_results(batch, ws / name, scratch / Path(name).name)
        if result.read_bytes() != expected:
            return (
                f"{name}: results differ from what the emulator served "
                f"({result.stat().st_size} vs {len(expected)} bytes)"
            )
        return None
    if batch.inlined is None:
        return f"{name}: the emulator never served its answers"
    lines = [json.loads(line) for line in result.read_text().splitlines()]
    keys = [json.loads(line)["key"] for line in (ws / name).read_text().splitlines()]
    if len(keys) != len(batch.inlined):
        return f"{name}: the emulator served {len(batch.inlined)} answers for {len(keys)} requests"
    served = [(k, answer.get("response")) for k, answer in zip(keys, batch.inlined, strict=True)]
    if [(line.get("key"), line.get("response")) for line in lines] != served:
        return f"{name}: inline results differ from the answers the emulator served"
    return None


# ------------------------------------------------------------------------ the emulator's
# own faults that this test relies on, through the real SDK


def sdk_client(emulator: Emulator) -> genai.Client:
    return genai.Client(
        api_key="test-key",
        http_options=genai_types.HttpOptions(base_url=emulator.base_url, api_version="v1beta"),
    )


def test_a_create_carried_out_then_hung_up_made_its_batch(emulator: Emulator) -> None:
    client = sdk_client(emulator)
    emulator.faults.hang_up("batches.create", carried_out=True)
    src = [{"contents": [{"parts": [{"text": "hi"}]}], "metadata": {"key": "k"}}]
    with pytest.raises(Exception) as caught:  # the SDK's transport error, whatever its class
        client.batches.create(model=MODEL, src=src, config={"display_name": "lost-answer"})
    assert "disconnect" in str(caught.value).lower() or "closed" in str(caught.value).lower()
    made = emulator.created_batches()
    assert [(b.display_name, b.deleted) for b in made] == [("lost-answer", False)]
    assert emulator.count("batches.create", 0) == 1
    assert [r.fault for r in emulator.stats().recent] == ["hangup"]
    # The next call is answered again, on a new connection.
    assert client.batches.get(name=made[0].name).name == made[0].name
    client.close()


def test_a_hang_up_before_the_call_makes_nothing(emulator: Emulator) -> None:
    client = sdk_client(emulator)
    emulator.faults.hang_up("batches.create")
    src = [{"contents": [{"parts": [{"text": "hi"}]}], "metadata": {"key": "k"}}]
    with pytest.raises(Exception):  # noqa: B017 - the transport error's class is the SDK's
        client.batches.create(model=MODEL, src=src)
    assert emulator.created_batches() == []
    assert emulator.faults.pending()["hangups"] == []
    client.close()


def test_created_batches_keeps_deleted_ones_and_their_inline_answers(emulator: Emulator) -> None:
    client = sdk_client(emulator)
    src = [{"contents": [{"parts": [{"text": "hi"}]}], "metadata": {"key": "k"}}]
    name = client.batches.create(model=MODEL, src=src).name
    assert name is not None
    emulator.finish_all()
    served = client.batches.get(name=name).dest
    assert served is not None and served.inlined_responses
    client.batches.delete(name=name)
    (made,) = emulator.created_batches()
    assert made.name == name and made.deleted and made.inline_requests is not None
    assert made.inlined is not None and made.inlined[0]["metadata"] == {"key": "k"}
    assert emulator.batch_names() == []
    client.close()


def test_latency_jitter_is_seeded_and_bounded(emulator: Emulator) -> None:
    faults = emulator.faults
    faults.configure(latency_s=0.5, jitter_s=0.25, seed=7)
    first = [faults.latency_for("batches.get") for _ in range(50)]
    faults.configure(seed=7)
    assert [faults.latency_for("batches.get") for _ in range(50)] == first
    assert all(0.5 <= d <= 0.75 for d in first) and len(set(first)) > 1
    faults.clear()
    assert faults.latency_for("batches.get") == 0.0


# ------------------------------------------------------------------------ the test


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.slow
def test_chaos_life_cycle_finishes_everything_exactly_once(
    db_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = None if db_kind == "sqlite" else str(request.getfixturevalue("pg_schema_url"))
    ws, logs = tmp_path / "ws", tmp_path / "logs"
    ws.mkdir()
    logs.mkdir()
    files, inline = write_inputs(ws)
    url = db or f"sqlite:///{ws / 'gembatch.db'}"
    rng = random.Random(SEED)
    print(f"\nchaos[{db_kind}] seed={SEED}")
    with running_emulator(seed=SEED, pending_s=0.5, running_s=2.0, jitter_s=2.0) as emulator:
        runner = Runner(emulator, ws, logs, db)
        emulator.faults.configure(
            rate=0.10,
            codes=FAULT_CODES,
            latency_s=0.01,
            jitter_s=0.05,
            # Downloads wait before their first byte: a kill then finds a temp file open.
            latency_by_endpoint={"files.download": 0.25},
            seed=SEED,
        )
        for round_ in range(1, ROUNDS + 1):
            # New inputs arrive every round, so every round has work for its kills to hit.
            share = round_ / ROUNDS
            some_files = files[: round(len(files) * share)]
            chaos_round(runner, rng, some_files, inline[: round(len(inline) * share)])
        chaos = runner.figures.line(emulator, db_kind)
        print(chaos)

        emulator.faults.clear()
        outcome: dict[str, tuple[int, str]] = {}
        for kind, args in runner.submit(files, inline):
            outcome[kind] = run_clean(runner, f"final-{kind}", *args)
        pollers = [runner.start("final-poll", *runner.poll_args()) for _ in range(2)]
        codes = []
        for process in pollers:
            try:
                codes.append(process.wait(timeout=FINAL_TIMEOUT_S))
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                codes.append(process.wait())
            runner.figures.exits[f"final-poll:{codes[-1]}"] += 1
        outcome["poll"] = (max(codes, key=abs), runner.last_log("final-poll"))
        tracked = {
            str(name)
            for row in query(url, "select batch_name, uploaded_file_name from jobs")
            for name in row
            if name
        }
        remote = set(emulator.batch_names()) | {
            n for n in emulator.file_names() if not n.startswith("files/batch-")
        }
        untracked_before_cleanup = sorted(remote - tracked)
        outcome["cleanup"] = run_clean(runner, "final-cleanup", "cleanup", "--all", "-y")
        figures = runner.figures.line(emulator, db_kind)
        print(figures)
        created = emulator.created_batches()
        left_batches = emulator.batch_names()
        left_files = emulator.file_names()
        faults = answered_faults(emulator)

    seen = Seen(created, left_batches, left_files, untracked_before_cleanup, outcome)
    problems = [
        *chaos_happened(runner.figures, faults),
        *[f"final {kind} exited {code}:\n{log}" for kind, (code, log) in outcome.items() if code],
        *check_workspace(ws, url, files, inline, seen, scratch=tmp_path / "expected"),
    ]
    if db_kind == "sqlite" and query(url, "PRAGMA integrity_check") != [("ok",)]:
        problems.append("PRAGMA integrity_check is not ok")
    assert not problems, "\n\n".join(problems) + f"\n{figures}\nlogs: {logs}"
