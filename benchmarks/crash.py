"""The crash workload's measurement: kill a busy worker, start a fresh one, count re-runs.

The workload (`benchmarks.workloads.crash`) queues K tasks that each sleep 2 s and carry a
distinct index, and waits until one worker has started all K. `kill_and_recover` then
SIGKILLs that worker (no signal handler, no cleanup: a machine or container dying), starts
a fresh worker at once, and reads what the tasks record on completion (`Probe`'s `crash`
kind: a count per index and the time of its first completion) until every index has
completed or the cap has passed. Whatever brings a task back is the queue's own recovery
under its library defaults; this module only watches.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from benchmarks.probe import Completions, read_completions
from benchmarks.procs import WorkerProcess

if TYPE_CHECKING:
    from benchmarks.workloads import Session

POLL_SECONDS = 0.1
#: after the last index first completes, how long to keep counting late duplicates
SETTLE_SECONDS = 5.0


async def kill_and_recover(s: Session, tasks: int, wait_s: float) -> dict[str, float | None]:
    """SIGKILL the session's worker, spawn a fresh one, wait for every index to complete.

    Returns `crash_recovery_s` (kill -> the last index's first completion; None if some
    never completed within `wait_s`), `crash_lost` (indices never completed by then),
    `crash_duplicated` (indices completed more than once) and `crash_first_rerun_s` (kill ->
    the first completion after it).
    """
    before = await read_completions(s.ctx.client, s.probe_key)
    if before.runs:
        s.ctx.notes.append(
            f"{s.adapter.label}: crash: {len(before.runs)} tasks completed before the kill"
        )
    victim = s.workers[0]
    victim.popen.kill()
    killed_at = time.time()
    victim.popen.wait()
    s.spawn("crash")
    fresh = s.workers[-1]
    done = await _watch(s, fresh, tasks, killed_at + wait_s)
    if len(done.runs) >= tasks:  # all back: give late duplicates a moment to show
        await asyncio.sleep(SETTLE_SECONDS)
        done = await read_completions(s.ctx.client, s.probe_key)
    return _figures(done, tasks, killed_at)


async def _watch(s: Session, fresh: WorkerProcess, tasks: int, deadline: float) -> Completions:
    """Poll the completions until every index has one or `deadline` (epoch seconds)."""
    while True:
        done = await read_completions(s.ctx.client, s.probe_key)
        if len(done.runs) >= tasks or time.time() >= deadline:
            return done
        fresh.check_alive()
        await asyncio.sleep(POLL_SECONDS)


def _figures(done: Completions, tasks: int, killed_at: float) -> dict[str, float | None]:
    after_kill = [t - killed_at for t in done.first_done.values() if t >= killed_at]
    lost = tasks - len(done.runs)
    return {
        "crash_recovery_s": max(after_kill) if not lost and after_kill else None,
        "crash_first_rerun_s": min(after_kill) if after_kill else None,
        "crash_lost": float(lost),
        "crash_duplicated": float(sum(1 for n in done.runs.values() if n > 1)),
    }
