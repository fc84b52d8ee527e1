"""`gembatch cleanup`: only what is finished and saved goes, after a listing and a yes."""

from __future__ import annotations

from pathlib import Path

from jobfactory import client_for
from test_submit import KEY, jobs, write_input

from gembatch.common import states
from gembatch.common.locations import resolve, sqlite_url
from gembatch.emulator import Emulator
from gembatch.engine.cleanup import execute, plan_cleanup
from gembatch.remote.client import Gemini
from gembatch.store.database import open_store

MODEL = "models/gemini-2.5-flash"


def cleanup(emulator: Emulator, *args: str, run_cli, input: str | None = None):  # type: ignore[no-untyped-def]
    return run_cli("cleanup", "--base-url", emulator.base_url, *args, env=KEY, input=input)


def workspace(emulator: Emulator, workdir: Path, run_cli) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Two jobs downloaded with the remote kept, one finished but not downloaded, one running."""
    for name in ("done1", "done2", "undownloaded", "running"):
        write_input(workdir, f"{name}.jsonl", 2)
    base = ("--base-url", emulator.base_url)
    assert (
        run_cli("submit", *base, "batch/done1.jsonl", "batch/done2.jsonl", env=KEY).exit_code == 0
    )
    polled = run_cli("poll", *base, "--keep-remote", "--interval", "0.1", env=KEY)
    assert polled.exit_code == 0, polled.output
    more = run_cli("submit", *base, "batch/undownloaded.jsonl", "batch/running.jsonl", env=KEY)
    assert more.exit_code == 0
    names = {
        row.input_file.split("/")[-1].removesuffix(".jsonl"): row.batch_name or ""
        for row in jobs(workdir)
    }
    emulator.set_state(names["running"], "RUNNING")
    emulator.set_state(names["undownloaded"], "SUCCEEDED")
    # The poll sees it succeed but cannot download it.
    emulator.faults.fail_next("files.download", 500, count=10)
    once = run_cli(
        "poll", *base, "--once", "--keep-remote", "--retries", "0", "--max-errors", "1", env=KEY
    )
    assert once.exit_code == 1 and "files.download: 500" in once.output
    emulator.faults.clear()
    return names


def test_cleanup_deletes_only_saved_jobs(emulator: Emulator, workdir: Path, run_cli) -> None:
    names = workspace(emulator, workdir, run_cli)
    rows = {row.batch_name: row for row in jobs(workdir)}
    assert rows[names["undownloaded"]].state == states.SUCCEEDED
    assert rows[names["undownloaded"]].downloaded_at is None

    dry = cleanup(emulator, "--dry-run", run_cli=run_cli)
    assert dry.exit_code == 0, dry.output
    assert "dry run: 6 would be deleted" in dry.output
    assert "results not downloaded" in dry.output and "still running" in dry.output
    assert emulator.count("*.delete") == 0

    # Without -y it asks, and "no" deletes nothing.
    declined = cleanup(emulator, run_cli=run_cli, input="n\n")
    assert declined.exit_code == 1
    assert "Delete these 6 remote resources?" in declined.output
    assert emulator.count("*.delete") == 0

    done = cleanup(emulator, run_cli=run_cli, input="y\n")
    assert done.exit_code == 0, done.output
    assert "done: 6 deleted" in done.output
    remaining = set(emulator.batch_names())
    assert remaining == {names["undownloaded"], names["running"]}
    after = {row.batch_name: row for row in jobs(workdir)}
    assert after[names["done1"]].cleaned_at is not None
    assert after[names["undownloaded"]].cleaned_at is None
    # Results on disk were never touched.
    assert (workdir / "batch" / "results" / "done1.jsonl").exists()

    # --force lets the finished-but-unsaved job go; the running one stays regardless.
    forced = cleanup(emulator, "--force", "-y", run_cli=run_cli)
    assert forced.exit_code == 0, forced.output
    assert set(emulator.batch_names()) == {names["running"]}
    again = cleanup(emulator, "-y", run_cli=run_cli)
    assert "nothing to clean up" in again.output


def test_missing_results_make_a_job_unsafe(emulator: Emulator, workdir: Path, run_cli) -> None:
    names = workspace(emulator, workdir, run_cli)
    (workdir / "batch" / "results" / "done1.jsonl").unlink()
    result = cleanup(emulator, "-y", run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert names["done1"] in emulator.batch_names()
    assert names["done2"] not in emulator.batch_names()


def test_cleanup_all_lists_untracked_resources(emulator: Emulator, workdir: Path, run_cli) -> None:
    names = workspace(emulator, workdir, run_cli)
    client = client_for(emulator)
    try:
        orphan = workdir / "orphan.jsonl"
        orphan.write_text('{"key": "a", "request": {"contents": [{"parts": [{"text": "x"}]}]}}\n')
        orphan_file = client.files.upload(file=str(orphan), config={"mime_type": "jsonl"}).name
        src = client.files.upload(file=str(orphan), config={"mime_type": "jsonl"}).name
        failed = client.batches.create(
            model=MODEL, src=src, config={"display_name": "other-failed"}
        ).name
        good = client.batches.create(model=MODEL, src=src, config={"display_name": "other-ok"}).name
        live = client.batches.create(
            model=MODEL, src=src, config={"display_name": "other-live"}
        ).name
    finally:
        client.close()
    assert orphan_file and failed and good and live
    emulator.set_state(failed, "FAILED")
    emulator.set_state(good, "SUCCEEDED")
    emulator.set_state(live, "RUNNING")

    # Paging with a small explicit page size still sees everything.
    store = open_store(sqlite_url(workdir / "gembatch.db"))
    gemini = Gemini("test-key", base_url=emulator.base_url)
    try:
        plan = plan_cleanup(
            store,
            gemini,
            resolve(workdir / "job-info.jsonl", None),
            include_untracked=True,
            page_size=2,
        )
    finally:
        gemini.close()
        store.dispose()
    deleted = {r.name for r in plan.delete}
    kept = {r.name: r.reason for r in plan.keep}
    assert orphan_file in deleted and failed in deleted
    assert good in kept and "--force" in kept[good]
    assert live in kept and src in kept  # the running batch's input stays
    assert names["running"] in kept and names["undownloaded"] in kept
    assert emulator.result_file(good) in kept  # results gembatch never saved

    plain = cleanup(emulator, "-y", run_cli=run_cli)
    assert plain.exit_code == 0
    assert orphan_file in emulator.file_names() and failed in emulator.batch_names()

    result = cleanup(emulator, "--all", "-y", run_cli=run_cli)
    assert result.exit_code == 0, result.output
    assert "untracked batch other-failed" in result.output
    assert orphan_file not in emulator.file_names()
    assert failed not in emulator.batch_names()
    assert {good, live, names["running"], names["undownloaded"]} <= set(emulator.batch_names())


def test_results_changed_after_the_listing_stop_the_delete(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    # The listing is made, the user reads it at the prompt, and meanwhile a result
    # file is edited: the deletes must rest on the results as they are then.
    names = workspace(emulator, workdir, run_cli)
    locations = resolve(workdir / "job-info.jsonl", None)
    store = open_store(locations.db_url)
    gemini = Gemini("test-key", base_url=emulator.base_url)
    try:
        plan = plan_cleanup(store, gemini, locations)
        assert names["done1"] in {r.name for r in plan.delete}
        (workdir / "batch" / "results" / "done1.jsonl").write_text('{"key": "edited"}\n')
        result = execute(store, gemini, plan, locations)
    finally:
        gemini.close()
        store.dispose()
    alive = set(emulator.batch_names())
    assert names["done1"] in alive and names["done2"] not in alive
    assert any("results changed" in reason for _, reason in result.failed)
    after = {row.batch_name: row for row in jobs(workdir)}
    assert after[names["done1"]].cleaned_at is None
    assert "changed since the listing" in (after[names["done1"]].last_error or "")


def test_a_saved_result_file_is_checked_again_before_its_delete(
    emulator: Emulator, workdir: Path, run_cli
) -> None:
    # Poll cleans batch and input but leaves the result file; `cleanup --all`
    # offers it as saved. Edited at the prompt, it must stay remote.
    write_input(workdir, "kept.jsonl", 2)
    base = ("--base-url", emulator.base_url)
    assert run_cli("submit", *base, "batch/kept.jsonl", env=KEY).exit_code == 0
    polled = run_cli("poll", *base, "--interval", "0.1", env=KEY)
    assert polled.exit_code == 0, polled.output
    (job,) = jobs(workdir)
    assert job.cleaned_at is not None and job.dest_file_name
    locations = resolve(workdir / "job-info.jsonl", None)
    store = open_store(locations.db_url)
    gemini = Gemini("test-key", base_url=emulator.base_url)
    try:
        plan = plan_cleanup(store, gemini, locations, include_untracked=True)
        assert job.dest_file_name in {r.name for r in plan.delete}
        (workdir / "batch" / "results" / "kept.jsonl").write_text('{"key": "edited"}\n')
        result = execute(store, gemini, plan, locations)
    finally:
        gemini.close()
        store.dispose()
    assert job.dest_file_name in emulator.file_names()
    assert any("results changed" in reason for _, reason in result.failed)
