"""The event loop a worker process started by `chatroom-async worker` runs on.

`auto`, the default, takes uvloop when it is installed (`pip install "chatroom_async[fast]"`),
as uvicorn's `--loop auto` and Taskiq's worker do, and asyncio's own loop otherwise. On
uvloop a worker spends less CPU per task, and its timers end closer to when they are due:
asyncio waits on epoll in whole milliseconds, rounded up, so an idle worker wakes up to
1 ms late for every timer. `docs/benchmarks.md` has the figures.

Only the command line chooses. The package never changes the loop of a program that
imports it: a notebook's kernel, a web server or a test keeps its own.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LOOPS = ("auto", "asyncio", "uvloop")


class LoopUnavailableError(RuntimeError):
    """`uvloop` was asked for and is not installed."""


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the loop `choice` names (None: asyncio's default).

    Raises:
        LoopUnavailableError: `uvloop` asked for, not installed.
        ValueError: a choice not in `LOOPS`.
    """
    if choice not in LOOPS:
        raise ValueError(f"unknown event loop {choice!r}; use one of {', '.join(LOOPS)}")
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise LoopUnavailableError(
                'uvloop is not installed: pip install "chatroom_async[fast]"') from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """Run `main` to the end on a new loop of the kind `choice` names."""
    try:
        factory = loop_factory(choice)
    except Exception:
        main.close()  # never awaited: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name() -> str:
    """`uvloop` or `asyncio`: what the running loop is (for a worker's start line)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
