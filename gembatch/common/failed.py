"""The failed requests of a job: what the report finds (``gembatch report
--failed``) and what ``retry`` resubmits. A value type of its own because the
data layer, the report and the engine all hold it and none may import another's."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class JobRef:
    """A job as failed requests and retries see it."""

    id: int
    input_file: str
    model: str | None
    state: str | None
    result_path: str | None
    input_sha256: str | None = None
    retry_of: int | None = None
    result_sha256: str | None = None


@dataclass
class FailedSet:
    """The failed requests of one job, as the input lines to resubmit."""

    job: JobRef
    input_path: Path
    lines: list[bytes] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)


@dataclass
class FailedScan:
    sets: list[FailedSet] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def request_count(self) -> int:
        return sum(len(s.lines) for s in self.sets)
