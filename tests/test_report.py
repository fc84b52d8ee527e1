"""``gembatch report``: every figure checked against values worked out by hand.

The workspace below holds five jobs (times relative to T0 = 2025-07-01 12:00 UTC):

  #1 basic.jsonl          flash-lite       SUCCEEDED  0m → 60m, seen RUNNING at 10m
                          real Gemini results: 5 ok, tokens 80 / 3404 / 0 / 3484
  #2 structured.jsonl     flash-lite-prev  SUCCEEDED  5m → 35m; API says 4 ok, 1 failed
                          real Gemini results: 5 ok, tokens 201 / 444 / 0 / 645
  #3 errors.jsonl         2.5-flash        SUCCEEDED  10m → 130m, seen RUNNING at 40m
                          a ok (10/20/5), b error 13, c ok (1/2), d error 8 (out of order)
  #4 doomed.jsonl         2.5-pro          FAILED     20m, no end time, last update 50m
  #5 late.jsonl           custom-model     RUNNING    180m, seen RUNNING at 210m; now = 240m
  #6 stopped.jsonl        2.5-flash        CANCELLED  no times, no results
"""

from __future__ import annotations

import io
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import REAL_GEMINI
from rich.console import Console

from gembatch.common import states
from gembatch.common.locations import Locations, sqlite_url
from gembatch.report import build_report, percentile, print_report
from gembatch.report.failed import collect_failed, request_history, write_failed
from gembatch.report.figures import Spread
from gembatch.report.pricing import PriceTable, parse_price
from gembatch.report.records import report_json
from gembatch.store.database import Store, open_store
from gembatch.store.models import EVENT_STATE_CHANGE, Event, Job

T0 = datetime(2025, 7, 1, 12, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(hours=4)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def lines(path: Path, items: list[object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item) + "\n" for item in items))


def req(key: str) -> dict[str, object]:
    return {"key": key, "request": {"contents": [{"parts": [{"text": f"q {key}"}]}]}}


def usage(prompt: int, output: int, thinking: int = 0) -> dict[str, object]:
    return {
        "usageMetadata": {
            "totalTokenCount": prompt + output + thinking,
            "thoughtsTokenCount": thinking,
            "promptTokenCount": prompt,
            "candidatesTokenCount": output,
        }
    }


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.locations = Locations(
            job_info=root / "job-info.jsonl", db_url=sqlite_url(root / "gembatch.db")
        )
        self.store: Store = open_store(self.locations.db_url)

    def add(self, **fields: object) -> int:
        events = fields.pop("running_at", None)
        with self.store.transaction() as session:
            job = Job(added_at=T0, **fields)
            session.add(job)
            session.flush()
            if events is not None:
                session.add(
                    Event(
                        job_id=job.id,
                        at=events,
                        kind=EVENT_STATE_CHANGE,
                        old_state=states.PENDING,
                        new_state=states.RUNNING,
                    )
                )
            return job.id


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path)
    results = tmp_path / "batch" / "results"
    results.mkdir(parents=True)
    for name, src in (("basic", "basic"), ("structured", "structured-output")):
        shutil.copy(REAL_GEMINI / f"{src}.jsonl", tmp_path / "batch" / f"{name}.jsonl")
        shutil.copy(REAL_GEMINI / "results" / f"{src}.jsonl", results / f"{name}.jsonl")
    lines(tmp_path / "batch" / "errors.jsonl", [req(k) for k in "abcd"])
    lines(
        results / "errors.jsonl",
        [
            {"error": {"code": 13, "message": "Internal error encountered."}, "key": "b"},
            {"response": usage(10, 20, 5), "key": "a"},
            {"key": "d", "error": {"message": "Resource exhausted.", "code": 8}},
            {"key": "c", "response": usage(1, 2)},
        ],
    )
    lines(tmp_path / "batch" / "doomed.jsonl", [req(k) for k in "xyz"])
    lines(tmp_path / "batch" / "stopped.jsonl", [req(k) for k in "pq"])
    w.add(
        input_file="batch/basic.jsonl",
        model="models/gemini-2.5-flash-lite",
        state=states.SUCCEEDED,
        request_count=5,
        create_time=at(0),
        update_time=at(60),
        end_time=at(60),
        running_at=at(10),
        api_request_count=5,
        api_succeeded_count=5,
        api_failed_count=0,
        result_path=str(results / "basic.jsonl"),
    )
    w.add(
        input_file="batch/structured.jsonl",
        model="models/gemini-2.5-flash-lite-preview-06-17",
        state=states.SUCCEEDED,
        request_count=5,
        create_time=at(5),
        end_time=at(35),
        api_succeeded_count=4,
        api_failed_count=1,
        result_path=str(results / "structured.jsonl"),
    )
    w.add(
        input_file="batch/errors.jsonl",
        model="models/gemini-2.5-flash",
        state=states.SUCCEEDED,
        request_count=4,
        create_time=at(10),
        end_time=at(130),
        running_at=at(40),
        result_path=str(results / "errors.jsonl"),
    )
    w.add(
        input_file="batch/doomed.jsonl",
        model="models/gemini-2.5-pro",
        state=states.FAILED,
        request_count=3,
        create_time=at(20),
        update_time=at(50),
        remote_error="input rejected",
    )
    w.add(
        input_file="batch/late.jsonl",
        model="custom-model",
        state=states.RUNNING,
        request_count=2,
        create_time=at(180),
        running_at=at(210),
    )
    w.add(input_file="batch/stopped.jsonl", model="models/gemini-2.5-flash", state=states.CANCELLED)
    yield w
    w.store.dispose()


