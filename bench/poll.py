"""How fast `gembatch poll` brings finished jobs home, and how little memory it needs.

Run: ``python bench/poll.py`` (``--sizes 50,500`` and ``--skip-memory`` for a short run).

(a) For N already-succeeded jobs (job-info still says RUNNING, as a stale file
    would), wall time and API calls until every result is on disk and every
    remote batch and input file is deleted, at 50 ms of emulator latency per
    request. Side by side, in this same process: a sequential baseline that does
    what the earlier one-job-at-a-time tool did (get the batch, get the result
    file, download it, delete the batch, delete the input: five calls per job).
    Above ``--baseline-max`` jobs the baseline runs on a sample of that many
    jobs and is scaled linearly (a sequential loop is linear by construction);
    the output says so.
    With ``--end-to-end``, both sides run as a user runs them instead: gembatch
    as two processes, ``gembatch import`` then ``gembatch poll``, the baseline
    as a process of its own; each time includes its start-up.
(b) Peak RSS of a `gembatch poll` process downloading a 1 GiB result file,
    next to a plain SDK download into memory (what tools without streaming do).

The emulator runs in its own process so it does not share this one's GIL.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from google import genai
from google.genai import types as genai_types

from gembatch.common.locations import resolve
from gembatch.engine.poller import Poller, PollOptions
from gembatch.jobinfo.importer import import_jobinfo
from gembatch.remote.client import Gemini
from gembatch.store.database import open_store

KEY = "bench-key"
MODEL = "models/gemini-2.5-flash"


class EmulatorProcess:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gembatch", "emulator", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()

    def control(self, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}/_emulator/{path}", data=data, method="POST" if data else "GET"
        )
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read() or b"{}")

    def calls(self) -> int:
        return int(self.control("stats")["total"])  # type: ignore[arg-type]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def client(url: str) -> genai.Client:
    return genai.Client(
        api_key=KEY, http_options=genai_types.HttpOptions(base_url=url, api_version="v1beta")
    )


def make_batches(emu: EmulatorProcess, workspace: Path, n: int, prefix: str) -> list[dict]:
    sdk = client(emu.url)
    made = []
    for index in range(n):
        relative = f"batch/{prefix}-{index:05d}.jsonl"
        path = workspace / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "".join(
                json.dumps({"key": f"r{k}", "request": {"contents": [{"parts": [{"text": "q"}]}]}})
                + "\n"
                for k in range(5)
            )
        )
        uploaded = sdk.files.upload(file=str(path), config={"mime_type": "jsonl"}).name
        job = sdk.batches.create(model=MODEL, src=uploaded, config={"display_name": relative})
        made.append({"input_file": relative, "uploaded": uploaded, "name": job.name})
    sdk.close()
    return made


def write_job_info(path: Path, made: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for item in made:
            line = {
                "input_file": item["input_file"],
                "count": 5,
                "uploaded_file_name": item["uploaded"],
                "batch": {"name": item["name"], "model": MODEL, "state": "JOB_STATE_RUNNING"},
            }
            handle.write(json.dumps(line) + "\n")


def run_gembatch(emu: EmulatorProcess, workspace: Path, made: list[dict], concurrency: int):
    info = workspace / "job-info.jsonl"
    write_job_info(info, made)
    locations = resolve(info, None)
    store = open_store(locations.db_url)
    import_jobinfo(store, info, base_dir=locations.base_dir)
    gemini = Gemini(KEY, base_url=emu.url)
    poller = Poller(store, gemini, locations, PollOptions(concurrency=concurrency))
    before = emu.calls()
    started = time.perf_counter()
    summary = poller.run(interval=0.0)
    elapsed = time.perf_counter() - started
    calls = emu.calls() - before
    gemini.close()
    store.dispose()
    assert summary.downloads == len(made) and summary.cleanups == len(made), summary
    return elapsed, calls


def run_baseline(emu: EmulatorProcess, workspace: Path, made: list[dict]):
    sdk = client(emu.url)
    out = workspace / "baseline-results"
    out.mkdir(exist_ok=True)
    before = emu.calls()
    started = time.perf_counter()
    for item in made:
        job = sdk.batches.get(name=item["name"])
        result = sdk.files.get(name=job.dest.file_name)
        data = sdk.files.download(file=result.name)
        (out / Path(item["input_file"]).name).write_bytes(data)
        sdk.batches.delete(name=item["name"])
        sdk.files.delete(name=item["uploaded"])
    elapsed = time.perf_counter() - started
    calls = emu.calls() - before
    sdk.close()
    return elapsed, calls


# The earlier one-job-at-a-time tool, as its own process: names and uploads in argv[3].
BASELINE = r"""
import json, sys
from pathlib import Path
from google import genai
from google.genai import types
url, key, out = sys.argv[1], sys.argv[2], Path(sys.argv[4])
made = json.loads(Path(sys.argv[3]).read_text())
sdk = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=url, api_version="v1beta"))
out.mkdir(exist_ok=True)
for item in made:
    job = sdk.batches.get(name=item["name"])
    result = sdk.files.get(name=job.dest.file_name)
    data = sdk.files.download(file=result.name)
    (out / Path(item["input_file"]).name).write_bytes(data)
    sdk.batches.delete(name=item["name"])
    sdk.files.delete(name=item["uploaded"])
