"""`get_stats`: the chapter's keys computed correctly, plus queue and latency figures.

Pure: takes the shared counters read from Redis and this process's samples. Rates divide by
finished tasks only (the chapter divided by every task ever submitted, pending included).
"""

from __future__ import annotations

from typing import Any

from .metrics import LocalMetrics, summarize
from .store.queue import QueueCounts
from .task import TaskPriority


def build_stats(counts: QueueCounts, metrics: LocalMetrics, *, now: float, local_in_flight: int,
                worker_count: int) -> dict[str, Any]:
    """The statistics dict `AsyncAIProcessor.get_stats` returns."""
    c = counts.counters
    completed = int(c.get("completed_tasks", 0))
    failed = int(c.get("failed_tasks", 0))
    finished = completed + failed
    depth = {p.name.lower(): counts.ready_by_priority.get(int(p), 0)
             for p in sorted(TaskPriority, reverse=True)}
    return {
        # the chapter's keys, shared by every process on this namespace
        "total_tasks": int(c.get("total_tasks", 0)),
        "completed_tasks": completed,
        "failed_tasks": failed,
        "average_processing_time": c.get("processing_time_sum", 0.0) / completed
        if completed else 0.0,
        "current_queue_size": sum(depth.values()) + counts.delayed,
        "active_tasks_count": counts.in_flight,
        "worker_count": worker_count,
        "success_rate": completed / finished if finished else 0.0,
        "failure_rate": failed / finished if finished else 0.0,
        # more
        "cancelled_tasks": int(c.get("cancelled_tasks", 0)),
        "retried_tasks": int(c.get("retried_tasks", 0)),
        "reclaimed_tasks": int(c.get("reclaimed_tasks", 0)),
        # Every failed task goes to the dead-letter list (capped at `dead_letter_cap`, so
        # `dead_letters` may be less); those failed for too many deliveries are counted too.
        "dead_lettered": failed,
        "delivery_limit_exceeded": int(c.get("delivery_limit_exceeded", 0)),
        "handed_back": int(c.get("handed_back", 0)),
        "dead_letters": counts.dead_letters,
        "garbage": counts.garbage,
        "queue_depth": depth,
        "waiting_retry": counts.delayed,
        "in_flight": counts.in_flight,
        # claimed by a worker pool and waiting there for a slot (prefetch): leased, not
        # running, not in `in_flight` or `active_tasks_count`
        "held": counts.held,
        # the worker pools of every process on this namespace, alive now, and their slots
        "workers": len(counts.workers),
        "worker_slots": sum(slots for _, slots in counts.workers),
        "local_in_flight": local_in_flight,
        "throughput_per_s": metrics.throughput(now),
        "latency": summarize(list(metrics.latencies)).as_dict(),
        "processing_time": summarize(list(metrics.processing)).as_dict(),
    }