def test_percentile_by_hand() -> None:
    assert percentile([10, 20, 30, 40, 50], 50) == 30
    assert percentile([10, 20, 30, 40, 50], 90) == pytest.approx(46)  # 40 + 0.6 * 10
    assert percentile([7], 90) == 7
    spread = Spread.of([1800, 3600, 1800, 7200])
    assert (spread.min, spread.median, spread.p90, spread.max) == (1800, 2700, 6120, 7200)


def test_durations_by_hand(ws: Workspace) -> None:
    report = build_report(ws.store, NOW)
    by_id = {job.id: job for job in report.jobs}
    assert [by_id[i].duration.seconds for i in (1, 2, 3, 4)] == [3600, 1800, 7200, 1800]
    assert by_id[4].duration.approximate and by_id[4].end == at(50)
    assert by_id[5].duration.growing and by_id[6].duration.seconds is None
    d = report.durations
    # Sorted [1800, 1800, 3600, 7200]: median (1800+3600)/2, p90 at 2.7 -> 3600 + 0.7*3600.
    assert (d.count, d.min, d.median, d.p90, d.max) == (4, 1800, 2700, 6120, 7200)
    assert report.approximate_durations == 1
    # Span: first creation (T0) to now (job 5 is still running).
    assert (report.span_start, report.span_end, report.span_growing) == (T0, NOW, True)
    assert report.span_seconds == 4 * 3600
    # Queued: #1 10m, #3 30m, #5 30m; running (finished jobs only): #1 50m, #3 90m.
    assert by_id[1].queued_seconds == 600 and by_id[1].running_seconds == 3000
    assert by_id[3].queued_seconds == 1800 and by_id[3].running_seconds == 5400
    assert by_id[5].running_seconds is None
    assert (report.queued.count, report.queued.median) == (3, 1800)
    assert (report.running.count, report.running.median) == (2, 4200)
    # Throughput: 5+5+4+3 requests of finished jobs (the cancelled one has no count) in 4 h.
    assert report.requests_done == 17
    assert report.requests_per_hour == pytest.approx(17 / 4)
    assert report.succeeded_per_hour == pytest.approx(12 / 4)


def test_groups_by_model_and_state(ws: Workspace) -> None:
    report = build_report(ws.store, NOW)
    models = {g.name: g for g in report.by_model}
    assert sorted(models) == [
        "custom-model",
        "models/gemini-2.5-flash",
        "models/gemini-2.5-flash-lite",
        "models/gemini-2.5-flash-lite-preview-06-17",
        "models/gemini-2.5-pro",
    ]
    flash = models["models/gemini-2.5-flash"]
    assert (flash.jobs, flash.succeeded, flash.failed, flash.not_run) == (2, 2, 2, 0)
    assert flash.durations.median == 7200
    by_state = {g.name: g for g in report.by_state}
    assert sorted(by_state) == ["cancelled", "failed", "running", "succeeded"]
    ok = by_state["succeeded"]
    assert (ok.jobs, ok.requests, ok.succeeded, ok.failed) == (3, 14, 12, 2)
    assert (ok.durations.min, ok.durations.median, ok.durations.max) == (1800, 3600, 7200)
    assert by_state["failed"].not_run == 3
    assert by_state["running"].durations.count == 0


def test_outcomes_tokens_and_cost_by_hand(ws: Workspace) -> None:
    report = build_report(ws.store, NOW)
    by_id = {job.id: job for job in report.jobs}
    assert (by_id[3].succeeded, by_id[3].failed, by_id[3].not_run) == (2, 2, 0)
    assert by_id[4].stats is None and by_id[4].not_run == 3
    assert (report.succeeded, report.failed, report.not_run) == (12, 2, 3)
    assert report.errors == [(8, "Resource exhausted.", 1), (13, "Internal error encountered.", 1)]
    assert report.tokens.as_dict() == {
        "prompt": 80 + 201 + 11,
        "output": 3404 + 444 + 22,
        "thinking": 5,
        "total": 3484 + 645 + 38,
    }
    # flash-lite $0.10/$0.40, flash $0.30/$2.50 per 1M; thinking billed as output; half off.
    assert by_id[1].cost == pytest.approx((80 * 0.10 + 3404 * 0.40) / 1e6 / 2)
    assert by_id[2].cost == pytest.approx((201 * 0.10 + 444 * 0.40) / 1e6 / 2)
    assert by_id[3].cost == pytest.approx((11 * 0.30 + 27 * 2.50) / 1e6 / 2)
    assert report.cost == pytest.approx(0.0006848 + 0.00009885 + 0.0000354)
    assert report.unpriced_models == []  # the custom model has no tokens to price


