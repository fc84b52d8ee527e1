"""The Python API (``gembatch.open``): its public names, and a whole run through it
against the emulator, giving the same rows as the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import JOB_INFO_FIXTURES

import gembatch
from gembatch.common import states
from gembatch.common.errors import BadInput
from gembatch.emulator import Emulator
from gembatch.emulator.config import OutcomeRule

PUBLIC = {
    "open",
    "Workspace",
    "Jobs",
    "Requests",
    "RequestResult",
    "TokenCounts",
    "JobView",
    "__version__",
}


def test_the_public_names_are_exactly_these() -> None:
    assert set(gembatch.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(gembatch, name) is not None
    with pytest.raises(AttributeError):
        gembatch.no_such_thing  # noqa: B018
    record = gembatch.RequestResult.__dataclass_fields__
    assert {"key", "text", "response", "tokens", "status", "job_id"} <= set(record)
    assert isinstance(gembatch.RequestResult.error, property)
    assert set(gembatch.TokenCounts.__dataclass_fields__) == {
        "prompt",
        "output",
        "thinking",
        "total",
    }
    workspace = gembatch.Workspace
    for method in ("jobs", "requests", "submit", "poll", "report", "close"):
        assert callable(getattr(workspace, method))


def test_importing_gembatch_loads_no_api_module() -> None:
    code = "import sys, gembatch; print(any(m.startswith('gembatch.api') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _input(workdir: Path, name: str, keys: list[str]) -> str:
    path = workdir / "batch" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            json.dumps({"key": k, "request": {"contents": [{"parts": [{"text": f"say {k}"}]}]}})
            + "\n"
            for k in keys
        )
    )
    return f"batch/{name}"


def test_a_whole_run_through_the_python_api(emulator: Emulator, workdir: Path, run_cli) -> None:
    emulator.add_rule(OutcomeRule(outcome="SUCCEEDED", index=1, request_error_rate=0.5))
    first = _input(workdir, "one.jsonl", ["x1", "x2", "x3"])
    second = _input(workdir, "two.jsonl", [f"y{n}" for n in range(6)])
    with gembatch.open(
        job_info=workdir / "job-info.jsonl", base_url=emulator.base_url, api_key="test-key"
    ) as ws:
        submitted = ws.submit([workdir / first, workdir / second], model="gemini-2.5-flash")
        assert submitted.count("submitted") == 2 and not submitted.failed
        summary = ws.poll(once=False, interval=0.2)
        assert summary.remaining == 0 and summary.downloads == 2
        jobs = ws.jobs()
        assert [job.state for job in jobs] == [states.SUCCEEDED] * 2
        assert [job.request_count for job in jobs] == [3, 6]

        results = list(ws.requests())
        assert len(results) == 9
        for result in results:
            assert result.text == f"say {result.key}"
            if result.status == "ok":
                assert result.response.startswith(f'Emulated answer to "say {result.key}"')
                assert result.error is None and result.tokens.total
            else:
                assert result.response is None and result.error
        failed = [r.key for r in ws.requests(failed=True)]
        assert failed and set(failed) == {r.key for r in results if r.status != "ok"}

        frame = ws.requests().to_pandas()
        assert list(frame["key"]) == [r.key for r in results]
        assert list(frame.columns)[:4] == ["job", "key", "status", "request"]
        assert len(ws.jobs().to_pandas()) == 2
        report = ws.report()
        assert report.succeeded + report.failed == 9
        assert report.failed == len(failed)

    # The CLI gives the same rows: one code path, not two.
    cli = run_cli("results", "--format", "jsonl")
    assert cli.exit_code == 0, cli.output
    rows = [json.loads(line) for line in cli.stdout.splitlines() if line.strip()]
    assert [(r["key"], r["status"], r["response"]) for r in rows] == [
        (r.key, r.status, r.response) for r in results
    ]


def test_open_merges_a_job_info_file_an_earlier_tool_left(workdir: Path) -> None:
    shutil.copy(JOB_INFO_FIXTURES / "v0.3-counted.jsonl", workdir / "job-info.jsonl")
    lines = (workdir / "job-info.jsonl").read_text().splitlines()
    with gembatch.open(job_info=workdir / "job-info.jsonl") as ws:
        assert len(ws.jobs()) == len([line for line in lines if line.strip()])
    assert (workdir / "gembatch.db").is_file()


def test_open_with_a_bad_job_info_line_says_which(workdir: Path) -> None:
    (workdir / "job-info.jsonl").write_text('{"input_file": "a.jsonl"}\n{oops\n')
    with pytest.raises(BadInput, match="2"):
        gembatch.open(job_info=workdir / "job-info.jsonl")


def test_submit_without_a_key_is_a_clear_error(workdir: Path) -> None:
    os.environ.pop("GEMINI_API_KEY", None)
    with (
        gembatch.open(job_info=workdir / "job-info.jsonl") as ws,
        pytest.raises(BadInput, match="no API key"),
    ):
        ws.submit(_input(workdir, "a.jsonl", ["k"]))


def test_the_worked_example_of_the_docs_runs(
    emulator: Emulator, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "python-api.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert "time.sleep(30)" in code
    for n in (1, 2, 3):
        _input(workdir, f"{n:03d}.jsonl", [f"q{n}-{i}" for i in range(3)])
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emulator.base_url)
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    printed: list[str] = []
    scope = {"print": lambda *args: printed.append(" ".join(map(str, args)))}
    # The same code; only the pause between cycles is shorter than a real run's.
    exec(compile(code.replace("time.sleep(30)", "time.sleep(0.2)"), "python-api.md", "exec"), scope)
    assert printed[0] == "3 submitted"
    assert any(line.endswith("JOB_STATE_SUCCEEDED") for line in printed)
    assert any("succeeded," in line and "tokens" in line for line in printed)
