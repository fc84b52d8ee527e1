"""``gembatch emulator`` as a user runs it: a subprocess that prints its URL and serves."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from google import genai
from google.genai import types as genai_types

from gembatch.emulator import Emulator


@contextmanager
def cli_emulator(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gembatch", "emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip() if process.stdout else ""
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_emulator/stats") as answer:
        return json.loads(answer.read())


def test_prints_url_serves_the_sdk_and_stops_on_sigterm(tmp_path) -> None:
    args = (
        "--pending-s",
        "0",
        "--running-s",
        "0",
        "--jitter-s",
        "0",
        "--rule",
        "FAILED:name=bad-*",
        "-v",
    )
    args += ("--data-dir", str(tmp_path), "--api-key", "sekret-key")
    with cli_emulator(*args) as (process, url):
        assert url.startswith("http://127.0.0.1:")
        client = genai.Client(
            api_key="sekret-key",
            http_options=genai_types.HttpOptions(base_url=url, api_version="v1beta"),
        )
        job = client.batches.create(
            model="gemini-2.5-flash",
            src=[{"contents": "hi", "metadata": {"key": "a"}}],
            config={"display_name": "bad-one"},
        )
        assert client.batches.get(name=job.name).state == genai_types.JobState.JOB_STATE_FAILED
        assert stats(url)["counts"] == {"batches.create": {"200": 1}, "batches.get": {"200": 1}}
        assert any(tmp_path.iterdir())
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0
    assert "GOOGLE_GEMINI_BASE_URL=" in err
    assert "POST /v1beta/models/gemini-2.5-flash:batchGenerateContent -> 200" in err
    assert "sekret-key" not in err
    assert not any(tmp_path.iterdir())  # its temporary folder is gone


def test_ctrl_c_exits_130() -> None:
    with cli_emulator() as (process, url):
        assert url
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
        assert process.returncode == 130


def test_bad_rule_is_a_one_line_usage_error(run_cli) -> None:
    result = run_cli("emulator", "--rule", "EXPLODED:name=x")
    assert result.exit_code == 2
    assert result.output.strip().startswith("gembatch: error:") or "EXPLODED" in result.output


def test_port_in_use_is_reported(run_cli) -> None:
    with Emulator() as emu:
        result = run_cli("emulator", "--port", str(emu.port))
    assert result.exit_code == 2
    assert "cannot listen" in result.output
