"""``gembatch report``: how long things took, what failed, what it cost.

- :mod:`gembatch.report.build` computes the figures (:func:`build_report`) of
  :mod:`gembatch.report.figures`;
- :mod:`gembatch.report.render` formats them (rich, JSON, CSV);
- :mod:`gembatch.report.failed` finds the original requests of failed requests.
"""

from __future__ import annotations

from datetime import datetime

from rich.console import Console

from gembatch.common.locations import Locations
from gembatch.common.timeutil import now as utcnow
from gembatch.report.build import build_report, summarize
from gembatch.report.failed import collect_failed, request_history, write_failed
from gembatch.report.figures import JobReport, Report, Spread, percentile
from gembatch.report.pricing import PriceTable
from gembatch.report.records import report_json
from gembatch.report.render import render_report
from gembatch.store.database import Store


def print_report(
    store: Store,
    locations: Locations,
    console: Console,
    *,
    prices: PriceTable | None = None,
    now: datetime | None = None,
) -> Report:
    """Build the report over every job and print it (the demo calls this)."""
    report = build_report(store, now or utcnow(), prices=prices, base_dir=locations.base_dir)
    console.print(render_report(report))
    return report


__all__ = [
    "JobReport",
    "Report",
    "Spread",
    "build_report",
    "collect_failed",
    "percentile",
    "print_report",
    "render_report",
    "report_json",
    "request_history",
    "summarize",
    "write_failed",
]
