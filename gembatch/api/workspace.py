"""A gembatch workspace for notebooks and pipelines: the CLI's own code, as calls.

``gembatch.open()`` returns a :class:`Workspace`: the job-info file merged into
the database (as ``gembatch import`` does), and methods that run what the
commands run — the same submit protocol, the same poll engine, the same join and
report — quietly, returning values instead of printing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from gembatch.common.errors import BadInput
from gembatch.common.locations import Locations, resolve
from gembatch.common.snapshot import JobView
from gembatch.common.timeutil import now
from gembatch.engine.poller import PollOptions, RunSummary
from gembatch.engine.progress import QuietReporter, QuietSubmitReporter
from gembatch.engine.session import poll_run
from gembatch.engine.submit import submit_files
from gembatch.engine.units import DEFAULT_MODEL, MODEL_ENV, SubmitOptions, SubmitReport
from gembatch.jobinfo.importer import import_jobinfo
from gembatch.jobinfo.reader import BadLines
from gembatch.report.build import build_report
from gembatch.report.figures import Report
from gembatch.report.joined import (
    DEFAULT_FIELDS,
    FIELDS,
    JoinCounts,
    RequestResult,
    ResultsJoin,
    TokenCounts,
    parse_fields,
)
from gembatch.report.pricing import PriceTable
from gembatch.store.database import Store, open_store
from gembatch.store.snapshots import read_snapshot

if TYPE_CHECKING:
    from gembatch.remote.client import Gemini

# What ``gembatch`` re-exports; the record types are the join's and the status view's own.
__all__ = ["JobView", "Jobs", "RequestResult", "Requests", "TokenCounts", "Workspace", "open"]


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError("to_pandas() needs pandas: pip install pandas") from None
    return pandas


class Jobs(Sequence[JobView]):
    """The tracked jobs, in id order (each a :class:`JobView`)."""

    def __init__(self, jobs: Sequence[JobView]) -> None:
        self._jobs = tuple(jobs)

    def __getitem__(self, index: Any) -> Any:
        return self._jobs[index]

    def __len__(self) -> int:
        return len(self._jobs)

    def to_pandas(self) -> Any:
        """A DataFrame, one row per job, a column per :class:`JobView` field."""
        names = JobView.__dataclass_fields__
        return _pandas().DataFrame(
            [[getattr(job, name) for name in names] for job in self._jobs], columns=list(names)
        )


class Requests(Iterable[RequestResult]):
    """Every request of the chosen jobs with its result, streamed: iterating reads
    the database and the files again. ``counts`` describes the last pass."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self.counts = JoinCounts()

    def __iter__(self) -> Iterator[RequestResult]:
        join: ResultsJoin = self._make()
        self.counts = join.counts
        yield from join

    def to_pandas(self, fields: Sequence[str] | None = None) -> Any:
        """A DataFrame with a column per field (``gembatch results --fields`` names)."""
        names = parse_fields(",".join(fields)) if fields is not None else list(DEFAULT_FIELDS)
        getters = [FIELDS[name] for name in names]
        return _pandas().DataFrame(
            [[get(result) for get in getters] for result in self], columns=names
        )


class Workspace:
    """One job-info file and its database. Use as a context manager, or call
    :meth:`close` when done."""

    def __init__(
        self,
        locations: Locations,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self.locations = locations
        self._base_url = base_url
        self._api_key = api_key
        self._store: Store | None = open_store(locations.db_url)
        if locations.job_info.is_file():
            try:
                self.merge_job_info()
            except BaseException:
                self.close()
                raise

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("this workspace is closed")
        return self._store

    def merge_job_info(self) -> None:
        """Merge the job-info file into the database (``gembatch import``)."""
        try:
            import_jobinfo(self.store, self.locations.job_info, base_dir=self.locations.base_dir)
        except BadLines as exc:
            raise BadInput(exc.summary) from None

    def jobs(self) -> Jobs:
        return Jobs(read_snapshot(self.store).jobs)

    def requests(
        self,
        failed: bool = False,
        *,
        jobs: Sequence[int] | None = None,
        with_input: bool = True,
        embeddings: bool = False,
    ) -> Requests:
        """Each request joined to its result by key (``gembatch results``):
        ``failed`` for those that failed or have no result, ``jobs`` to choose
        job ids, ``with_input=False`` when the input files are gone."""
        return Requests(
            lambda: ResultsJoin(
                self.store,
                self.locations,
                list(jobs) if jobs else None,
                failed=failed,
                with_input=with_input,
                embeddings=embeddings,
            )
        )

    def submit(
        self,
        paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
        model: str | None = None,
        *,
        inline: bool = False,
        split: bool = False,
        force: bool = False,
        display_name: str | None = None,
    ) -> SubmitReport:
        """Submit JSONL input files as batch jobs (``gembatch submit``)."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        options = SubmitOptions(
            model=model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL,
            display_name=display_name,
            force=force,
            split=split,
            inline=inline,
        )
        pairs = [(Path(path), os.fspath(path)) for path in paths]
        with self._client() as gemini:
            return submit_files(
                self.store, gemini, self.locations, pairs, options, QuietSubmitReporter()
            )

    def poll(
        self,
        once: bool = True,
        *,
        interval: float = 30.0,
        concurrency: int | None = None,
        keep_remote: bool = False,
    ) -> RunSummary:
        """One poll cycle (``once``), or poll until every job is done (``gembatch poll``)."""
        options = PollOptions(
            concurrency=concurrency or PollOptions().concurrency, keep_remote=keep_remote
        )
        with self._client() as gemini:
            return poll_run(
                self.store,
                gemini,
                self.locations,
                options,
                QuietReporter(),
                interval=interval,
                once=once,
            )

    def report(self, jobs: Sequence[int] | None = None) -> Report:
        """Durations, outcomes, tokens and cost (``gembatch report``)."""
        return build_report(
            self.store,
            now(),
            prices=PriceTable(),
            job_ids=list(jobs) if jobs else None,
            base_dir=self.locations.base_dir,
        )

    def _client(self) -> _ClientScope:
        return _ClientScope(self._api_key, self._base_url)

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


class _ClientScope:
    """The API client of one call, closed when the call ends."""

    def __init__(self, api_key: str | None, base_url: str | None) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._gemini: Gemini | None = None

    def __enter__(self) -> Gemini:
        from gembatch.remote.client import connect

        self._gemini = connect(self._base_url, api_key=self._api_key)
        return self._gemini

    def __exit__(self, *exc: object) -> None:
        if self._gemini is not None:
            self._gemini.close()


def open(
    job_info: str | os.PathLike[str] = "job-info.jsonl",
    db: str | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
) -> Workspace:
    """Open the workspace of ``job_info`` (merged into the database if it exists).

    ``db``: a SQLAlchemy URL or SQLite path (default: ``GEMBATCH_DB``, else
    ``gembatch.db`` beside the job-info file). ``base_url`` and ``api_key`` are
    for ``submit`` and ``poll`` (default: the environment, as for the CLI).
    """
    return Workspace(resolve(job_info, db), base_url=base_url, api_key=api_key)
