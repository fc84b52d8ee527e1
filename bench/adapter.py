"""Why the adapter uses the sync SDK client in threads rather than ``client.aio``.

Run: ``python bench/adapter.py``. Against the emulator (its own process) at
50 ms latency, N ``batches.get`` calls with 32 in flight: the sync client
shared by a thread pool, side by side with the async client under an asyncio
semaphore. Both reach the same concurrency; the figure that matters is whether
threads cost anything measurable. They don't, and the sync client keeps the
SQLAlchemy sessions, the SQLite writes and Ctrl+C handling plain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from google import genai
from google.genai import types as genai_types

KEY = "bench-key"


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gembatch", "emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def control(url: str, path: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(
        f"{url}/_emulator/{path}", data=json.dumps(body).encode(), method="POST"
    )
    urllib.request.urlopen(request).read()


def client(url: str) -> genai.Client:
    return genai.Client(
        api_key=KEY, http_options=genai_types.HttpOptions(base_url=url, api_version="v1beta")
    )


def make_batches(url: str, n: int) -> list[str]:
    sdk = client(url)
    names = []
    for _ in range(n):
        job = sdk.batches.create(
            model="gemini-2.5-flash",
            src=[{"contents": [{"parts": [{"text": "q"}], "role": "user"}]}],
        )
        names.append(job.name)
    sdk.close()
    return names


def sync_threads(url: str, names: list[str], concurrency: int) -> float:
    sdk = client(url)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda name: sdk.batches.get(name=name), names))
    elapsed = time.perf_counter() - started
    sdk.close()
    return elapsed


def async_gather(url: str, names: list[str], concurrency: int) -> float:
    async def run() -> float:
        sdk = client(url)
        gate = asyncio.Semaphore(concurrency)

        async def one(name: str) -> None:
            async with gate:
                await sdk.aio.batches.get(name=name)

        started = time.perf_counter()
        await asyncio.gather(*(one(name) for name in names))
        elapsed = time.perf_counter() - started
        await sdk.aio.aclose()
        return elapsed

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    process, url = start_emulator()
    try:
        names = make_batches(url, args.n)
        control(url, "faults", {"latency_s": args.latency})
        ideal = args.n * args.latency / args.concurrency
        threads = sync_threads(url, names, args.concurrency)
        aio = async_gather(url, names, args.concurrency)
        print(f"{args.n} batches.get, {args.concurrency} in flight, {args.latency * 1000:.0f} ms")
        print(f"ideal (latency only)   {ideal:6.2f} s")
        print(f"sync client, threads   {threads:6.2f} s  ({args.n / threads:6.0f} calls/s)")
        print(f"client.aio, asyncio    {aio:6.2f} s  ({args.n / aio:6.0f} calls/s)")
        print(f"ratio threads / aio    {threads / aio:6.2f}")
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
