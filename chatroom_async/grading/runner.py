"""`chatroom-async grade`: run the graded checks in a child pytest process and print the
score table (or JSON).

The child reports each check as it starts and ends, through a pipe. If a check outlives
its time limit (code that swallows the in-process alarm, or hangs in C), the runner kills
the child, charges that check, and starts a new child for the checks left: the grader
never hangs, and it always prints the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Not from .plugin: that imports pytest, and `chatroom-async --help` must work without it.
from .kit import CHECK_LIMIT_S, FD_ENV, IMPL_ENV, IMPLS, ROOT_ENV, find_root

CHECKS_DIR = Path(__file__).parent / "checks"
EXERCISES = {"streaming": "练习1 流式响应处理", "scheduling": "练习2 智能任务调度"}
_START_LIMIT_S = 60.0  # for the child to start and collect


@dataclass
class Grading:
    """What the children reported: the checks, in order, and their outcomes."""

    checks: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def pending(self) -> list[str]:
        return [c["id"] for c in self.checks if c["id"] not in self.outcomes]


def grade(exercises: list[str], impl: str, root: Path) -> Grading:
    """Run the checks of `exercises` against `impl` in the project folder `root`."""
    grading = Grading()
    files = [str(CHECKS_DIR / f"test_{name}.py") for name in exercises]
    while True:
        deselect = [a for i in grading.outcomes for a in ("--deselect", i)]
        finished = _run_child([*files, *deselect], impl, root, grading)
        if finished or not grading.checks or not grading.pending():
            break
    for check_id in grading.pending():  # the child died before reaching these
        grading.outcomes[check_id] = {"status": "error",
                                      "message": "评分进程意外退出，本项没有运行"}
    return grading


def _kill_after(limit_s: float) -> float:
    """Real seconds a check may run before the runner kills its process: the in-process
    limit plus a margin for the alarm's own message."""
    return limit_s * 1.5 + 1.0


def _run_child(args: list[str], impl: str, root: Path, grading: Grading) -> bool:
    """One pytest child; False if it had to be killed (a check outlived its limit)."""
    read_fd, write_fd = os.pipe()
    env = dict(os.environ, **{FD_ENV: str(write_fd), ROOT_ENV: str(root)})
    cmd = [sys.executable, "-m", "pytest", *args, "-q", "--no-header", "-p", "no:cacheprovider",
           "-p", "no:unraisableexception", "-p", "no:asyncio", "-p", "no:timeout", "-p", "no:cov",
           "-p", "chatroom_async.grading.plugin", "-c", str(CHECKS_DIR / "pytest.ini"),
           "--rootdir", str(CHECKS_DIR), "--impl", impl]
    log = tempfile.TemporaryFile()  # a file, not a pipe: pytest's output can be long
    child = subprocess.Popen(cmd, env=env, pass_fds=(write_fd,), cwd=str(root),
                             stdout=log, stderr=subprocess.STDOUT)
    os.close(write_fd)
    killed = False
    current: str | None = None
    deadline = [time.monotonic() + _START_LIMIT_S]  # moved on by each event
    with selectors.DefaultSelector() as sel:
        sel.register(read_fd, selectors.EVENT_READ)
        for event in _events(read_fd, sel, deadline):
            if event is None:  # out of time: the current check hangs
                killed = True
                break
            if event["type"] == "collected" and not grading.checks:
                grading.checks = event["checks"]
            elif event["type"] == "start":
                current = event["id"]
                deadline[0] = time.monotonic() + _kill_after(float(event["limit_s"]))
            elif event["type"] == "result":
                grading.outcomes[event["id"]] = event
                current, deadline[0] = None, time.monotonic() + _START_LIMIT_S
    os.close(read_fd)
    if killed:
        child.kill()
        if current is not None:
            grading.outcomes[current] = {
                "status": "timeout",
                "message": f"超过 {_kill_after(CHECK_LIMIT_S):g} 秒仍未结束，评分进程被终止"
                           "（代码卡死，或吞掉了超时信号）"}
    child.wait()
    log.seek(0)
    grading.log.append(log.read().decode("utf-8", "replace"))
    log.close()
    return not killed


