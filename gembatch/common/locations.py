"""Where things live: the job-info file, the database, and paths resolved against them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_JOB_INFO = "job-info.jsonl"
DEFAULT_DB_NAME = "gembatch.db"
DB_ENV = "GEMBATCH_DB"


def _looks_like_url(value: str) -> bool:
    return "://" in value


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


@dataclass(frozen=True)
class Locations:
    job_info: Path
    db_url: str

    @property
    def base_dir(self) -> Path:
        """Relative input paths in job-info.jsonl are resolved against this directory."""
        return self.job_info.parent

    def resolve_input(self, input_file: str) -> Path:
        path = Path(input_file)
        return path if path.is_absolute() else self.base_dir / path

    def resolve_result(self, result_path: str) -> Path:
        """A stored result path: relative to the job-info directory, like input files."""
        path = Path(result_path)
        return path if path.is_absolute() else self.base_dir / path

    def store_path(self, path: Path) -> str:
        """How a path is recorded: relative to the job-info directory when inside it,
        so a workspace can be moved or copied and still find its files."""
        if path.is_absolute() and not path.is_relative_to(self.base_dir):
            return str(path)
        return os.path.relpath(path, self.base_dir)

    def results_path(self, input_file: str) -> Path:
        """``batch/003.jsonl`` -> ``batch/results/003.jsonl``, beside the input."""
        source = self.resolve_input(input_file)
        return source.parent / "results" / source.name


def resolve(job_info: str | os.PathLike[str] | None, db: str | None) -> Locations:
    """Flag first, then ``GEMBATCH_DB``, then ``gembatch.db`` beside the job-info file."""
    info = Path(job_info or DEFAULT_JOB_INFO).expanduser().absolute()
    chosen = db if db else os.environ.get(DB_ENV) or None
    if chosen:
        url = chosen if _looks_like_url(chosen) else sqlite_url(Path(chosen).expanduser())
    else:
        url = sqlite_url(info.parent / DEFAULT_DB_NAME)
    return Locations(job_info=info, db_url=url)
