"""The autograder's pytest plugin: points per check, a time limit per check, and one JSON
line per event written to the file descriptor the runner gives (`chatroom_async.grading.
runner` prints the table from them).

A check is a test marked `@pytest.mark.points(n, title=..., hint=...)`. It loses its
points when it fails, raises, runs past its time limit, blocks the event loop, or leaves a
coroutine un-awaited; each of those costs only that check, with a message saying which.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from collections.abc import Callable, Generator
from types import FrameType, ModuleType
from typing import Any

import pytest

from .kit import CHECK_LIMIT_S, FD_ENV, IMPLS, LIMIT_ENV, ROOT_ENV, load_exercise

__all__ = ["CHECK_LIMIT_S", "FD_ENV", "LIMIT_ENV", "ROOT_ENV"]  # and the pytest hooks below


class CheckTimeout(BaseException):
    """A check ran past its real-time limit (a BaseException: `except Exception` in the
    student's code does not swallow it)."""


class _Events:
    def __init__(self, fd: int | None) -> None:
        self._out = os.fdopen(fd, "w", buffering=1, encoding="utf-8") if fd is not None else None

    def write(self, **event: Any) -> None:
        if self._out is not None:
            self._out.write(json.dumps(event, ensure_ascii=False) + "\n")


_events = _Events(None)
_outcomes: dict[str, dict[str, Any]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grading")
    group.addoption("--impl", choices=IMPLS, default="exercises",
                    help="grade exercises/ (your code, the default) or solutions/")


def pytest_configure(config: pytest.Config) -> None:
    global _events
    config.addinivalue_line("markers", "points(n, title, hint): a graded check's points")
    fd = os.environ.get(FD_ENV)
    _events = _Events(int(fd) if fd else None)


@pytest.fixture
def exercise(request: pytest.FixtureRequest) -> Callable[[str], ModuleType]:
    """`exercise("streaming")`: the module under grading, from exercises/ or solutions/."""
    impl = request.config.getoption("--impl")
    root = os.environ.get(ROOT_ENV)

    def load(name: str) -> ModuleType:
        from pathlib import Path

        return load_exercise(name, impl, Path(root) if root else None)

    return load


def _points(item: pytest.Item) -> tuple[int, str, str] | None:
    mark = item.get_closest_marker("points")
    if mark is None:
        return None
    return int(mark.args[0]), str(mark.kwargs.get("title", item.name)), str(
        mark.kwargs.get("hint", ""))


def pytest_collection_finish(session: pytest.Session) -> None:
    checks = []
    for item in session.items:
        meta = _points(item)
        if meta is not None:
            checks.append({"id": item.nodeid, "exercise": item.path.stem.removeprefix("test_"),
                           "points": meta[0], "title": meta[1], "hint": meta[2]})
    _events.write(type="collected", checks=checks)


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    _events.write(type="start", id=nodeid, limit_s=CHECK_LIMIT_S)


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise CheckTimeout(f"本项超过了 {CHECK_LIMIT_S:g} 秒（真实时间）的时间限制")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    unraisable: list[Any] = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    old_handler = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CHECK_LIMIT_S)
    try:
        result = yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        gc.collect()
        sys.unraisablehook = old_hook
    for u in unraisable:
        text = f"{u.exc_type.__name__}: {u.exc_value}"
        if "never awaited" in text:
            raise AssertionError(f"有协程没有被 await（{u.exc_value}）：调用 async 函数只会创建"
                                 "协程对象，前面要加 await 它才会运行。")
    return result


def _why(excinfo: pytest.ExceptionInfo[BaseException]) -> tuple[str, str]:
    """(status, message in Chinese) for a failed check."""
    exc = excinfo.value
    if isinstance(exc, NotImplementedError):
        return "not_implemented", "还没有实现（NotImplementedError）"
    if isinstance(exc, CheckTimeout):
        return "timeout", f"{exc}：代码卡住了，或者阻塞了事件循环"
    if type(exc).__name__ == "LoopBlocked":
        return "blocked", str(exc)
    if isinstance(exc, AssertionError):
        return "failed", str(exc).split("\nassert")[0].strip() or "断言失败"
    where = excinfo.traceback[-1] if excinfo.traceback else None
    place = f"（{os.path.basename(str(where.path))}:{where.lineno + 1}）" if where else ""
    return "error", f"代码抛出了 {type(exc).__name__}: {exc}{place}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    meta = _points(item)
    if meta is None:
        return report
    outcome = _outcomes.setdefault(item.nodeid, {"status": "passed", "message": ""})
    if report.failed and outcome["status"] == "passed" and call.excinfo is not None:
        outcome["status"], outcome["message"] = _why(call.excinfo)
    elif report.skipped and outcome["status"] == "passed":
        outcome["status"], outcome["message"] = "skipped", "跳过了"
    return report


def pytest_runtest_logfinish(nodeid: str, location: tuple[str, int | None, str]) -> None:
    outcome = _outcomes.get(nodeid)
    if outcome is not None:
        _events.write(type="result", id=nodeid, **outcome)
