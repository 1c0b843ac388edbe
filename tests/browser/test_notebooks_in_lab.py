"""The notebooks as a student sees them: JupyterLab in headless Chromium.

Screenshots are saved under each test's `tmp_path` (with `--basetemp=DIR`, in
DIR/<test name>0/; pytest also prints the folder when a test fails).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import Lab, cell_errors, open_notebook, run_all_cells, unrun_cells

pytestmark = pytest.mark.browser

MERMAID_SVG = ".jp-RenderedMermaid img[src^='data:image/svg+xml']"


def test_architecture_notebook_renders_both_diagrams_and_runs_without_error(
        jupyter_lab: Lab, lab_page: Any, tmp_path: Path) -> None:
    page = lab_page
    open_notebook(page, jupyter_lab, "notebooks/01_architecture.ipynb")
    page.locator(MERMAID_SVG).first.wait_for(timeout=30_000)
    page.screenshot(path=str(tmp_path / "01_architecture-opened.png"))
    run_all_cells(page)
    errors = cell_errors(page)
    assert errors == [], errors[0][-2000:] if errors else ""
    assert unrun_cells(page) == 0
    # The architecture diagram (graph TB) at the top, the sequence diagram near the end.
    diagrams = page.locator(MERMAID_SVG)
    assert diagrams.count() == 2
    kinds = [img.get_attribute("src") or "" for img in diagrams.all()]
    assert "flowchart" in kinds[0] and "sequence" in kinds[1], [k[:200] for k in kinds]
    for n, img in enumerate(diagrams.all()):
        img.scroll_into_view_if_needed()
        box = img.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 200, box
        page.screenshot(path=str(tmp_path / f"01_architecture-diagram-{n + 1}.png"))
    last_check = page.locator(".jp-OutputArea-output").filter(has_text="total: 20")
    last_check.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "01_architecture-ran.png"))
