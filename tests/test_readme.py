"""Every Python example in the README runs."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), flags=re.S)


def test_readme_has_examples() -> None:
    assert python_blocks()


def test_readme_python_examples_run() -> None:
    for block in python_blocks():
        done = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert "completed" in done.stdout


def blocks(language: str) -> list[list[str]]:
    """The lines of every fenced block in `language` ("" for a plain block)."""
    found = re.findall(r"^```(\w*)\n(.*?)^```", README.read_text("utf-8"), flags=re.S | re.M)
    return [body.strip().splitlines() for lang, body in found if lang == language]


def test_the_first_command_opens_the_notebooks_and_the_second_runs_every_test() -> None:
    """The student's quick start comes first; scripts/lab.sh itself is run by
    tests/browser/test_lab_script.py, and scripts/test.sh is this suite."""
    text = README.read_text("utf-8")
    assert text.index("## 学生快速上手") < text.index("## Quick start (library)")
    assert blocks("bash")[0] == ["bash scripts/lab.sh", "bash scripts/test.sh"]
    lab = (ROOT / "scripts/lab.sh").read_text("utf-8")
    assert "setup.sh notebooks" in lab and "notebooks/00_start_here.ipynb" in lab
    test = (ROOT / "scripts/test.sh").read_text("utf-8")
    assert "--nbval-lax" in test and "notebooks/*.ipynb" in test


def test_every_script_the_readme_names_exists() -> None:
    named = set(re.findall(r"bash (scripts/\w+\.sh)", README.read_text("utf-8")))
    assert {"scripts/lab.sh", "scripts/test.sh", "scripts/demo.sh"} <= named
    assert all((ROOT / path).is_file() for path in named)


def test_the_plain_commands_do_what_lab_sh_does() -> None:
    """Windows and macOS without bash: venv, the notebooks extra, JupyterLab on 00."""
    windows, macos = blocks("")[:2]
    assert windows == ["python -m venv .venv", '.venv\\Scripts\\pip install -e ".[notebooks]"',
                       ".venv\\Scripts\\jupyter lab notebooks/00_start_here.ipynb"]
    assert macos == ["python3 -m venv .venv", '.venv/bin/pip install -e ".[notebooks]"',
                     ".venv/bin/jupyter lab notebooks/00_start_here.ipynb"]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))[
        "project"]["optional-dependencies"]
    wanted = {re.split(r"[<>=\[]", dep)[0] for dep in extras["notebooks"]}
    assert wanted == {"jupyterlab", "ipywidgets", "matplotlib", "pytest"}  # pytest: the grader
    assert (ROOT / "notebooks/00_start_here.ipynb").is_file()