def _events(fd: int, sel: selectors.BaseSelector, deadline: list[float]
            ) -> Iterator[dict[str, Any] | None]:
    """The child's JSON events as they come (unbuffered reads, so that no line waits in a
    buffer the selector cannot see); None when `deadline[0]` passes first; ends at EOF."""
    pending = b""
    while True:
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield json.loads(line)
        if not sel.select(max(0.0, deadline[0] - time.monotonic())):
            yield None
            return
        data = os.read(fd, 65536)
        if not data:
            return
        pending += data


# -- presenting --------------------------------------------------------------------------------
def summary(grading: Grading, impl: str) -> dict[str, Any]:
    """The scores as a JSON-safe dict: per exercise, per check, and the total."""
    by_exercise: dict[str, dict[str, Any]] = {}
    for check in grading.checks:
        outcome = grading.outcomes.get(check["id"], {"status": "error", "message": "没有结果"})
        passed = outcome["status"] == "passed"
        entry = by_exercise.setdefault(check["exercise"], {"earned": 0, "total": 0, "checks": []})
        entry["total"] += check["points"]
        entry["earned"] += check["points"] if passed else 0
        entry["checks"].append({"id": check["id"], "title": check["title"],
                                "points": check["points"], "earned": check["points"] if passed
                                else 0, "status": outcome["status"],
                                "message": outcome.get("message", ""),
                                "hint": "" if passed else check["hint"]})
    earned = sum(e["earned"] for e in by_exercise.values())
    total = sum(e["total"] for e in by_exercise.values())
    return {"impl": impl, "earned": earned, "total": total,
            "percent": round(100.0 * earned / total, 1) if total else 0.0,
            "exercises": by_exercise}


def table(result: dict[str, Any]) -> str:
    """The score table a student reads."""
    lines = []
    for name, entry in result["exercises"].items():
        lines.append(f"{EXERCISES.get(name, name)} ({name}) · {result['impl']}/")
        for c in entry["checks"]:
            mark = "✔" if c["earned"] == c["points"] else "✘"
            lines.append(f"  {mark} {c['earned']:>3}/{c['points']:<3} {c['title']}")
            if c["earned"] < c["points"]:
                lines.append(f"        原因：{c['message']}")
                if c["hint"]:
                    lines.append(f"        提示：{c['hint']}")
        lines.append(f"  小计 {entry['earned']}/{entry['total']}")
    lines.append(f"总分 {result['earned']}/{result['total']} ({result['percent']:g}%)")
    return "\n".join(lines)


def add_grade_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `grade` command to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "grade", help="grade the two exercises (score table with hints)",
        description="Run the graded checks of the exercises and print a score table: points "
                    "per check and, for each failed one, the reason and a hint.")
    p.add_argument("exercise", nargs="?", choices=tuple(EXERCISES),
                   help="one exercise (default: both)")
    impl = os.environ.get(IMPL_ENV) if os.environ.get(IMPL_ENV) in IMPLS else "exercises"
    p.add_argument("--impl", choices=IMPLS, default=impl,
                   help=f"grade exercises/ (your code) or solutions/ (default: {impl}; "
                        f"set by {IMPL_ENV}, as under the notebook tests)")
    p.add_argument("--root", type=Path, default=None,
                   help="the folder holding exercises/ and solutions/ (default: found from "
                        "the working directory, else the package's checkout)")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.add_argument("--log", action="store_true", help="also print pytest's own output")
    p.set_defaults(handler=run_grade_command)
    return p  # type: ignore[no-any-return]


def run_grade_command(args: argparse.Namespace) -> int:
    """Grade, print; exit 0 for full marks, 1 otherwise, 2 if grading could not start."""
    try:
        root = find_root(args.root)
    except FileNotFoundError as exc:
        print(f"chatroom-async grade: {exc}", file=sys.stderr)
        return 2
    if importlib.util.find_spec("pytest") is None:
        print("chatroom-async grade: the grader needs pytest: pip install -e \".[grade]\"",
              file=sys.stderr)
        return 2
    grading = grade([args.exercise] if args.exercise else list(EXERCISES), args.impl, root)
    if not grading.checks:
        print("chatroom-async grade: the graded checks could not be collected:\n"
              + "".join(grading.log), file=sys.stderr)
        return 2
    result = summary(grading, args.impl)
    if args.log:
        print("".join(grading.log), file=sys.stderr)
    print(json.dumps(result, ensure_ascii=False, indent=1) if args.json else table(result))
    return 0 if result["earned"] == result["total"] else 1
