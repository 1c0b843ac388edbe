"""The wheel holds every subpackage and the Lua scripts, and installing prints no warning."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
         str(ROOT)], capture_output=True, text=True, timeout=300, cwd=out)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (path,) = out.glob("chatroom_async-*.whl")
    return path, done.stdout + done.stderr


def test_the_wheel_holds_the_subpackages_and_the_lua_scripts(wheel: tuple[Path, str]) -> None:
    names = set(zipfile.ZipFile(wheel[0]).namelist())
    lua = {Path(n).name for n in names if n.startswith("chatroom_async/store/lua/")}
    shipped = {p.name for p in (ROOT / "chatroom_async" / "store" / "lua").glob("*.lua")}
    assert lua == shipped and "claim.lua" in lua
    for sub in ("store", "worker", "simulated", "simulation"):
        assert f"chatroom_async/{sub}/__init__.py" in names
    assert "chatroom_async/py.typed" in names


def test_building_prints_no_setuptools_warning(wheel: tuple[Path, str]) -> None:
    log = wheel[1]
    for noise in ("SetuptoolsDeprecationWarning", "is absent from the `packages`",
                  "License classifiers are deprecated", "project.license"):
        assert noise not in log, noise


def test_the_command_line_needs_no_extra() -> None:
    # A plain `pip install chatroom_async` (the demo's setup) has none of the extras: the
    # command must still parse every subcommand (each extra is imported only when used).
    code = (
        "import sys\n"
        "for name in ('pytest', 'matplotlib', 'ipywidgets', 'fastapi', 'uvicorn', 'starlette',"
        " 'openai', 'websockets', 'nbformat', 'jupyterlab'):\n"
        "    sys.modules[name] = None  # importing it raises ImportError\n"
        "from chatroom_async.cli import build_parser\n"
        "parser = build_parser()\n"
        "for argv in (['demo'], ['stats'], ['worker'], ['grade'], ['serve'], ['simulate']):\n"
        "    parser.parse_args(argv)\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
