"""gembatch: track, poll, download and clean up Gemini Batch API jobs.

The Python API is ``gembatch.open(job_info="job-info.jsonl", db=None)``; it is
loaded on first use, so the command line never pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public names of the Python API (docs/python-api.md), all from gembatch.api.
__all__ = [
    "JobView",
    "Jobs",
    "RequestResult",
    "Requests",
    "TokenCounts",
    "Workspace",
    "__version__",
    "open",
]

if TYPE_CHECKING:
    from gembatch.api.workspace import (
        Jobs,
        JobView,
        RequestResult,
        Requests,
        TokenCounts,
        Workspace,
        open,
    )


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'gembatch' has no attribute {name!r}")
    from gembatch.api import workspace

    return getattr(workspace, name)
