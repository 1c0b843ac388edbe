"""Small helpers for notebooks 03-06 and 10: virtual time, a clock that can freeze (a
crashed process), backends that sleep or hang, a call log, and a fresh embedded Redis.

None of this is the lesson; it keeps the notebook cells short. Everything the lessons
measure is the package's own behaviour (`chatroom_async`'s public API).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import fakeredis
from redis.asyncio import Redis

from chatroom_async import AIRequest, FunctionBackend, LoopClock
from chatroom_async.simulation import run_virtual_async

T = TypeVar("T")

__all__ = ["CallLog", "EventLog", "FreezableClock", "fresh_redis", "grouped_bars",
           "hanging_backend", "now", "scripted_backend", "sleeping_backend", "virtual"]


async def virtual(main: Callable[[], Awaitable[T]]) -> T:
    """Run `main()` on a virtual-time loop (a worker thread): waits cost no real time.

    Everything `main` creates (processors, Redis clients) must be created inside it.
    """
    async def wrapped() -> T:
        return await main()
    return await run_virtual_async(wrapped)


def now() -> float:
    """The running loop's clock (virtual seconds inside `virtual`)."""
    return asyncio.get_running_loop().time()


def fresh_redis() -> Redis:
    """A new, empty in-process fakeredis, as a `redis.asyncio` client (no server needed)."""
    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)


class FreezableClock(LoopClock):
    """The loop's clock; after `freeze()` every sleep that ends never returns.

    A processor given this clock stops renewing its leases once frozen: to Redis it looks
    exactly like a process killed with `kill -9` (no renewals, no results, no goodbye).
    """

    def __init__(self, epoch: float = 0.0) -> None:
        super().__init__(epoch)
        self.frozen = False

    def freeze(self) -> None:
        self.frozen = True

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds)
        if self.frozen:
            await asyncio.get_running_loop().create_future()  # never resolved


def reply(request: AIRequest) -> dict[str, Any]:
    """A small, deterministic answer."""
    text = request.request_data.get("message", request.task_id)
    return {"response": f"回复: {text}", "tokens_used": 10, "model": "sleepy"}


def sleeping_backend(seconds: float | Callable[[AIRequest], float],
                     clock: LoopClock | None = None) -> FunctionBackend:
    """A backend that answers after `seconds` (a number, or a function of the request),
    slept on `clock` (the loop's clock by default; a `FreezableClock` freezes it too)."""
    sleep = clock.sleep if clock is not None else asyncio.sleep

    async def answer(request: AIRequest) -> dict[str, Any]:
        await sleep(seconds(request) if callable(seconds) else seconds)
        return reply(request)
    return FunctionBackend(answer)


def hanging_backend(hang_if: Callable[[AIRequest], bool] = lambda r: True,
                    seconds: float = 1.0) -> FunctionBackend:
    """A backend whose calls for which `hang_if(request)` never answer; others take `seconds`."""
    async def answer(request: AIRequest) -> dict[str, Any]:
        if hang_if(request):
            await asyncio.get_running_loop().create_future()  # a call that never returns
        await asyncio.sleep(seconds)
        return reply(request)
    return FunctionBackend(answer)


class CallLog:
    """Wraps a backend and records every call: `(time, task_id, attempt, outcome)`.

    `outcome` is "ok" or the error's class name. Time is the loop's clock.
    """

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.rows: list[tuple[float, str, int, str]] = []

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await self.backend.complete(request)
        except Exception as exc:
            self.rows.append((now(), request.task_id, request.attempt, type(exc).__name__))
            raise
        self.rows.append((now(), request.task_id, request.attempt, "ok"))
        return result

    def count(self, outcome: str | None = None) -> int:
        return sum(1 for row in self.rows if outcome is None or row[3] == outcome)

    def per_second(self, until: float) -> list[int]:
        """Calls in each whole second [0, 1), [1, 2), ... up to `until`."""
        bins = [0] * (int(until) + 1)
        for t, *_ in self.rows:
            if t < len(bins):
                bins[int(t)] += 1
        return bins


def grouped_bars(ax: Any, data: dict[str, dict[str, float]], ylabel: str,
                 title: str = "") -> None:
    """Draw `data[series][label]` as grouped bars on `ax`, with the values written on top."""
    series = list(data)
    labels = list(next(iter(data.values())))
    width = 0.8 / len(series)
    for i, name in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
        values = [data[name][label] for label in labels]
        bars = ax.bar(xs, values, width, label=name)
        ax.bar_label(bars, labels=[f"{v:g}" for v in values], fontsize=8)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)


class EventLog:
    """Records a processor's lifecycle events: `(time, event, task_id, retry_count, error_type)`.

    Attach it before `start()`; time is the loop's clock (virtual seconds inside `virtual`).
    """

    EVENTS = ("task_started", "task_retrying", "task_completed", "task_failed",
              "task_cancelled")

    def __init__(self, processor: Any, label: str = "") -> None:
        self.rows: list[tuple[float, str, str, int, str | None]] = []
        self.label = label
        for event in self.EVENTS:
            processor.add_callback(event, self._recorder(event))

    def _recorder(self, event: str) -> Callable[[Any], None]:
        def record(task: Any) -> None:
            self.rows.append((round(now(), 3), event.removeprefix("task_"), task.task_id,
                              task.retry_count, task.error_type))
        return record

    def show(self) -> None:
        """Print the rows as a small table."""
        for t, event, task_id, retries, error in self.rows:
            print(f"t={t:7.2f}s  {task_id:10} {event:10} retries={retries}  {error or ''}")


def scripted_backend(script: dict[str, list[Any]], seconds: float = 1.0) -> FunctionBackend:
    """A backend that plays a script per task id: call n of a task takes `seconds`, then
    raises `script[task_id][n-1]` if it is an exception, else answers; past the script's
    end the last step repeats. Unscripted tasks answer. Calls are counted here, so the
    script does not depend on how the processor numbers attempts."""
    calls: dict[str, int] = {}

    async def answer(request: AIRequest) -> dict[str, Any]:
        await asyncio.sleep(seconds)
        calls[request.task_id] = n = calls.get(request.task_id, 0) + 1
        steps = script.get(request.task_id, [])
        step = steps[min(n, len(steps)) - 1] if steps else "ok"
        if isinstance(step, BaseException):
            raise step
        return reply(request)
    return FunctionBackend(answer)
