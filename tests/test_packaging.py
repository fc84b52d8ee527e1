"""The wheel carries its migrations and works outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO.parent / "shared" / "fixtures" / "job-info" / "v0.3-counted.jsonl"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("gembatch-*.whl")
    return built


def test_wheel_ships_migrations_inside_the_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "gembatch/_migrations/env.py" in names
    assert any(n.startswith("gembatch/_migrations/versions/0001") for n in names)
    # Never a top-level `migrations` package that would collide in site-packages.
    assert not any(n.startswith("migrations/") for n in names)


@pytest.mark.slow
def test_installed_wheel_creates_and_migrates_a_database(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # The test environment already holds the dependencies; only gembatch itself is
    # installed fresh, from the wheel, so the check is about what the wheel carries.
    # A plain path line (unlike site.addsitedir) does not run the parent's .pth
    # files, so an editable gembatch there stays invisible.
    child_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(child_site, "gembatch_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
        check=True,
        capture_output=True,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "job-info.jsonl").write_bytes(FIXTURE.read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GEMBATCH_DB")}

    def gembatch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python), "-m", "gembatch", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    where = subprocess.run(
        [
            str(python),
            "-c",
            "import gembatch, pathlib; print(pathlib.Path(gembatch.__file__).parent)",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(env_dir)), where
    assert (Path(where) / "_migrations" / "env.py").is_file()

    upgraded = gembatch("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert (work / "gembatch.db").is_file()
    imported = gembatch("import")
    assert imported.returncode == 0, imported.stderr
    status = gembatch("status")
    assert status.returncode == 0, status.stderr
    assert "structured-output.jsonl" in status.stdout
