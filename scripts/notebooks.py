"""Keep the committed notebooks in their committed state: no outputs but the checked ones.

A notebook is committed without outputs and without execution counts, except the cells
whose first line is `# NBVAL_CHECK_OUTPUT`: their stored outputs are what nbval compares
a fresh run against (with the execution count a run from the top gives them: nbval
refuses stored outputs of a cell without one). This script is the one way to get there:

    python scripts/notebooks.py refresh notebooks/01_architecture.ipynb   # run, then strip
    python scripts/notebooks.py strip notebooks/01_architecture.ipynb     # strip, no run
    python scripts/notebooks.py check                                     # exit 1 if not clean

`refresh` executes the notebook in place with nbclient on this interpreter's kernel (like
nbval's `--nbval-current-env`), then keeps only the outputs of check cells and drops the
other execution counts and editor metadata. `check` changes nothing;
tests/test_notebook_files.py runs the same check, so CI fails on a notebook committed
with outputs.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
#: Cell metadata worth keeping (nbval reads tags such as `raises-exception`); the rest
#: (execution timings, collapsed/scrolled state) changes on every save.
CELL_METADATA_KEPT = ("tags", "editable", "deletable")
#: The notebook metadata every notebook carries, whatever the editor wrote.
NOTEBOOK_METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def is_check_cell(cell: Any) -> bool:
    """Whether `cell` is a code cell whose first line is the check mark."""
    if cell.get("cell_type") != "code":
        return False
    lines = "".join(cell.get("source", "")).lstrip().splitlines()
    return bool(lines) and lines[0].strip() == CHECK_MARK


def expected_count(nb: Any, index: int) -> int | None:
    """The execution count cell `index` keeps: None, except for a check cell with outputs
    (nbval refuses stored outputs of a cell that never ran), which keeps its place among
    the code cells, the count a run from the top gives it."""
    cell = nb["cells"][index]
    if not (is_check_cell(cell) and cell.get("outputs")):
        return None
    return sum(1 for c in nb["cells"][:index + 1] if c["cell_type"] == "code")


def clean(nb: Any) -> Any:
    """A copy of `nb` in its committed form: only check cells keep outputs and counts."""
    nb = copy.deepcopy(nb)
    nb["metadata"] = copy.deepcopy(NOTEBOOK_METADATA)
    for cell in nb["cells"]:
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items()
                            if k in CELL_METADATA_KEPT}
        if cell["cell_type"] != "code":
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
        elif not is_check_cell(cell):
            cell["outputs"] = []
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            count = cell["execution_count"] = expected_count(nb, index)
            cell["outputs"] = [_clean_output(o, count) for o in cell["outputs"]]
    return nb


def _clean_output(output: Any, count: int | None) -> Any:
    output = copy.deepcopy(output)
    if "execution_count" in output:
        output["execution_count"] = count
    if "metadata" in output:
        output["metadata"] = {}
    return output


def problems(nb: Any) -> list[str]:
    """What keeps `nb` from its committed form, one line each; empty when it is clean."""
    found: list[str] = []
    for n, cell in enumerate(nb["cells"], start=1):
        if cell["cell_type"] != "code":
            continue
        check = is_check_cell(cell)
        count, wanted = cell.get("execution_count"), expected_count(nb, n - 1)
        if count != wanted:
            found.append(f"cell {n}: execution count {count} is stored" if wanted is None
                         else f"cell {n}: a checked cell's execution count must be {wanted}")
        if cell.get("outputs") and not check:
            found.append(f"cell {n}: has {len(cell['outputs'])} output(s), but only "
                         f"{CHECK_MARK} cells keep theirs")
        if check and not cell.get("outputs"):
            found.append(f"cell {n}: a {CHECK_MARK} cell with no stored output checks nothing")
        if check and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            found.append(f"cell {n}: its stored output is an error")
        if any(o.get("execution_count") not in (None, wanted) for o in cell.get("outputs", [])):
            found.append(f"cell {n}: an output stores another execution count")
    if not found and clean(nb) != nb:
        found.append("editor metadata is stored (execution times, widget state, versions...)")
    return found


def execute(nb: Any, cwd: Path, timeout_s: float) -> None:
    """Run every cell of `nb` in place, on a kernel of this interpreter's environment."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    class CurrentEnv(KernelSpecManager):  # type: ignore[misc]
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f",
                                    "{connection_file}"], display_name="Python 3",
                              language="python")

    km = KernelManager(kernel_name="python3", kernel_spec_manager=CurrentEnv())
    NotebookClient(nb, km=km, timeout=int(timeout_s),
                   resources={"metadata": {"path": str(cwd)}}).execute()


def refresh(path: Path, timeout_s: float = 120.0) -> float:
    """Execute the notebook at `path`, clean it, write it back; returns the seconds it ran.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised; nothing is written.
    """
    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    execute(nb, path.parent, timeout_s)
    elapsed = time.perf_counter() - started
    write(path, clean(nb))
    return elapsed


def write(path: Path, nb: Any) -> None:
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")


def notebook_paths(given: list[str]) -> list[Path]:
    """The notebooks named, or every `notebooks/*.ipynb`."""
    return [Path(p) for p in given] if given else sorted(NOTEBOOKS.glob("*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("refresh", "run each notebook, then keep only check cells' outputs"),
                       ("strip", "keep only check cells' outputs, without running"),
                       ("check", "exit 1 if a notebook is not in its committed form")):
        p = sub.add_parser(name, help=text)
        p.add_argument("notebooks", nargs="*", help="default: notebooks/*.ipynb")
        if name == "refresh":
            p.add_argument("--timeout", type=float, default=120.0, help="per cell, seconds")
    args = parser.parse_args(argv)
    failed = 0
    for path in notebook_paths(args.notebooks):
        failed += _one(args, path)
    return 1 if failed else 0


def _one(args: argparse.Namespace, path: Path) -> int:
    """Run the command on one notebook; returns 1 if it failed."""
    if not path.is_file():
        print(f"{path}: no such notebook", file=sys.stderr)
        return 1
    if args.command == "check":
        found = problems(nbformat.read(path, as_version=4))
        for line in found:
            print(f"{path}: {line}; run `python scripts/notebooks.py refresh {path}`",
                  file=sys.stderr)
        return 1 if found else 0
    if args.command == "strip":
        write(path, clean(nbformat.read(path, as_version=4)))
        return 0
    from nbclient.exceptions import CellExecutionError

    try:
        elapsed = refresh(path, args.timeout)
    except CellExecutionError as exc:
        print(f"{path}: a cell failed, nothing written: {exc.ename}: {exc.evalue}",
              file=sys.stderr)
        return 1
    print(f"{path}: ran in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
