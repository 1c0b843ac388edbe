"""The package's imports point one way, and `__all__` is exactly the public API.

Layers, bottom up (README, "The package"):
- the core: the chapter's pure concepts, flat at the top; they import only each other;
- `store/`: the Redis layer; it imports only the core;
- `simulated/`: the simulated LLM API; it imports only the core;
- `events`: the core plus nothing of `store/` or `worker/`;
- `worker/`: one process's pool (core, store, events);
- `stats`, `processor`: the facade and what it assembles;
- `simulation/`, `cli`, `demo`: drive the processor, never `store/` or `worker/`; `cli`
  also registers the edges' subcommands (`providers/`);
- any other subpackage is an edge (dashboards, the chat room, the grader, providers): it
  imports only the public API.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import chatroom_async

PKG = Path(chatroom_async.__file__).parent

CORE = {"task", "errors", "validation", "retry", "scheduler", "backend", "clock", "settings",
        "metrics", "queueing"}
#: What an edge may import: the package root and the public subpackages' roots.
PUBLIC = {"", "simulated", "simulation", "queueing"}
#: Which top-level parts each part may import (besides itself).
ALLOWED = {
    "core": {"core"},
    "store": {"core"},
    "simulated": {"core"},
    "events": {"core"},
    "worker": {"core"} | {"store", "events"},
    "stats": {"core"} | {"store"},
    "processor": {"core"} | {"store", "worker", "events", "stats"},
    "simulation": {"core"} | {"processor", "simulated", "events", "stats"},
    # dashboard: `simulate --plot`; chat: `serve` (edges, imported only when asked for)
    "cli": {"core"} | {"processor", "simulated", "simulation", "demo", "events", "providers",
                       "cli_errors", "eventloop", "grading", "dashboard", "chat"},
    "cli_errors": {"core"},
    "eventloop": {"core"},  # the worker command's --loop; the package never calls it
    "demo": {"core"} | {"processor", "simulated", "events"},
    "__init__": {"core"} | {"processor", "simulated", "simulation", "events", "stats"},
    "__main__": {"cli"},
}
#: The only parts that may import `store/` (the issue's rule, checked on its own too).
STORE_USERS = {"store", "worker", "processor", "stats"}


def _part(module: str) -> str:
    """'store.queue' -> 'store'; 'task' -> 'core'; 'processor' -> 'processor'."""
    head = module.split(".")[0]
    return "core" if head in CORE else head


def _member(package: str, name: str) -> str:
    """`from <package> import name`: the module `name` if there is one, else the package
    (`from chatroom_async import AsyncAIProcessor` imports the root, the public API)."""
    folder = PKG.joinpath(*package.split(".")) if package else PKG
    if (folder / f"{name}.py").exists() or (folder / name / "__init__.py").exists():
        return ".".join(filter(None, [package, name]))
    return package


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module under chatroom_async) for every import of the package."""
    tree = ast.parse(path.read_text("utf-8"))
    package = _package_of(path, module)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.split(".")[0] == "chatroom_async":
                target = node.module.removeprefix("chatroom_async").lstrip(".")
            else:
                continue
            if node.module is None or target == "":  # `from . import x`: x may be a module
                found += [(node.lineno, _member(target, a.name)) for a in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.removeprefix("chatroom_async").lstrip("."))
                      for a in node.names if a.name.split(".")[0] == "chatroom_async"]
    return found


def _package_of(path: Path, module: str) -> list[str]:
    """The package a module's relative imports start from."""
    if path.is_relative_to(PKG):
        return list(path.relative_to(PKG).parent.parts)
    return module.split(".")[:-1]  # a probe file outside the package


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1] or ["__init__"]
        out.append((".".join(parts), path))
    return out


def _violations() -> list[str]:
    bad = []
    for module, path in _modules():
        part = _part(module)
        for line, target in _imports(path, module):
            tpart = _part(target) if target else ""
            where = f"{path.relative_to(PKG.parent)}:{line} imports chatroom_async.{target}"
            if tpart == part:
                continue
            if part not in ALLOWED:  # an edge
                if target in chatroom_async.__all__:  # `from chatroom_async import Name`
                    continue
                top = target.split(".")[0] if "." in target and target.split(".")[0] in (
                    "simulated", "simulation") else target
                if top not in PUBLIC and target not in PUBLIC:
                    bad.append(f"{where}: an edge imports only the public API")
                continue
            if tpart == "store" and part not in STORE_USERS:
                bad.append(f"{where}: only the processor, worker/ and stats use store/")
            elif tpart not in ALLOWED[part]:
                bad.append(f"{where}: {part} may not import {tpart}")
    return bad


def test_imports_point_one_way() -> None:
    assert _violations() == []


def test_the_checker_sees_a_wrong_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The checker itself must be able to fail: resolve a few imports the wrong way round.
    probe = tmp_path / "queue.py"
    probe.write_text("from ..processor import AsyncAIProcessor\nfrom .keys import Keys\n")
    assert _imports(probe, "store.queue") == [(1, "processor"), (2, "store.keys")]
    edge = tmp_path / "board.py"
    edge.write_text("from .. import AsyncAIProcessor\nfrom ..store.queue import TaskQueue\n"
                    "from ..simulation import simulate\n")
    # A name imported from the root is the root (the public API), not a module of that name.
    assert _imports(edge, "dashboard.board") == [(1, ""), (2, "store.queue"), (3, "simulation")]
    assert _part("store.queue") == "store" and _part("task") == "core"


def test_all_lists_exactly_the_public_names() -> None:
    exported = set(chatroom_async.__all__)
    assert len(exported) == len(chatroom_async.__all__), "a name is listed twice"
    defined = {name for name in vars(chatroom_async) if not name.startswith("_")}
    submodules = {m.name for m in pkgutil.iter_modules(chatroom_async.__path__)}
    assert exported - defined == set(), "listed but not importable"
    assert defined - submodules - exported == set(), "importable but not listed"
    for name in exported:
        assert getattr(chatroom_async, name) is not None


@pytest.mark.parametrize("module", ["chatroom_async.simulated", "chatroom_async.simulation"])
def test_public_subpackages_export_what_they_list(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) <= set(vars(mod))


def test_every_error_type_a_record_can_carry_is_in_the_error_tree() -> None:
    # Lua writes error types as text: each name it writes must be a class of errors.py.
    import re

    from chatroom_async import errors

    lua = "".join(p.read_text("utf-8") for p in (PKG / "store" / "lua").glob("*.lua"))
    python = "".join(p.read_text("utf-8") for p in PKG.rglob("*.py"))
    named = set(re.findall(r'error_type\\?"\s*:\s*\\?"(\w+)', lua + python))
    assert named, "the pattern no longer finds the error types written as text"
    for name in named:
        assert issubclass(getattr(errors, name, type(None)), errors.ChatroomAsyncError), name
