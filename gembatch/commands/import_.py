"""``gembatch import [FILE]``: merge a job-info file into the database."""

from __future__ import annotations

import click

from gembatch.commands.support import AppContext, pass_app
from gembatch.common.errors import BadInput


@click.command("import")
@click.argument("file", required=False, type=click.Path(path_type=str))
@click.option("--skip-bad", is_flag=True, help="Import the good lines and list the bad ones.")
@pass_app
def import_cmd(app: AppContext, file: str | None, skip_bad: bool) -> None:
    """Merge FILE (default: the --job-info file) into the database; the file is not changed.

    Relative input paths in FILE are read against FILE's directory and stored
    relative to the --job-info file's directory.
    """
    # Imported here: every command module is imported by `gembatch --help`.
    from gembatch.jobinfo.importer import import_jobinfo
    from gembatch.jobinfo.reader import BadLines

    path = file if file is not None else str(app.locations.job_info)
    shown = file if file is not None else _shown_job_info(app)
    store = app.store()
    try:
        report = import_jobinfo(
            store, path, skip_bad=skip_bad, base_dir=app.locations.base_dir, display=shown
        )
    except BadLines as exc:
        for line in exc.lines:
            click.echo(line, err=True)
        raise BadInput(exc.summary) from None
    for line in report.bad_lines_text():
        click.echo(line, err=True)
    click.echo(report.summary())


def _shown_job_info(app: AppContext) -> str:
    # The default file is shown as the user named it, not as an absolute path.
    root = click.get_current_context().find_root()
    return root.params.get("job_info") or str(app.locations.job_info)


command = import_cmd
