"""One tracked job as the poll rules see it: what the data layer hands the engine,
and what the engine tells the screen about (so the view needs no data layer for it)."""

from __future__ import annotations

from dataclasses import dataclass

from gembatch.common import states


@dataclass(frozen=True)
class WorkItem:
    """What the poller needs to know about one claimed job (a detached copy)."""

    id: int
    batch_name: str
    input_file: str
    state: str | None
    dest_file_name: str | None
    dest_inline: bool
    uploaded_file_name: str | None
    downloaded: bool
    result_path: str | None
    result_size: int | None
    cleaned: bool
    error_count: int
    result_sha256: str | None = None
    # The API itself reported this job's state at least once (not only job-info).
    confirmed: bool = False

    @property
    def terminal(self) -> bool:
        return states.is_terminal(self.state)

    def needs_state(self) -> bool:
        """Ask the API: not terminal; or a finished state only job-info claims (the
        API must confirm it before anything is deleted); or results are pending
        but nobody said where they are."""
        if not self.terminal:
            return True
        if not self.confirmed and not (self.state == states.SUCCEEDED and self.dest_file_name):
            return True
        return self.needs_download() and not self.dest_file_name and not self.dest_inline

    def needs_download(self) -> bool:
        if self.state == states.SUCCEEDED:
            # "Downloaded" without a file to show for it is not downloaded (unless
            # the remote side is gone already: then there is nothing left to fetch).
            return not (self.downloaded and (self.result_path or self.cleaned))
        if self.downloaded:
            return False
        # A failed, cancelled or expired job may have left partial output: keep it.
        return self.terminal and (bool(self.dest_file_name) or self.dest_inline)

    def needs_cleanup(self, keep_remote: bool) -> bool:
        return self.terminal and not self.cleaned and not keep_remote
