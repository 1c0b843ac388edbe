"""The README's first command, `bash scripts/lab.sh`: it sets up .venv and serves
JupyterLab opening notebooks/00_start_here.ipynb. No browser: the server's "open this
file" page says where a browser would go, and the notebook is served from there (nothing
opens it, so the repository's copy is never written)."""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from pathlib import Path

import pytest

from .conftest import ROOT, start_lab, stop_lab


def test_lab_script_serves_jupyterlab_on_the_first_notebook(tmp_path: Path) -> None:
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("runs scripts/lab.sh, which uses the repository's .venv; these tests "
                    f"run in {sys.prefix}")
    base = tmp_path / "jupyter"
    lab = start_lab(["bash", "scripts/lab.sh"], base=base, root_dir=ROOT)
    try:
        opener = next((base / "runtime").glob("jpserver-file-to-run-*-open.html"))
        target = re.search(r'href="([^"]+)"', opener.read_text("utf-8"))
        assert target is not None
        assert target.group(1).split("?")[0] == (
            f"{lab.base_url}/lab/tree/notebooks/00_start_here.ipynb")
        url = lab.url("api/contents/notebooks/00_start_here.ipynb?content=0")
        with urllib.request.urlopen(url, timeout=10) as reply:
            model = json.load(reply)
        assert model["type"] == "notebook" and model["name"] == "00_start_here.ipynb"
    finally:
        stop_lab(lab)


def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "print('no jupyter here'); raise SystemExit(1)"]
    with pytest.raises(RuntimeError, match="JupyterLab did not start; its log:\n"
                                           "no jupyter here"):
        start_lab(command, base=tmp_path, root_dir=ROOT)
