"""Benchmark the emulator: polling requests per second and a 1 GB streamed download.

Runs ``gembatch emulator`` in its own process (so its memory is measured alone), then:

1. polling: client processes, each with threads, call the real SDK's ``batches.get`` for a
   few seconds; also raw HTTP/1.1 keep-alive GETs (``http.client``) to show the server's own
   ceiling without the SDK's client-side cost. Both share this machine's CPUs with the server.
2. download: the emulator writes a result file of ``--size-mb`` (control path
   ``/_emulator/large-batch``); a fresh client process streams it with
   ``files.download(destination=...)``. Prints throughput and the peak RSS of the client and
   of the emulator (``VmHWM``), before and after.

Usage: ``python bench/emulator.py [--seconds 5] [--processes 2] [--threads 4] [--size-mb 1024]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MODEL = "gemini-2.5-flash"


def start_emulator(data_dir: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gembatch", "emulator", "--port", "0", "--data-dir", data_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def control(url: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{url}/_emulator/{path}", data=data)) as r:
        return json.loads(r.read())


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def make_client(url: str) -> Any:  # the SDK is imported lazily, in each worker
    from google import genai
    from google.genai import types

    return genai.Client(
        api_key="bench", http_options=types.HttpOptions(base_url=url, api_version="v1beta")
    )


def sdk_poller(
    url: str, names: list[str], threads: int, window: tuple[float, float], out: mp.Queue
) -> None:
    client = make_client(url)  # one client per process: the SDK shares its connection pool
    counts = [0] * threads
    start_at, seconds = window
    time.sleep(max(0.0, start_at - time.time()))
    stop = time.perf_counter() + seconds

    def loop(slot: int) -> None:
        i = slot
        while time.perf_counter() < stop:
            client.batches.get(name=names[i % len(names)])
            counts[slot] += 1
            i += threads

    workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put(sum(counts))


def raw_poller(
    url: str, names: list[str], threads: int, window: tuple[float, float], out: mp.Queue
) -> None:
    parts = urlsplit(url)
    counts = [0] * threads
    start_at, seconds = window
    time.sleep(max(0.0, start_at - time.time()))
    stop = time.perf_counter() + seconds

    def loop(slot: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port)
        headers = {"x-goog-api-key": "bench"}
        i = slot
        while time.perf_counter() < stop:
            conn.request("GET", f"/v1beta/{names[i % len(names)]}", headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            counts[slot] += 1
            i += threads
        conn.close()

    workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put(sum(counts))


def run_pollers(
    target, url: str, names: list[str], processes: int, threads: int, seconds: float
) -> float:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    # All workers poll over the same window, which opens once every process has imported.
    window = (time.time() + 3.0, seconds)
    procs = [
        ctx.Process(target=target, args=(url, names, threads, window, out))
        for _ in range(processes)
    ]
    before = control(url, "stats")["counts"].get("batches.get", {}).get("200", 0)
    for proc in procs:
        proc.start()
    total = sum(out.get() for _ in procs)
    for proc in procs:
        proc.join()
    served = control(url, "stats")["counts"]["batches.get"]["200"] - int(before)
    assert served == total, (served, total)  # the server counted every call the clients made
    return total / seconds


def raw_download(url: str, file_name: str) -> float:
    """Seconds to stream the file over one keep-alive connection into nowhere (1 MiB reads)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    started = time.perf_counter()
    conn.request(
        "GET", f"/v1beta/{file_name}:download?alt=media", headers={"x-goog-api-key": "bench"}
    )
    response = conn.getresponse()
    while response.read(1 << 20):
        pass
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def download_child(url: str, file_name: str, destination: str, out: mp.Queue) -> None:
    client = make_client(url)
    client.files.list()  # warm up: imports and the connection, so the baseline is fair
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    client.files.download(file=file_name, destination=destination)
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.put((elapsed, base_kib, peak_kib))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--batches", type=int, default=10_000)
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gembatch-bench-") as tmp:
        process, url = start_emulator(tmp)
        try:
            print(f"emulator {url} (pid {process.pid}), {os.cpu_count()} CPUs shared with clients")
            client = make_client(url)
            src = [{"contents": "poll me", "metadata": {"key": "k"}}]
            started = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                jobs = pool.map(
                    lambda _: client.batches.create(model=MODEL, src=src), range(args.batches)
                )
                names = [job.name for job in jobs]
            elapsed = time.perf_counter() - started
            print(
                f"created {len(names)} batches with the SDK "
                f"({len(names) / elapsed:.0f} creates/s); polling picks among all of them"
            )

            for label, target, procs, threads in (
                ("SDK batches.get, 1 process x 1 thread", sdk_poller, 1, 1),
                (
                    f"SDK batches.get, {args.processes} processes x {args.threads} threads",
                    sdk_poller,
                    args.processes,
                    args.threads,
                ),
                (
                    f"raw keep-alive GET, {args.processes} processes x {args.threads} threads",
                    raw_poller,
                    args.processes,
                    args.threads,
                ),
            ):
                rate = run_pollers(target, url, names, procs, threads, args.seconds)
                print(f"polling  {label:<52} {rate:8.0f} requests/s")

            size = args.size_mb * 1024 * 1024
            started = time.perf_counter()
            made = control(url, "large-batch", {"size_bytes": size})
            print(
                f"download result file of {size / 2**20:.0f} MiB written by the emulator in "
                f"{time.perf_counter() - started:.1f} s"
            )
            server_before = vm_kib(process.pid, "VmHWM")
            raw_s = raw_download(url, made["file"])
            print(
                f"download raw http.client, 1 MiB reads      {size / 2**20 / raw_s:8.0f} MiB/s "
                f"({raw_s:.2f} s)"
            )
            ctx = mp.get_context("spawn")
            out: mp.Queue = ctx.Queue()
            destination = str(Path(tmp) / "downloaded.jsonl")
            child = ctx.Process(target=download_child, args=(url, made["file"], destination, out))
            child.start()
            elapsed, base_kib, peak_kib = out.get()
            child.join()
            got = Path(destination).stat().st_size
            assert got == size, (got, size)
            server_after = vm_kib(process.pid, "VmHWM")
            print(
                f"download files.download(destination=) {size / 2**20 / elapsed:8.0f} MiB/s "
                f"({elapsed:.2f} s)"
            )
            print(
                f"memory   client peak RSS {base_kib / 1024:.0f} MiB before -> "
                f"{peak_kib / 1024:.0f} MiB after; emulator peak RSS "
                f"{server_before / 1024:.0f} MiB before -> {server_after / 1024:.0f} MiB after"
            )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