def test_price_override_and_discount(ws: Workspace) -> None:
    prices = PriceTable(discount=0.0)
    prices.override(*parse_price("gemini-2.5-flash=1,10"))
    report = build_report(ws.store, NOW, prices=prices)
    job = next(j for j in report.jobs if j.id == 3)
    assert job.cost == pytest.approx((11 * 1 + 27 * 10) / 1e6)
    # Longest prefix wins: the preview keeps the flash-lite price.
    assert prices.lookup("models/gemini-2.5-flash-lite-preview-06-17").model == (  # type: ignore[union-attr]
        "gemini-2.5-flash-lite"
    )
    assert prices.lookup("gemini-2.5-flashy") is None


@pytest.mark.parametrize("text", ["x", "m=1", "m=a,b", "=1,2", "m=-1,2"])
def test_bad_price_is_a_one_line_error(text: str) -> None:
    from gembatch.common.errors import BadInput

    with pytest.raises(BadInput, match="--price"):
        parse_price(text)


def test_warnings_where_the_api_disagrees(ws: Workspace) -> None:
    report = build_report(ws.store, NOW)
    assert report.warnings == [
        "#2 batch/structured.jsonl: the API counted 4 succeeded requests, the result file holds 5",
        "#2 batch/structured.jsonl: the API counted 1 failed requests, the result file holds 0",
    ]


def test_second_report_reads_the_table(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    first = build_report(ws.store, NOW)
    import gembatch.common.resultlines as lines

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"read a result file again: {args}")

    # Every reading of a result file goes through resultlines.Scan.
    monkeypatch.setattr(lines.Scan, "__iter__", fail)
    second = build_report(ws.store, NOW)
    assert report_json(second) == report_json(first)
    assert second.succeeded == first.succeeded > 0


def test_failed_requests_by_key(ws: Workspace, tmp_path: Path) -> None:
    scan = collect_failed(ws.store, ws.locations)
    assert [(s.job.id, s.keys) for s in scan.sets] == [(3, ["b", "d"]), (4, ["x", "y", "z"])]
    out = tmp_path / "failed.jsonl"
    assert write_failed(scan, out) == []
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written == [req("b"), req("d"), req("x"), req("y"), req("z")]
    with_cancelled = collect_failed(ws.store, ws.locations, include_cancelled=True)
    assert [s.job.id for s in with_cancelled.sets] == [3, 4, 6]


def test_a_missing_result_line_counts_as_failed(ws: Workspace) -> None:
    result = ws.root / "batch" / "results" / "errors.jsonl"
    kept = [line for line in result.read_text().splitlines() if '"c"' not in line]
    result.write_text("\n".join(kept) + "\n")
    scan = collect_failed(ws.store, ws.locations, job_ids=[3])
    assert scan.sets[0].keys == ["b", "c", "d"]


def test_history_of_a_key_across_a_retry(ws: Workspace) -> None:
    results = ws.root / "batch" / "results"
    lines(ws.root / "batch" / "errors.retry-j3.jsonl", [req("b"), req("d")])
    lines(
        results / "errors.retry-j3.jsonl",
        [
            {"key": "d", "response": usage(1, 1)},
            {"key": "b", "error": {"code": 13, "message": "again"}},
        ],
    )
    retry_id = ws.add(
        input_file="batch/errors.retry-j3.jsonl",
        model="models/gemini-2.5-flash",
        state=states.SUCCEEDED,
        request_count=2,
        retry_of_job_id=3,
        result_path=str(results / "errors.retry-j3.jsonl"),
    )
    history = request_history(ws.store, ws.locations, retry_id, "d")
    assert [(a.job_id, a.outcome) for a in history] == [(3, "failed"), (retry_id, "succeeded")]
    assert history[0].detail == "8: Resource exhausted."
    # Asked from the original, the same chain.
    assert request_history(ws.store, ws.locations, 3, "b")[1].outcome == "failed"
    report = build_report(ws.store, NOW)
    assert report.jobs[-1].retry_of == 3


def test_print_report_renders_everything(ws: Workspace) -> None:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    print_report(ws.store, ws.locations, console, now=NOW)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "min 30m 0s · median 45m 0s · p90 1h 42m 0s · max 2h 0m 0s" in text
    assert "wall clock        4h 0m 0s so far" in text
    assert "12 succeeded · 2 failed · 3 without result" in text
    assert "292 prompt · 3,870 output · 5 thinking · 4,167 total" in text
    assert "8 RESOURCE_EXHAUSTED: Resource exhausted." in text
    assert "warning: #2 batch/structured.jsonl: the API counted 4 succeeded" in text
    assert "Cost is an estimate" in text
    assert "timeline" in text


def test_long_job_lists_show_the_troubled_jobs_first(ws: Workspace) -> None:
    from gembatch.report.render import shown_jobs

    report = build_report(ws.store, NOW)
    # #2 has warnings, #3 failed requests, #4 requests without result.
    assert [job.id for job in shown_jobs(report, 2)] == [2, 3]
    assert len(shown_jobs(report, None)) == 6
