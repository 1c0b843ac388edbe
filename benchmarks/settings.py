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
PREFETCH = 25  # ProcessorSettings(prefetch=...) of the "ours-prefetch" column
REPO_ROOT = Path(__file__).resolve().parent.parent

# The small chat request every queue carries (the same three fields as our submit_task).
USER_ID = 1
REQUEST_TYPE = "chat_completion"
REQUEST_DATA = {"message": "你好，今天天气怎么样？"}
TASK_NAME = "chat"

# What a task does in the worker process (see benchmarks.probe.Probe.run_task).
KINDS = ("noop", "sleep", "stamp", "hold")
SLEEP_SECONDS = 0.1  # the I/O-efficiency task
HOLD_SECONDS = 8.0  # the memory task; under SAQ's default 10 s job timeout
IN_FLIGHT = 100  # per worker process, every throughput workload
HOLD_IN_FLIGHT = 1000  # the process-memory workload


@dataclass(frozen=True)
class Sizes:
    """How many tasks each workload uses; `--tasks` scales them all from the 10,000 base."""

    tasks: int = 10_000
    io_tasks: int = 3_000
    latency_samples: int = 200
    batch_size: int = 100

    @classmethod
    def scaled(cls, tasks: int) -> Sizes:
        """Sizes for `tasks` (the issue's figures at 10,000; smaller for a smoke run)."""
        factor = tasks / 10_000
        return cls(
            tasks=tasks,
            io_tasks=max(100, round(3_000 * factor)),
            latency_samples=max(20, min(200, round(200 * factor))),
        )


def new_run_id() -> str:
    """A name no other run (or person) on the server uses: bench-<time>-<random>."""
    stamp = time.strftime("%Y%m%d%H%M%S")
    return f"bench-{stamp}-{os.getpid()}-{secrets.token_hex(3)}"
