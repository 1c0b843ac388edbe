"""Every Python example in the README runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


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
