"""Constants and sizes shared by the runner, the adapters and the worker processes."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"
ALL_QUEUES = ("ours", "ours-prefetch", "arq", "saq", "taskiq", "taskiq-list", "dramatiq")
# Columns that are our own queue under other settings, not peers: "ours / best peer"
# compares the default "ours" with the peers (arq, SAQ, Taskiq's two brokers, Dramatiq).
OUR_VARIANTS = ("ours", "ours-prefetch")
# Columns of the goodput rows only (benchmarks.suite): ours without the shared limiter, and
# the anchor (the OpenAI cookbook's single-process throttle). Neither is a peer either.
NOT_PEERS = (*OUR_VARIANTS, "ours-plain", "cookbook")
PREFETCH = 25  # ProcessorSettings(prefetch=...) of the "ours-prefetch" column
#: The event loop of every asyncio process of a `benchmarks.run` (its drivers, and the
#: workers of every queue; Dramatiq's asyncio middleware runs one too): its `--loop`, handed
#: down in this environment variable. uvloop by default: our worker command takes it when it
#: is installed and so does Taskiq's; arq and SAQ run on it after one line, so every queue
#: gets it (every peer's environment installs it, `benchmarks.envs`).
LOOP_ENV = "BENCH_LOOP"
LOOPS = ("uvloop", "asyncio")
REPO_ROOT = Path(__file__).resolve().parent.parent

# The small chat request every queue carries (the same three fields as our submit_task).
USER_ID = 1
REQUEST_TYPE = "chat_completion"
REQUEST_DATA = {"message": "你好，今天天气怎么样？"}
TASK_NAME = "chat"
#: the field of `request_data` that carries a task's index (the crash workload's identity)
INDEX_FIELD = "index"

# What a task does in the worker process (see benchmarks.probe.Probe.run_task).
KINDS = ("noop", "redis1", "sleep", "sleep1", "stamp", "hold", "crash")
SLEEP_SECONDS = 0.1  # the I/O-efficiency task
LONG_SLEEP_SECONDS = 1.0  # the I/O task with 1,000 in flight (an AI call waits seconds)
HOLD_SECONDS = 8.0  # the memory task; under SAQ's default 10 s job timeout
CRASH_SECONDS = 2.0  # the crash workload's task; under every peer's default job timeout
IN_FLIGHT = 100  # per worker process, every throughput workload
HOLD_IN_FLIGHT = 1000  # the process-memory workload and the io1000 workload
CRASH_TASKS = 100  # tasks running when the crash workload kills the worker
CRASH_WAIT_SECONDS = 330.0  # how long after the kill a task may take to complete (--crash-wait)
# The pickup-latency workload stops sampling after this long: 1,000 samples take a second on
# a queue that pushes, and arq, which polls every 0.5 s, gets about 120 in this time.
LATENCY_BUDGET_SECONDS = 60.0


@dataclass(frozen=True)
class Sizes:
    """How many tasks each workload uses; `--tasks` scales them all from the 10,000 base."""

    tasks: int = 10_000
    io_tasks: int = 3_000
    io1000_tasks: int = 10_000
    latency_samples: int = 1_000
    latency_budget_s: float = LATENCY_BUDGET_SECONDS
    batch_size: int = 100
    crash_wait_s: float = CRASH_WAIT_SECONDS

    @classmethod
    def scaled(cls, tasks: int, crash_wait_s: float = CRASH_WAIT_SECONDS) -> Sizes:
        """Sizes for `tasks` (the documented figures at 10,000; smaller for a smoke run).

        io1000 keeps at least two waves of 1,000 tasks, so its 1st-start figure spans more
        than one task's sleep. The crash workload's size is fixed (CRASH_TASKS); only how
        long it waits after the kill is an option.
        """
        factor = tasks / 10_000
        return cls(
            tasks=tasks,
            io_tasks=max(100, round(3_000 * factor)),
            io1000_tasks=max(2 * HOLD_IN_FLIGHT, round(10_000 * factor)),
            latency_samples=max(100, min(1_000, round(1_000 * factor))),
            crash_wait_s=crash_wait_s,
        )


def request_data(index: int | None = None) -> dict:
    """The chat request's `request_data`, carrying `index` as INDEX_FIELD when given.

    Every adapter submits this dict (so every queue carries the same payload) and every
    worker hands `request_data.get(INDEX_FIELD)` to `Probe.run_task`.
    """
    return REQUEST_DATA if index is None else {**REQUEST_DATA, INDEX_FIELD: index}


def new_run_id() -> str:
    """A name no other run (or person) on the server uses: bench-<time>-<random>."""
    stamp = time.strftime("%Y%m%d%H%M%S")
    return f"bench-{stamp}-{os.getpid()}-{secrets.token_hex(3)}"


def use_run_loop() -> str:
    """Make the event loop this run asked for (`LOOP_ENV`) the one this process's
    `asyncio.run` and `new_event_loop` create; returns its name."""
    loop = os.environ.get(LOOP_ENV, LOOPS[0])
    if loop not in LOOPS:
        raise SystemExit(f"{LOOP_ENV}={loop!r}: use one of {', '.join(LOOPS)}")
    if loop == "uvloop":
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return loop
