"""The adapter interface: what the workloads need from a queue.

One adapter drives one queue through its public client API for one workload run. `name`
(an argument to the constructor) is unique to the run, the queue and the workload, and
every Redis key the queue creates for it contains it, so `cleanup` deletes exactly those.

A task's identity: `enqueue(index=i)` submits the same chat request with `i` in its
`request_data` (built by `benchmarks.settings.request_data(i)`, field "index"), and the
queue's worker module passes `request_data.get("index")` to `Probe.run_task`. The crash
workload needs this to tell a lost task from a re-run one; the other workloads call
`enqueue()` and their tasks carry no index. An adapter for a new queue implements both
halves: its `enqueue` forwards `index` to `request_data(index)`, its worker reads it back.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from importlib import metadata

import redis.asyncio as aioredis

from benchmarks.redis_tools import delete_matching


class QueueAdapter(ABC):
    """Submit tasks to one queue and start its worker processes."""

    #: the column name in the results table
    label: str = "?"
    #: distribution names whose versions the docs and the JSON report
    packages: tuple[str, ...] = ()
    #: the module run as `python -m <module>` for a worker process
    worker_module: str = ""
    #: settings that matter for the comparison, as they appear in the docs
    settings_note: str = ""
    #: the workloads this column runs (None: all); the others' cells stay empty
    workloads: tuple[str, ...] | None = None
    #: `KEY=VALUE` settings passed to the worker as `--option` (set by `benchmarks.peer_ab`)
    worker_options: tuple[str, ...] = ()

    def __init__(self, redis_url: str, name: str) -> None:
        self.redis_url = redis_url
        self.name = name

    @abstractmethod
    async def open(self) -> None:
        """Connect the client."""

    @abstractmethod
    async def close(self) -> None:
        """Disconnect the client."""

    @abstractmethod
    async def enqueue(self, index: int | None = None) -> object:
        """Submit one small chat request (no-op on the client's side of the task).

        Args:
            index: the task's identity, carried as `request_data["index"]` (see
                `benchmarks.settings.request_data`) and handed by the worker to
                `Probe.run_task`; None for a task that needs none.
        """

    @property
    def supports_batch(self) -> bool:
        """Whether the queue's public API can submit many tasks in one call."""
        return False

    async def enqueue_batch(self, count: int) -> None:
        """Submit `count` chat requests in one call of the queue's batch API."""
        raise NotImplementedError(f"{self.label} has no batch submit")

    def worker_argv(self, kind: str, concurrency: int, probe_key: str) -> list[str]:
        """The command line of one worker process running tasks of `kind`."""
        return [
            sys.executable,
            "-m",
            self.worker_module,
            "--redis-url",
            self.redis_url,
            "--name",
            self.name,
            "--kind",
            kind,
            "--concurrency",
            str(concurrency),
            "--probe",
            probe_key,
            *(arg for option in self.worker_options for arg in ("--option", option)),
        ]

    async def cleanup(self, client: aioredis.Redis) -> int:
        """Delete every key this run of the queue created; return how many."""
        return await delete_matching(client, self.name)

    @classmethod
    def versions(cls) -> dict[str, str]:
        """Installed versions of `packages` ("missing" when not installed)."""
        found = {}
        for package in cls.packages:
            try:
                found[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                found[package] = "missing"
        return found
