"""``gembatch export [-o FILE]``: write the canonical job-info.jsonl from the database."""

from __future__ import annotations

import os

import click

from gembatch.commands.support import AppContext, pass_app
from gembatch.common.errors import GembatchError


@click.command("export")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Write here instead of the --job-info file.",
)
@pass_app
def export_cmd(app: AppContext, output: str | None) -> None:
    """Write every job to the job-info file (or -o FILE), atomically, as canonical JSONL.

    Lines another program added to the --job-info file are merged into the
    database first; lines that cannot be merged move to FILE.rejected.
    Relative input paths are rebased when FILE is in another directory.
    """
    # Imported here: every command module is imported by `gembatch --help`.
    from gembatch.jobinfo.exporter import export_jobinfo

    job_info = app.locations.job_info
    target = os.path.abspath(output) if output is not None else str(job_info)
    # Only the --job-info file is merged back: a file named by -o is an output.
    in_place = os.path.abspath(target) == os.path.abspath(job_info)
    shown = output if output is not None else _shown_job_info(app)
    report = export_jobinfo(
        app.store(), target, base_dir=app.locations.base_dir, merge=in_place, display=shown
    )
    if report.merged is not None and report.merged.changed:
        click.echo(report.merged.summary())
    if report.rejected:
        click.echo(
            f"moved {report.rejected} bad line{'s' if report.rejected != 1 else ''} "
            f"to {shown}.rejected",
            err=True,
        )
    click.echo(f"exported {report.lines} job{'s' if report.lines != 1 else ''} to {shown}")
    if report.unreadable:
        # The file is whole and written; exit 1 so that a script notices the gap.
        for message in report.unreadable:
            click.echo(f"{shown}: {message}", err=True)
        count = len(report.unreadable)
        raise GembatchError(
            f"{count} job{'s' if count != 1 else ''} exported without values the database "
            "holds but gembatch cannot read (see above; `gembatch status` shows them)"
        )


def _shown_job_info(app: AppContext) -> str:
    # The default file is shown as the user named it, not as an absolute path.
    root = click.get_current_context().find_root()
    return root.params.get("job_info") or str(app.locations.job_info)


command = export_cmd
