"""How much CPU other programs took during a measurement (the machine may be shared).

busy ticks of the whole machine (/proc/stat) minus the ticks of this driver and its reaped
children (the worker processes: /proc/self/stat utime+stime+cutime+cstime) and of the Redis
server (/proc/<pid>/stat, when it runs on this machine). What is left was someone else's.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system irq softirq steal (not idle, iowait)


def machine_busy_ticks() -> int:
    """Busy clock ticks of all CPUs since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return sum(int(fields[i]) for i in BUSY_FIELDS)


def process_ticks(pid: int | str, children: bool = False) -> int:
    """utime+stime of `pid` (and of its reaped children if asked); 0 if unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = text.rsplit(")", 1)[1].split()  # fields from 3 (state) on
    own = int(fields[11]) + int(fields[12])
    return own + (int(fields[13]) + int(fields[14]) if children else 0)


@dataclass
class CpuWatch:
    """Start with `CpuWatch.start(redis_pid)`, read with `foreign_percent()`."""

    redis_pid: int | None
    began: float
    machine: int
    ours: int

    @classmethod
    def start(cls, redis_pid: int | None) -> CpuWatch:
        return cls(redis_pid, time.monotonic(), machine_busy_ticks(), cls._our_ticks(redis_pid))

    @staticmethod
    def _our_ticks(redis_pid: int | None) -> int:
        ticks = process_ticks("self", children=True)
        return ticks + (process_ticks(redis_pid) if redis_pid else 0)

    def foreign_percent(self) -> float:
        """Others' CPU since start, as a percentage of all CPUs over that time."""
        hz = os.sysconf("SC_CLK_TCK")
        wall = max(time.monotonic() - self.began, 1e-9)
        machine = machine_busy_ticks() - self.machine
        ours = self._our_ticks(self.redis_pid) - self.ours
        cpus = len(os.sched_getaffinity(0))
        return max(0.0, 100.0 * (machine - ours) / hz / wall / cpus)
