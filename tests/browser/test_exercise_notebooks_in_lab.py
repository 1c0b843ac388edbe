"""The exercise notebooks as a student sees them, on the reference solutions: in JupyterLab
the streamed answer of notebook 08 grows in its cell while the stream runs, and both
notebooks run to a full score without an error.

Screenshots are saved under each test's `tmp_path` (with `--basetemp=DIR`, in
DIR/<test name>0/).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Lab, cell_errors, open_notebook, run_all_cells, unrun_cells

pytestmark = pytest.mark.browser

WATCH_DEMO_CELL = """() => {
    const cell = [...document.querySelectorAll('.jp-CodeCell')]
        .find(c => c.querySelector('.jp-InputArea').textContent.includes('"demo-1"'));
    window.__lengths = [];
    new MutationObserver(() => window.__lengths.push(
        cell.querySelector('.jp-OutputArea').textContent.length))
        .observe(cell, {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture(autouse=True)
def solutions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The kernel (started by the lab server, which inherits this) loads solutions/."""
    monkeypatch.setenv("CHATROOM_ASYNC_IMPL", "solutions")
    yield


def test_the_answer_streams_into_the_cell_and_the_grader_gives_full_marks(
        jupyter_lab: Lab, lab_page: Any, tmp_path: Path) -> None:
    page = lab_page
    open_notebook(page, jupyter_lab, "notebooks/08_exercise_streaming.ipynb")
    page.evaluate(WATCH_DEMO_CELL)
    run_all_cells(page, timeout_s=180)
    errors = cell_errors(page)
    assert errors == [], errors[0][-2000:] if errors else ""
    assert unrun_cells(page) == 0
    lengths = page.evaluate("window.__lengths")
    growing = sorted({n for n in lengths if n > 0})
    assert len(growing) >= 10, f"the answer appeared in {len(growing)} steps: {growing}"
    demo = page.locator(".jp-OutputArea-output").filter(has_text="任务状态: completed")
    demo.first.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "08-streamed-answer.png"))
    score = page.locator(".jp-OutputArea-output").filter(has_text="总分 100/100")
    score.first.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "08-grader.png"))


def test_the_scheduling_notebook_runs_to_full_marks(jupyter_lab: Lab, lab_page: Any,
                                                    tmp_path: Path) -> None:
    page = lab_page
    open_notebook(page, jupyter_lab, "notebooks/09_exercise_scheduling.ipynb")
    run_all_cells(page, timeout_s=240)
    errors = cell_errors(page)
    assert errors == [], errors[0][-2000:] if errors else ""
    score = page.locator(".jp-OutputArea-output").filter(has_text="总分 100/100")
    assert score.count() == 1
    score.first.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "09-grader.png"))
