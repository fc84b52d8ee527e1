"""The status table's column budget: which columns give way, and in what order,
so that a job's input file is the last thing cut.

Shared by the ``status`` table and the live dashboard (through
:mod:`gembatch.view.table`, which builds the columns and draws them). Pure:
the columns and the width come in, the widths and the columns kept go out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.cells import cell_len

from gembatch.view.progress import Pieces

# Two spaces between columns, none at the edges (like rich's SIMPLE_HEAD box).
GAP = "  "
_INPUT_MIN = 16
_ERROR_MIN = 16
# When even the tightest layout cannot show a file's own name, the error gives
# up room down to this, so the name is still the last thing cut.
_ERROR_FLOOR = 8
_FLEXIBLE = frozenset({"input file", "error"})
# How the other columns give way, step by step, so that the input file is cut
# last: each step shortens a column to its next form or drops it. The duration
# and the state are never cut; the create time outlives the end time (a running
# job's duration already says when it ends).
_STEPS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("shorten", "created"), ("shorten", "ended")),  # 12-01 18:35
    (("drop", "ended"),),
    (("shorten", "created"),),  # 18:35 today, 12-01 before
    (("shorten", "progress"),),  # a narrower bar
    (("shorten", "state"),),  # ● stuck instead of ● running · stuck
    (("drop", "requests"),),  # a running job's progress still says how many
    (("drop", "created"),),
    (("shorten", "progress"),),  # the counts alone
    (("drop", "progress"),),
)


@dataclass(slots=True)
class Form:
    """One way of writing a column's cells: the plain text of each row and, for rows
    drawn as several styled pieces (a progress bar and its counts), those pieces."""

    cells: list[str]
    pieces: list[Pieces | None] | None = None


@dataclass(slots=True)
class Column:
    """One column of the status table: plain cell strings and their styles."""

    name: str
    cells: list[str]
    styles: list[str]
    right: bool = False
    width: int = 0
    # Shorter forms, in order, to switch to before the column would be dropped.
    shorter: list[Form] = field(default_factory=list)
    pieces: list[Pieces | None] | None = None

    def natural(self) -> int:
        return max([cell_len(self.name), *(cell_len(cell) for cell in self.cells)])

    def forms(self) -> list[Form]:
        return [Form(self.cells, self.pieces), *self.shorter]

    def use(self, form: Form) -> None:
        self.cells, self.pieces = form.cells, form.pieces
        self.width = self.natural()


def _tail_width(path: str) -> int:
    """Cells that show a path's whole file name once cut from the left (``…name``)."""
    cut = max(path.rfind("/"), path.rfind("\\"))
    return cell_len(path) if cut < 0 else 1 + cell_len(path[cut + 1 :])


def _levels(columns: list[Column]) -> list[dict[str, int | None]]:
    """The layouts to try, widest first: each column's form (index), None when dropped."""
    forms = {c.name: len(c.forms()) for c in columns}
    layout: dict[str, int | None] = dict.fromkeys(forms, 0)
    levels = [dict(layout)]
    for step in _STEPS:
        changed = False
        for action, name in step:
            current = layout.get(name)
            if current is None:
                continue
            if action == "drop":
                layout[name] = None
            elif current + 1 < forms[name]:
                layout[name] = current + 1
            else:
                continue
            changed = True
        if changed:
            levels.append(dict(layout))
    return levels


def fit_columns(columns: list[Column], width: int | None) -> list[Column]:
    """Set each column's width for a table ``width`` cells wide; drop what cannot fit.

    The input file is cut last. When the room is short, the other columns give
    way first, one step at a time (:data:`_STEPS`): times lose their year, the
    end time goes, times shrink to ``18:35``, the progress bar narrows, the
    state's marks lose the state's name, then the request count, the create
    time, the bar and the progress go. The first layout in which every file name
    fits whole is used; failing that, the first in which every file's own name
    (the end of its path) fits; failing that, the tightest. The error column
    gets a useful minimum (less, down to a floor, when that would cut a file's
    own name), and whatever the file name leaves.
    """
    for column in columns:
        column.width = column.natural()
    if width is None:
        return columns
    by_name = {c.name: c for c in columns}
    widths = {
        c.name: [max(cell_len(c.name), *map(cell_len, f.cells)) for f in c.forms()] for c in columns
    }
    inputs = by_name["input file"]
    error = by_name.get("error")
    error_need = min(error.width, _ERROR_MIN) if error is not None else 0
    full = inputs.width
    tail = min(full, max([cell_len(inputs.name), *map(_tail_width, inputs.cells)]))

    def room(layout: dict[str, int | None]) -> int:
        kept = [name for name, form in layout.items() if form is not None]
        fixed = sum(widths[name][layout[name] or 0] for name in kept if name not in _FLEXIBLE)
        return width - fixed - len(GAP) * (len(kept) - 1) - error_need

    levels = _levels(columns)
    chosen = next(
        (lv for target in (full, tail) for lv in levels if room(lv) >= target), levels[-1]
    )
    kept = []
    for column in columns:
        form = chosen[column.name]
        if form is None:
            continue
        if form:
            column.use(column.forms()[form])
        kept.append(column)
    space = room(chosen) + error_need
    if error is not None and space - error_need < tail:
        error_need = max(min(error_need, _ERROR_FLOOR), space - tail)
    inputs.width = min(inputs.width, max(_INPUT_MIN, space - error_need))
    if error is not None:
        error.width = min(error.width, max(error_need, space - inputs.width))
    return kept
