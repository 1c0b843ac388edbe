"""The notebooks as committed: no outputs but the checked ones, the course's shape, and the
logic of `scripts/notebooks.py` that keeps them so."""

from __future__ import annotations

import copy
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from scripts import notebooks as nbtool

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def load_env_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("env_check", ROOT / "notebooks/env_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("env_check", module)
    spec.loader.exec_module(module)
    return module


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    """`python scripts/notebooks.py ARGS` (a kernel is a subprocess with sockets: running it
    in the test process would leave ResourceWarnings behind)."""
    return subprocess.run([sys.executable, str(ROOT / "scripts/notebooks.py"), *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_there_are_notebooks() -> None:
    """`NN_name.ipynb`, starting at the one the README opens."""
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00_start_here.ipynb"
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", p.name) for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_but_the_checked_ones(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nbtool.problems(nb) == [], f"run `python scripts/notebooks.py refresh {path}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_shape_of_a_lesson(path: Path) -> None:
    """Goals first, key points and questions last, python3 kernel, top-level await only."""
    nb = nbformat.read(path, as_version=4)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert "## 🎯 学习目标" in markdown[0] and "分钟" in markdown[0]
    assert markdown[-2].startswith("## 📌 要点") and markdown[-1].startswith("## 🤔 思考题")
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "asyncio.run(" not in code


def sample() -> nbformat.NotebookNode:
    checked = new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)", execution_count=3,
                            outputs=[new_output("stream", name="stdout", text="1\n")])
    result = new_output("execute_result", data={"text/plain": "2"}, execution_count=4)
    plain = new_code_cell("1 + 1", execution_count=4, outputs=[result],
                          metadata={"execution": {"iopub.status.busy": "2026-12-06"},
                                    "tags": ["keep"]})
    nb = new_notebook(cells=[new_markdown_cell("# t"), checked, plain],
                      metadata={"widgets": {"state": {}}, "kernelspec": {
                          "name": "python3", "display_name": "P", "language": "python"}})
    return nb


def test_problems_name_each_cell_and_what_is_wrong() -> None:
    found = nbtool.problems(sample())
    assert "cell 2: a checked cell's execution count must be 1" in found
    assert "cell 3: execution count 4 is stored" in found
    assert any(line.startswith("cell 3: has 1 output(s)") for line in found)
    assert not any(line.startswith("cell 2: has") for line in found)  # a check cell may


def test_clean_keeps_only_checked_outputs_and_is_then_clean() -> None:
    nb = sample()
    before = copy.deepcopy(nb)
    cleaned = nbtool.clean(nb)
    assert nb == before  # the input is not changed
    checked, plain = cleaned.cells[1], cleaned.cells[2]
    assert checked.outputs[0]["text"] == "1\n" and checked.execution_count == 1
    assert plain.outputs == [] and plain.execution_count is None
    assert plain.metadata == {"tags": ["keep"]}
    assert "widgets" not in cleaned.metadata
    assert nbtool.problems(cleaned) == []
    assert nbtool.clean(cleaned) == cleaned


def test_a_check_cell_without_output_or_with_an_error_is_reported() -> None:
    nb = nbtool.clean(sample())
    nb.cells[1].outputs = []
    nb.cells[1].execution_count = None
    assert nbtool.problems(nb) == ["cell 2: a # NBVAL_CHECK_OUTPUT cell with no stored "
                                   "output checks nothing"]
    nb.cells[1].execution_count = 1
    nb.cells[1].outputs = [new_output("error", ename="E", evalue="x", traceback=[])]
    assert nbtool.problems(nb) == ["cell 2: its stored output is an error"]


def test_editor_metadata_alone_is_a_problem() -> None:
    nb = nbtool.clean(sample())
    nb.metadata["language_info"]["version"] = "3.11.7"
    assert nbtool.problems(nb) == [
        "editor metadata is stored (execution times, widget state, versions...)"]


def test_check_command_exits_1_with_one_line_per_problem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dirty, clean = tmp_path / "dirty.ipynb", tmp_path / "clean.ipynb"
    nbformat.write(sample(), dirty)
    nbtool.write(clean, nbtool.clean(sample()))
    assert nbtool.main(["check", str(clean)]) == 0
    assert nbtool.main(["check", str(clean), str(dirty)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith(f"{dirty}: cell ") for line in err)
    assert nbtool.main(["strip", str(dirty)]) == 0
    assert nbtool.main(["check", str(dirty)]) == 0
    assert nbtool.main(["check", str(tmp_path / "missing.ipynb")]) == 1


def test_refresh_runs_the_notebook_and_keeps_only_checked_outputs(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    nb = new_notebook(cells=[new_code_cell("import asyncio\nx = await asyncio.sleep(0, 21)"),
                             new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(x * 2)"),
                             new_code_cell("x")],
                      metadata={"kernelspec": {"name": "python3", "display_name": "P",
                                               "language": "python"}})
    nbformat.write(nb, path)
    assert run_script("refresh", str(path)).returncode == 0
    done = nbformat.read(path, as_version=4)
    assert [c.outputs for c in done.cells][0] == []
    assert done.cells[1].outputs[0]["text"] == "42\n" and done.cells[1].execution_count == 2
    assert done.cells[2].outputs == []
    assert nbtool.problems(done) == []


def test_refresh_of_a_failing_notebook_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nb.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("1 / 0")]), path)
    before = path.read_bytes()
    done = run_script("refresh", str(path))
    assert done.returncode == 1
    assert f"{path}: a cell failed, nothing written: ZeroDivisionError" in done.stderr
    assert path.read_bytes() == before


def test_env_check_says_what_is_missing_and_how_to_fix_it() -> None:
    env_check = load_env_check()
    versions = {"python": "3.11.7", "chatroom_async": "0.1.0", "fakeredis": "2.41.0",
                "lupa": "2.8", "jupyterlab": "4.0.9", "ipywidgets": None, "matplotlib": "3.9"}
    rows = env_check.check_environment(versions.get, show=False)
    bad = {r.requirement.name for r in rows if not r.ok}
    assert bad == {"jupyterlab", "ipywidgets"}
    text = env_check.report(rows)
    assert "❌ jupyterlab 4.0.9 版本太旧（需要 ≥ 4.1）" in text
    assert "❌ 缺少 ipywidgets" in text
    assert "还缺 2 项：jupyterlab, ipywidgets。" in text
    assert 'pip install -e ".[notebooks]"' in text


def test_env_check_passes_here() -> None:
    env_check = load_env_check()
    rows = env_check.check_environment(show=False)
    assert all(r.ok for r in rows), env_check.report(rows)
    assert "环境完整" in env_check.report(rows)


@pytest.mark.parametrize(("text", "parsed"), [("4.6.6", (4, 6, 6)), ("2.8rc1", (2, 8)),
                                              ("3.11", (3, 11)), ("dev", ())])
def test_env_check_reads_versions(text: str, parsed: tuple[int, ...]) -> None:
    assert load_env_check().parse_version(text) == parsed


def mermaid(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)]


def notebook_markdown(name: str) -> str:
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def test_the_chapter_diagrams_are_mirrored_in_docs() -> None:
    """docs/diagrams.md (GitHub renders it) holds the same two diagrams as the notebooks."""
    architecture, sequence = mermaid((ROOT / "docs/diagrams.md").read_text("utf-8"))
    assert architecture.startswith("graph TB") and "负载均衡<br/>Load Balancer" in architecture
    assert sequence.startswith("sequenceDiagram") and "推送错误" in sequence
    assert mermaid(notebook_markdown("01_architecture.ipynb")) == [architecture, sequence]
    assert mermaid(notebook_markdown("02_sequence.ipynb")) == [sequence]


def test_the_modules_01_names_for_each_box_exist() -> None:
    """01_architecture maps each box of the diagram to files; they must stay real."""
    text = notebook_markdown("01_architecture.ipynb")
    table = text[text.index("| 方框 | 模块"):]
    table = table[:table.index("\n\n")]
    named = set(re.findall(r"`([\w/]+(?:\.py|/)|store/lua/\*\.lua)`", table))
    named.discard("chatroom_async/")  # the header: "模块（`chatroom_async/` 下）"
    assert len(named) >= 14
    for path in named:
        assert list((ROOT / "chatroom_async").glob(path.rstrip("/"))), path
