"""The layout rules of docs/architecture.md, read from every module's imports.

Nothing is imported or run: each module is parsed with ``ast`` and every
``import`` statement in it (at the top, inside a function or under
``TYPE_CHECKING`` alike) is checked against what its part may use.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gembatch"
MAX_LINES = 400

# Which parts of gembatch each part may import. Arrows run downward:
# commands -> engine / report / view / jobinfo -> store -> common; engine -> remote.
PARTS = (
    "common",
    "store",
    "jobinfo",
    "remote",
    "engine",
    "view",
    "report",
    "api",
    "emulator",
    "listen",
    "commands",
)
MAY_IMPORT: dict[str, frozenset[str]] = {
    "common": frozenset({"common"}),
    "store": frozenset({"common", "store"}),
    "remote": frozenset({"common", "remote"}),
    "jobinfo": frozenset({"common", "store", "jobinfo"}),
    "engine": frozenset({"common", "store", "remote", "jobinfo", "engine"}),
    "view": frozenset({"common", "store", "view"}),
    "report": frozenset({"common", "store", "view", "report"}),
    # The Python API: what the commands run, as calls (never the click layer).
    "api": frozenset({"common", "store", "remote", "jobinfo", "engine", "report", "api"}),
    "emulator": frozenset({"emulator"}),
    # The webhook receiver: it records events (store) and polls their jobs (engine).
    "listen": frozenset({"common", "store", "remote", "engine", "jobinfo", "listen"}),
    "commands": frozenset(set(PARTS) - {"emulator", "api"}),
    # gembatch/__init__.py (which re-exports the Python API), __main__.py and cli.py.
    "": frozenset({"", "common", "commands", "api"}),
}
# The only client-side modules that may start the emulator.
EMULATOR_USERS = frozenset({"gembatch/engine/demo.py", "gembatch/commands/emulator.py"})

# Only the data layer touches the ORM classes or opens a session: every other part
# reads and writes through the data layer's named functions.
DATA_LAYER_ONLY_MODULE = "gembatch.store.models"
DATA_LAYER_ONLY_CALLS = frozenset({"transaction", "reading", "sessions"})

# Third-party libraries each part must never import.
# The database drivers: only the data layer opens a connection of its own.
DRIVERS = ("sqlite3", "psycopg", "psycopg2")
NEVER: dict[str, frozenset[str]] = {
    "common": frozenset({"sqlalchemy", "alembic", *DRIVERS, "google.genai", "click", "rich"}),
    "store": frozenset({"google.genai", "click", "rich"}),
    "jobinfo": frozenset({"sqlalchemy", "alembic", *DRIVERS, "google.genai", "click", "rich"}),
    "remote": frozenset({"sqlalchemy", "alembic", *DRIVERS, "click", "rich"}),
    "engine": frozenset({"sqlalchemy", "alembic", *DRIVERS, "google.genai", "click", "rich"}),
    "view": frozenset({"sqlalchemy", "alembic", *DRIVERS, "google.genai", "click"}),
    "report": frozenset({"sqlalchemy", "alembic", *DRIVERS, "google.genai", "click"}),
    "emulator": frozenset({"sqlalchemy", "alembic", *DRIVERS, "google.genai", "click", "rich"}),
    "api": frozenset({"sqlalchemy", "alembic", *DRIVERS, "google.genai", "click", "rich"}),
    "listen": frozenset({"sqlalchemy", "alembic", *DRIVERS, "google.genai", "click", "rich"}),
    "commands": frozenset({"sqlalchemy", "alembic", *DRIVERS, "google.genai"}),
    "": frozenset({"sqlalchemy", "alembic", *DRIVERS, "google.genai", "rich"}),
}


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name
    line: int


def part_of(path: Path, package: Path) -> str:
    relative = path.relative_to(package).parts
    return relative[0] if len(relative) > 1 else ""


def imports_of(path: Path, package: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    dotted = ["gembatch", *path.relative_to(package).with_suffix("").parts]
    if dotted[-1] == "__init__":
        dotted.pop()
    else:
        dotted.pop()  # the package a relative import starts from
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = dotted[: len(dotted) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield Import(module, node.lineno)
            # ``from google import genai`` and ``from gembatch import engine``.
            for alias in node.names:
                yield Import(f"{module}.{alias.name}", node.lineno)
        elif (
            isinstance(node, ast.Call)
            and _dotted(node.func) in {"importlib.import_module", "import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield Import(node.args[0].value, node.lineno)


def _within(module: str, library: str) -> bool:
    return module == library or module.startswith(library + ".")


# Names in the data layer's signatures that mean a live SQLAlchemy object.
SQLALCHEMY_TYPES = frozenset({"Engine", "Connection", "Session", "sessionmaker", "Inspector"})


def _mentions(node: ast.AST | None, names: frozenset[str]) -> bool:
    for sub in ast.walk(node) if node is not None else ():
        if isinstance(sub, ast.Name) and sub.id in names:
            return True
        if isinstance(sub, ast.Attribute) and sub.attr in names:
            return True
        if (
            isinstance(sub, ast.Constant)
            and isinstance(sub.value, str)
            and any(re.search(rf"\b{name}\b", sub.value) for name in names)
        ):
            return True
    return False


def data_layer_handles(package: Path) -> frozenset[str]:
    """What only the data layer may hold: the ORM classes, and every function of
    the data layer that takes or returns an engine, connection or session."""
    found: set[str] = set()
    for path in sorted((package / "store").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and path.name == "models.py":
                found.add(node.name)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args
                every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
                every += [a for a in (args.vararg, args.kwarg) if a is not None]
                annotations = [a.annotation for a in every] + [node.returns]
                if any(_mentions(a, SQLALCHEMY_TYPES) for a in annotations):
                    found.add(node.name)
    return frozenset(found)


def _dotted(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _data_layer_uses(
    path: Path, package: Path, handles: frozenset[str]
) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    # Local names bound to data-layer modules: `from gembatch.store import tracker`.
    store_modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gembatch.store"):
            store_modules.update(alias.asname or alias.name for alias in node.names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in DATA_LAYER_ONLY_CALLS:
            # Called or not: `make = store.sessions; make()` is the same door.
            yield node.lineno, f"opens a database session (.{node.attr}) outside the data layer"
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "engine"
            and _dotted(node) != "gembatch.engine"
        ):
            # Store.engine is SQLAlchemy's: connect() on it is SQL by another door.
            yield node.lineno, "reaches the database engine (.engine) outside the data layer"
        if isinstance(node, ast.Attribute) and node.attr in handles:
            dotted = _dotted(node) or ""
            if dotted.startswith("gembatch.store.") or dotted.split(".")[0] in store_modules:
                yield node.lineno, f"uses {node.attr} of the data layer (a SQLAlchemy handle)"
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in DATA_LAYER_ONLY_CALLS | {"engine"}
        ):
            yield node.lineno, f"opens a database session ({node.args[1].value}) by getattr"
    for item in imports_of(path, package):
        if _within(item.module, DATA_LAYER_ONLY_MODULE):
            yield item.line, "imports the ORM models outside the data layer"
        elif _within(item.module, "gembatch.store") and item.module.rsplit(".", 1)[-1] in handles:
            name = item.module.rsplit(".", 1)[-1]
            yield item.line, f"imports {name} from the data layer (a SQLAlchemy handle)"


def _line_count(path: Path) -> int:
    # Lines as an editor shows them: a last line without its newline counts too.
    return len(path.read_text(encoding="utf-8").splitlines())


def violations(package: Path, handles: frozenset[str] | None = None) -> list[str]:
    found: list[str] = []
    if handles is None:
        handles = data_layer_handles(package)
    for path in sorted(package.rglob("*.py")):
        shown = f"gembatch/{path.relative_to(package).as_posix()}"
        part = part_of(path, package)
        lines = _line_count(path)
        if lines > MAX_LINES:
            found.append(f"{shown}: {lines} lines (at most {MAX_LINES})")
        allowed = MAY_IMPORT.get(part)
        if allowed is None:
            found.append(f"{shown}: in no known part (add it to docs/architecture.md)")
            continue
        if part == "commands" or shown in EMULATOR_USERS:
            allowed = allowed | {"emulator"} if shown in EMULATOR_USERS else allowed
        if part != "store":
            uses = _data_layer_uses(path, package, handles)
            found.extend(f"{shown}:{line}: {what}" for line, what in uses)
        for item in imports_of(path, package):
            for library in NEVER[part]:
                if _within(item.module, library):
                    found.append(f"{shown}:{item.line}: the {part or 'top'} part imports {library}")
            if _within(item.module, "gembatch"):
                pieces = item.module.split(".")
                target = pieces[1] if len(pieces) > 1 else ""
                if target in {"__version__", "__main__", "cli"}:
                    target = ""
                if target not in PARTS and target != "":
                    continue  # a name imported from a package, e.g. `from gembatch import x`
                if target not in allowed:
                    found.append(
                        f"{shown}:{item.line}: the {part or 'top'} part imports "
                        f"gembatch.{target} ({item.module})"
                    )
    return sorted(set(found))


def test_the_package_keeps_its_layout_rules() -> None:
    assert violations(PACKAGE) == []


def test_migrations_stay_small_and_use_only_the_data_layer() -> None:
    for path in sorted((ROOT / "migrations").rglob("*.py")):
        assert _line_count(path) <= MAX_LINES, path
        for item in imports_of(path, ROOT / "migrations"):
            if _within(item.module, "gembatch"):
                assert _within(item.module, "gembatch.store") or _within(
                    item.module, "gembatch.common"
                ), f"{path.name}:{item.line} imports {item.module}"


def test_the_migration_template_imports_modules_that_exist() -> None:
    # A new revision is rendered from it, and every command runs migrations on
    # open: a stale import there would break the whole tool, not one test.
    template = (ROOT / "migrations" / "script.py.mako").read_text(encoding="utf-8")
    named = re.findall(r"^(?:from|import) (gembatch[\w.]*)", template, flags=re.M)
    assert named, "the template no longer imports the models; drop this test"
    for module in named:
        assert importlib.util.find_spec(module) is not None, module


def test_every_folder_is_a_documented_part() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("_")}
    folders.discard("__pycache__")
    assert folders == set(PARTS)
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for part in PARTS:
        assert f"`gembatch/{part}/`" in text, part


def test_every_module_is_on_the_map() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py" and "/" in relative:
            continue  # a folder's docstring; the folder itself is on the map
        assert f"`{relative}`" in text, f"docs/architecture.md does not list gembatch/{relative}"


def import_cycles(package: Path, skip_parts: frozenset[str] = frozenset()) -> list[str]:
    """Modules that import each other, directly or round a loop (imports under
    TYPE_CHECKING count: they are the same coupling, only hidden)."""
    modules: dict[str, Path] = {}
    for path in package.rglob("*.py"):
        if part_of(path, package) in skip_parts:
            continue
        parts = path.relative_to(package).with_suffix("").parts
        modules[".".join(["gembatch", *parts]).removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for item in imports_of(path, package):
            target = item.module
            while target and target not in modules:
                target = target.rpartition(".")[0]
            # A module's own package (its __init__) is not a dependency on a sibling.
            if target and target != name and not name.startswith(target + "."):
                deps.add(target)
        graph[name] = deps
    found: set[str] = set()
    for start in sorted(graph):
        stack = [(start, [start])]
        seen = {start}
        while stack:
            node, path = stack.pop()
            for dep in sorted(graph[node]):
                if dep == start:
                    loop = path[path.index(min(path)) :] + path[: path.index(min(path))]
                    found.add(" -> ".join(loop))
                elif dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*path, dep]))
    return sorted(found)


def test_no_two_client_modules_import_each_other() -> None:
    # The emulator is a server of its own; its HTTP handler refers back to its
    # handle for typing only.
    assert import_cycles(PACKAGE, frozenset({"emulator"})) == []


def test_the_cycle_check_sees_a_loop_hidden_under_type_checking(tmp_path: Path) -> None:
    package = tmp_path / "gembatch"
    (package / "engine").mkdir(parents=True)
    (package / "engine" / "a.py").write_text("from gembatch.engine.b import B\n")
    (package / "engine" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gembatch.engine.a import A\n"
    )
    assert import_cycles(package) == ["gembatch.engine.a -> gembatch.engine.b"]


def test_the_map_lists_no_module_that_is_gone() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    tree = text[text.index("## The tree") :]
    listed = re.findall(r"^- `([\w/]+\.py)` —", tree, flags=re.M)
    assert len(listed) > 50, "the map's line format changed; update this test"
    for relative in listed:
        assert (PACKAGE / relative).is_file(), f"docs/architecture.md lists gembatch/{relative}"


@pytest.mark.parametrize(
    ("where", "source", "expected"),
    [
        ("engine/x.py", "import sqlalchemy\n", "the engine part imports sqlalchemy"),
        ("view/x.py", "from gembatch.remote import client\n", "imports gembatch.remote"),
        ("jobinfo/x.py", "from google import genai\n", "imports google.genai"),
        ("engine/x.py", "def f():\n    import rich.console\n", "imports rich"),
        ("store/x.py", "from . import y\nimport click\n", "imports click"),
        ("report/x.py", "from gembatch.remote.client import Gemini\n", "gembatch.remote"),
        ("remote/x.py", "from sqlalchemy.orm import Session\n", "imports sqlalchemy"),
        ("engine/x.py", "from gembatch.emulator import Emulator\n", "gembatch.emulator"),
        ("emulator/x.py", "from gembatch.common import states\n", "gembatch.common"),
        ("store/x.py", "from ..engine import poller\n", "gembatch.engine"),
        ("common/x.py", "x = 1\n" * (MAX_LINES + 1), f"{MAX_LINES + 1} lines"),
        ("report/x.py", "from gembatch.store.models import Job\n", "ORM models"),
        ("report/x.py", "from ..store.models import Job\n", "ORM models"),
        ("engine/x.py", "from ..store import models\n", "ORM models"),
        ("engine/x.py", "def f(store):\n    with store.transaction():\n        pass\n", "session"),
        ("view/x.py", "def f(store):\n    return store.reading()\n", "session"),
        ("report/x.py", "def f(store):\n    return store.engine.connect()\n", "(.engine)"),
        ("engine/x.py", "import sqlite3\n", "the engine part imports sqlite3"),
        ("view/x.py", "import psycopg\n", "the view part imports psycopg"),
        ("commands/x.py", "from gembatch.store.database import make_engine\n", "make_engine"),
        ("engine/x.py", "from gembatch.store.tracker import Job\n", "imports Job"),
        ("engine/x.py", "from gembatch.store import tracker\nx = tracker.Job\n", "uses Job"),
        ("engine/x.py", "import gembatch.store.models\n", "ORM models"),
        ("engine/x.py", "import importlib\nimportlib.import_module('rich.console')\n", "rich"),
        ("engine/x.py", "x = __import__('google.genai')\n", "google.genai"),
        ("view/x.py", "def f(store):\n    make = store.sessions\n", "session"),
        ("view/x.py", "def f(store):\n    return getattr(store, 'transaction')\n", "getattr"),
        ("common/x.py", "x = 1\n" * MAX_LINES + "y = 2", f"{MAX_LINES + 1} lines"),
    ],
)
def test_the_checker_catches_each_kind_of_break(
    tmp_path: Path, where: str, source: str, expected: str
) -> None:
    package = tmp_path / "gembatch"
    module = package / where
    module.parent.mkdir(parents=True)
    (module.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    module.write_text(source)
    # The fake tree has no data layer of its own: the real one's handles apply.
    found = violations(package, data_layer_handles(PACKAGE))
    assert any(expected in line for line in found), found


def test_the_demo_may_start_the_emulator(tmp_path: Path) -> None:
    package = tmp_path / "gembatch"
    (package / "engine").mkdir(parents=True)
    (package / "engine" / "demo.py").write_text("from gembatch.emulator import Emulator\n")
    assert violations(package) == []
