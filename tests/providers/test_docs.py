"""The runnable examples of docs/providers.md run (those that need no real provider)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("uvicorn")

DOC = Path(__file__).resolve().parents[2] / "docs" / "providers.md"


def test_the_sim_server_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), flags=re.S)
    [block] = [b for b in blocks if "SimServer(" in b]
    imports = "".join(line + "\n" for line in block.splitlines() if line.startswith(
        ("import ", "from ")))
    body = "".join(line + "\n" for line in block.splitlines() if not line.startswith(
        ("import ", "from ")))
    program = (f"import asyncio\n{imports}\nasync def main():\n{textwrap.indent(body, '    ')}"
               "\nasyncio.run(main())\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "429 1302" in done.stdout and "error {" in done.stdout
