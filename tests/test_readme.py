"""The README's promises stay true: the Quickstart, the CI command, the command list."""

from __future__ import annotations

import re
from pathlib import Path

from gembatch.cli import cli

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def quickstart() -> list[str]:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the Quickstart has no sh code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_is_two_commands_demo_then_tests() -> None:
    commands = quickstart()
    assert len(commands) == 2
    assert commands[0].endswith("gembatch demo")
    assert "pytest" in commands[1] and "[test]" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert quickstart()[1] in ci.splitlines()


def test_every_command_in_the_readme_exists() -> None:
    named = set(re.findall(r"^\| `gembatch ([a-z]+)", README, re.M))
    assert named, "no command table found"
    assert named <= set(cli.commands), named - set(cli.commands)
