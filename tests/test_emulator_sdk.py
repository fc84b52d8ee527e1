"""The real google-genai SDK, sync and async, against the emulator over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from google import genai
from google.genai import errors
from google.genai import types as genai_types

from gembatch.emulator import Emulator, running_emulator

REAL_GEMINI = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real-gemini"

MODEL = "gemini-2.5-flash"
BASIC = REAL_GEMINI / "basic.jsonl"
STRUCTURED = REAL_GEMINI / "structured-output.jsonl"


def client_for(emu: Emulator, **options: object) -> genai.Client:
    return genai.Client(
        api_key="test-key",
        http_options=genai_types.HttpOptions(
            base_url=emu.base_url, api_version="v1beta", **options
        ),
    )


def wait_done(client: genai.Client, name: str) -> genai_types.BatchJob:
    # Bounded by a number of polls, not by time: the schedule is a fraction of a second.
    for _ in range(400):
        job = client.batches.get(name=name)
        if job.done:
            return job
        time.sleep(0.02)
    raise AssertionError(f"{name} never finished")


def lines(data: bytes) -> list[dict]:
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.decode().splitlines()]


def test_sync_lifecycle_upload_create_get_list_download_cancel_delete(
    emulator: Emulator, genai_client: genai.Client, tmp_path: Path
) -> None:
    client = genai_client
    uploaded = client.files.upload(
        file=str(BASIC), config={"mime_type": "jsonl", "display_name": "basic"}
    )
    assert uploaded.name and uploaded.name.startswith("files/")
    assert uploaded.size_bytes == BASIC.stat().st_size
    assert uploaded.state == genai_types.FileState.ACTIVE
    assert client.files.get(name=uploaded.name).display_name == "basic"

    job = client.batches.create(model=MODEL, src=uploaded.name, config={"display_name": "b1"})
    assert job.state == genai_types.JobState.JOB_STATE_PENDING
    assert job.display_name == "b1" and job.model == f"models/{MODEL}"
    others = [
        client.batches.create(model=MODEL, src=uploaded.name, config={"display_name": f"o{i}"})
        for i in range(4)
    ]

    names = [j.name for j in client.batches.list(config={"page_size": 2})]
    assert names == [o.name for o in reversed(others)] + [job.name]  # newest first, 3 pages
    assert emulator.count("batches.list", 200) == 3

    done = wait_done(client, job.name)
    assert done.state == genai_types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest and done.dest.file_name == f"files/batch-{job.name.split('/')[1]}"
    assert done.end_time and done.create_time and done.end_time >= done.create_time

    data = client.files.download(file=done.dest.file_name)
    result = lines(data)
    inputs = [json.loads(line) for line in BASIC.read_text().splitlines()]
    assert [r["key"] for r in result] == [i["key"] for i in inputs]
    for line in result:
        usage = line["response"]["usageMetadata"]
        assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
        assert line["response"]["candidates"][0]["content"]["role"] == "model"

    target = tmp_path / "out.jsonl"
    assert client.files.download(file=done.dest.file_name, destination=str(target)) is None
    assert target.read_bytes() == data == emulator.result_path(job.name).read_bytes()

    # Cancel a batch that is still running, then delete batches and files.
    victim = others[0].name
    emulator.set_state(victim, "RUNNING")
    client.batches.cancel(name=victim)
    assert client.batches.get(name=victim).state == genai_types.JobState.JOB_STATE_CANCELLED
    client.batches.delete(name=victim)
    with pytest.raises(errors.ClientError) as missing:
        client.batches.get(name=victim)
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"

    client.files.delete(name=done.dest.file_name)
    client.files.delete(name=uploaded.name)
    with pytest.raises(errors.ClientError) as gone:
        client.files.get(name=uploaded.name)
    assert gone.value.code == 404

    counts = emulator.stats().by_endpoint()
    assert counts["files.upload"] == {200: 1}
    assert counts["files.upload_data"] == {200: 1}
    assert counts["batches.create"] == {200: 5}
    assert counts["files.download"] == {200: 2}
    assert counts["batches.cancel"] == {200: 1}
    assert counts["batches.delete"] == {200: 1}
    assert counts["batches.get"][404] == 1
    assert counts["files.delete"] == {200: 2}
    assert counts["files.get"] == {200: 1, 404: 1}


def test_files_list_pages(emulator: Emulator, genai_client: genai.Client) -> None:
    made = [
        genai_client.files.upload(file=str(BASIC), config={"mime_type": "jsonl"}).name
        for _ in range(5)
    ]
    emulator.reset_stats()
    listed = [f.name for f in genai_client.files.list(config={"page_size": 2})]
    assert listed == list(reversed(made))
    assert emulator.count("files.list") == 3
    assert emulator.count() == 3


def test_inline_batch_returns_inlined_responses(
    emulator: Emulator, genai_client: genai.Client
) -> None:
    src = [
        {
            "contents": [{"parts": [{"text": f"inline {i}"}], "role": "user"}],
            "metadata": {"key": f"inline-{i}"},
            "config": {"temperature": 0.1, "system_instruction": "be brief"},
        }
        for i in range(3)
    ]
    job = genai_client.batches.create(model=MODEL, src=src, config={"display_name": "inline"})
    emulator.finish_all()
    done = genai_client.batches.get(name=job.name)
    assert done.state == genai_types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None and done.dest.file_name is None
    responses = done.dest.inlined_responses or []
    assert [r.metadata for r in responses] == [{"key": f"inline-{i}"} for i in range(3)]
    assert all(r.response and r.response.text for r in responses)
    assert responses[0].response.usage_metadata.prompt_token_count > 0
    assert "inputConfig" not in emulator.operation(job.name)["metadata"]


def test_async_client_full_flow(emulator: Emulator, tmp_path: Path) -> None:
    async def scenario() -> tuple[bytes, list[str], genai_types.BatchJob]:
        client = client_for(emulator)
        async with client.aio as aio:
            uploaded = await aio.files.upload(file=str(STRUCTURED), config={"mime_type": "jsonl"})
            first = await aio.batches.create(model=MODEL, src=uploaded.name)
            second = await aio.batches.create(model=MODEL, src=uploaded.name)
            third = await aio.batches.create(
                model=MODEL, src=[{"contents": "hello", "metadata": {"key": "k"}}]
            )
            pager = await aio.batches.list(config={"page_size": 1})
            names = [job.name async for job in pager]
            emulator.set_state(second.name, "RUNNING")
            await aio.batches.cancel(name=second.name)
            emulator.finish_all()
            done = await aio.batches.get(name=first.name)
            data = await aio.files.download(file=done.dest.file_name)
            await aio.files.download(file=done.dest.file_name, destination=str(tmp_path / "a"))
            inline = await aio.batches.get(name=third.name)
            assert inline.dest.inlined_responses[0].metadata == {"key": "k"}
            cancelled = await aio.batches.get(name=second.name)
            assert cancelled.state == genai_types.JobState.JOB_STATE_CANCELLED
            await aio.batches.delete(name=first.name)
            await aio.files.delete(name=uploaded.name)
            return data, names, done

    data, names, done = asyncio.run(scenario())
    assert done.state == genai_types.JobState.JOB_STATE_SUCCEEDED
    assert len(names) == 3 and emulator.count("batches.list", 200) == 3
    assert (tmp_path / "a").read_bytes() == data
    assert len(lines(data)) == 5
    for line in lines(data):  # structured output: JSON answers that fit the schema
        answer = json.loads(line["response"]["candidates"][0]["content"]["parts"][0]["text"])
        assert isinstance(answer, dict) and answer
    counts = emulator.stats().by_endpoint()
    assert counts["batches.create"] == {200: 3}
    assert counts["files.download"] == {200: 2}
    assert counts["batches.delete"] == {200: 1} and counts["files.delete"] == {200: 1}


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_other_api_versions(emulator: Emulator, version: str) -> None:
    client = genai.Client(
        api_key="k",
        http_options=genai_types.HttpOptions(base_url=emulator.base_url, api_version=version),
    )
    uploaded = client.files.upload(file=str(BASIC), config={"mime_type": "jsonl"})
    job = client.batches.create(model=MODEL, src=uploaded.name)
    emulator.finish_all()
    assert client.files.download(file=client.batches.get(name=job.name).dest.file_name)


def test_unmodified_snippet_through_environment_only(emulator: Emulator, tmp_path: Path) -> None:
    snippet = textwrap.dedent(
        f"""
        import time
        from google import genai

        client = genai.Client()
        uploaded = client.files.upload(file={str(BASIC)!r}, config={{"mime_type": "jsonl"}})
        job = client.batches.create(model="gemini-2.5-flash", src=uploaded.name)
        while not job.done:
            time.sleep(0.05)
            job = client.batches.get(name=job.name)
        print(job.state.name)
        print(client.files.download(file=job.dest.file_name).decode(), end="")
        """
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GOOGLE_", "GEMINI_", "GEMBATCH_"))
    }
    env.update(GOOGLE_GEMINI_BASE_URL=emulator.base_url, GEMINI_API_KEY="anything")
    done = subprocess.run(
        [sys.executable, "-c", snippet], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    state, *result = done.stdout.splitlines()
    assert state == "JOB_STATE_SUCCEEDED"
    assert len(result) == 5
    assert emulator.count("batches.create", 200) == 1
    # SDK 3.x defaults to api_version v1; the emulator serves it the same.
    assert any(r.path.startswith("/v1/batches/") for r in emulator.stats().recent)


def test_results_are_deterministic_for_seed_and_input(tmp_path: Path) -> None:
    def run(seed: int) -> bytes:
        with running_emulator(seed=seed, request_error_rate=0.3) as emu:
            client = client_for(emu)
            uploaded = client.files.upload(file=str(BASIC), config={"mime_type": "jsonl"})
            job = client.batches.create(model=MODEL, src=uploaded.name)
            emu.finish_all()
            return client.files.download(file=client.batches.get(name=job.name).dest.file_name)

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_wrong_and_missing_api_key(tmp_path: Path) -> None:
    with running_emulator(api_key="right") as emu:
        good = genai.Client(
            api_key="right",
            http_options=genai_types.HttpOptions(base_url=emu.base_url, api_version="v1beta"),
        )
        assert list(good.batches.list()) == []
        bad = genai.Client(
            api_key="wrong",
            http_options=genai_types.HttpOptions(base_url=emu.base_url, api_version="v1beta"),
        )
        with pytest.raises(errors.ClientError) as wrong:
            list(bad.batches.list())
        assert wrong.value.code == 400 and wrong.value.status == "INVALID_ARGUMENT"
        assert "API key not valid" in wrong.value.message
        assert wrong.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"

        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{emu.base_url}/v1beta/batches")
        assert missing.value.code == 403
        body = json.loads(missing.value.read())
        assert body["error"]["status"] == "PERMISSION_DENIED"
        recent = emu.stats().recent
        assert all("right" not in r.path and "wrong" not in r.path for r in recent)
