"""Build real remote batches on the emulator, and the job-info lines that track them.

Until ``gembatch submit`` exists in a test's path, this is how a test gets a
workspace that looks like one an earlier tool left behind: inputs under
``batch/``, batches created through the real SDK, and a v0.3 job-info.jsonl.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from google import genai
from google.genai import types as genai_types
from sqlalchemy import select

from gembatch.common.locations import sqlite_url
from gembatch.emulator import Emulator
from gembatch.store.database import open_store
from gembatch.store.models import Event, Job

MODEL = "models/gemini-2.5-flash"


@dataclass
class Made:
    input_file: str  # relative to the workspace
    batch_name: str
    uploaded_file_name: str | None
    count: int


def client_for(emulator: Emulator) -> genai.Client:
    return genai.Client(
        api_key="test-key",
        http_options=genai_types.HttpOptions(base_url=emulator.base_url, api_version="v1beta"),
    )


def request_lines(index: int, count: int) -> list[str]:
    return [
        json.dumps(
            {
                "key": f"req-{index}-{n}",
                "request": {"contents": [{"parts": [{"text": f"question {index}.{n}"}]}]},
            }
        )
        for n in range(count)
    ]


def make_jobs(
    emulator: Emulator,
    workspace: Path,
    n: int,
    *,
    requests: int = 3,
    inline: bool = False,
    start: int = 0,
    job_info: str = "job-info.jsonl",
) -> list[Made]:
    client = client_for(emulator)
    made: list[Made] = []
    try:
        for index in range(start, start + n):
            relative = f"batch/{index:03d}.jsonl"
            path = workspace / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = request_lines(index, requests)
            path.write_text("\n".join(lines) + "\n")
            if inline:
                src = [
                    {
                        "contents": json.loads(line)["request"]["contents"],
                        "metadata": {"key": json.loads(line)["key"]},
                    }
                    for line in lines
                ]
                job = client.batches.create(model=MODEL, src=src, config={"display_name": relative})
                uploaded = None
            else:
                uploaded = client.files.upload(file=str(path), config={"mime_type": "jsonl"}).name
                job = client.batches.create(
                    model=MODEL, src=uploaded, config={"display_name": relative}
                )
            assert job.name
            made.append(Made(relative, job.name, uploaded, requests))
    finally:
        client.close()
    with open(workspace / job_info, "a", encoding="utf-8") as handle:
        for item in made:
            handle.write(json_line(item) + "\n")
    return made


def json_line(item: Made) -> str:
    line: dict[str, object] = {"input_file": item.input_file, "count": item.count}
    if item.uploaded_file_name:
        line["uploaded_file_name"] = item.uploaded_file_name
    line["batch"] = {
        "name": item.batch_name,
        "display_name": item.input_file,
        "model": MODEL,
        "state": "JOB_STATE_PENDING",
    }
    return json.dumps(line)


def poll_process(
    emulator: Emulator, workdir: Path, *args: str, interval: str = "0.2", **popen: object
) -> subprocess.Popen:  # type: ignore[type-arg]
    """The real `gembatch poll` in its own process, against the emulator."""
    env = {**os.environ, "GEMINI_API_KEY": "test-key"}
    env.pop("GOOGLE_API_KEY", None)
    command = [sys.executable, "-m", "gembatch", "poll", "--base-url", emulator.base_url]
    return subprocess.Popen(
        [*command, "--interval", interval, *args], cwd=workdir, env=env, **popen
    )  # type: ignore[call-overload]


def job_rows(workspace: Path) -> list[Job]:
    """The workspace database's jobs, in id order, read the way a user's SQL would."""
    store = open_store(sqlite_url(workspace / "gembatch.db"))
    try:
        with store.reading() as session:
            return list(session.scalars(select(Job).order_by(Job.id)))
    finally:
        store.dispose()


def event_rows(workspace: Path, kind: str) -> list[Event]:
    store = open_store(sqlite_url(workspace / "gembatch.db"))
    try:
        with store.reading() as session:
            return list(session.scalars(select(Event).where(Event.kind == kind)))
    finally:
        store.dispose()