"""


def run_end_to_end(emu: EmulatorProcess, workspace: Path, made: list[dict]) -> tuple[float, int]:
    """``gembatch import`` then ``gembatch poll`` until done, each its own process."""
    info = workspace / "job-info.jsonl"
    write_job_info(info, made)
    env = {**os.environ, "GEMINI_API_KEY": KEY}
    before = emu.calls()
    started = time.perf_counter()
    for command in (["import", str(info)], ["poll", "--base-url", emu.url, "--interval", "0"]):
        subprocess.run(
            [sys.executable, "-m", "gembatch", *command],
            cwd=workspace,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    elapsed = time.perf_counter() - started
    results = list((workspace / "batch" / "results").glob("g-*.jsonl"))
    assert len(results) == len(made), len(results)
    return elapsed, emu.calls() - before


def run_baseline_process(emu: EmulatorProcess, workspace: Path, made: list[dict]):
    listing = workspace / "baseline.json"
    listing.write_text(json.dumps(made))
    before = emu.calls()
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", BASELINE, emu.url, KEY, str(listing), str(workspace / "b-out")],
        check=True,
    )
    return time.perf_counter() - started, emu.calls() - before


def bench_throughput(
    sizes: list[int],
    latency: float,
    concurrency: int,
    baseline_max: int,
    end_to_end: bool = False,
):
    how = "whole processes, start-up included" if end_to_end else "in this process"
    print(f"(a) already-succeeded jobs, {latency * 1000:.0f} ms latency per API request, {how}")
    header = (
        f"{'N':>6} {'gembatch s':>11} {'calls/job':>9} {'baseline s':>11} "
        f"{'calls/job':>9} {'speed-up':>9}"
    )
    print(header)
    for n in sizes:
        emu = EmulatorProcess("--pending-s", "0", "--running-s", "0", "--jitter-s", "0")
        try:
            with tempfile.TemporaryDirectory(prefix="gembatch-bench-") as tmp:
                workspace = Path(tmp)
                sample = min(n, baseline_max)
                ours = make_batches(emu, workspace, n, "g")
                theirs = make_batches(emu, workspace, sample, "b")
                emu.control("finish-all", {})
                emu.control("faults", {"latency_s": latency})
                if end_to_end:
                    g_time, g_calls = run_end_to_end(emu, workspace, ours)
                    b_time, b_calls = run_baseline_process(emu, workspace, theirs)
                else:
                    g_time, g_calls = run_gembatch(emu, workspace, ours, concurrency)
                    b_time, b_calls = run_baseline(emu, workspace, theirs)
                scale = n / sample
                b_total = b_time * scale
                note = "" if sample == n else f"  (baseline: {sample} jobs, scaled x{scale:g})"
                print(
                    f"{n:>6} {g_time:>11.2f} {g_calls / n:>9.2f} {b_total:>11.2f} "
                    f"{b_calls / sample:>9.2f} {b_total / g_time:>8.1f}x{note}",
                    flush=True,
                )
        finally:
            emu.stop()


def peak_rss_mb(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, process.returncode


def bench_memory(size: int) -> None:
    print(f"\n(b) peak RSS while downloading one {size / 2**30:.2f} GiB result file")
    emu = EmulatorProcess("--pending-s", "0", "--running-s", "0")
    try:
        with tempfile.TemporaryDirectory(prefix="gembatch-bench-mem-") as tmp:
            workspace = Path(tmp)
            made = emu.control("large-batch", {"size_bytes": size, "display_name": "big"})
            line = {
                "input_file": "batch/big.jsonl",
                "batch": {"name": made["name"], "state": "JOB_STATE_RUNNING"},
            }
            (workspace / "job-info.jsonl").write_text(json.dumps(line) + "\n")
            env = {**os.environ, "GEMINI_API_KEY": KEY}
            started = time.perf_counter()
            ours, code = peak_rss_mb(
                [
                    sys.executable,
                    "-m",
                    "gembatch",
                    "poll",
                    "--once",
                    "--keep-remote",
                    "--base-url",
                    emu.url,
                ],
                workspace,
                env,
            )
            took = time.perf_counter() - started
            result = workspace / "batch" / "results" / "big.jsonl"
            assert code == 0 and result.stat().st_size == size, (code, result)
            script = (
                "import sys; from google import genai; from google.genai import types;"
                f"c = genai.Client(api_key='{KEY}', http_options=types.HttpOptions("
                f"base_url='{emu.url}', api_version='v1beta'));"
                f"d = c.files.download(file='{made['file']}');"
                "open('in-memory.jsonl', 'wb').write(d)"
            )
            theirs, code = peak_rss_mb([sys.executable, "-c", script], workspace, env)
            assert code == 0
            print(f"gembatch poll (streamed, fsync'd, renamed): {ours:8.0f} MB  ({took:.1f} s)")
            print(f"SDK download into memory (baseline):        {theirs:8.0f} MB")
            print(f"ratio baseline / gembatch:                   {theirs / ours:8.1f}x")
    finally:
        emu.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,500,2000")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=PollOptions().concurrency)
    parser.add_argument("--baseline-max", type=int, default=500)
    parser.add_argument("--memory-bytes", type=int, default=2**30)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="gembatch as `import` and `poll` processes, the baseline as a process",
    )
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    bench_throughput(
        [int(s) for s in args.sizes.split(",")],
        args.latency,
        args.concurrency,
        args.baseline_max,
        args.end_to_end,
    )
    if not args.skip_memory:
        bench_memory(args.memory_bytes)


if __name__ == "__main__":
    main()
