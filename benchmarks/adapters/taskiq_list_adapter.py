"""Taskiq with taskiq-redis's `ListQueueBroker`: LPUSH to submit, BRPOP to receive.

At-most-once: the worker pops a message before it runs it, so a task whose worker dies is
lost (the `taskiq` column's stream broker re-delivers it). Results are stored by the same
`RedisAsyncResultBackend` as in the `taskiq` column, so the two differ only in the broker.
"""

from __future__ import annotations

from benchmarks.adapters.taskiq_adapter import TaskiqAdapter


class TaskiqListAdapter(TaskiqAdapter):
    """List = the run's name; the results' keys start with it."""

    label = "taskiq-list"
    broker_kind = "list"
    worker_module = "benchmarks.workers.taskiq_list"
    settings_note = (
        "`ListQueueBroker` (at-most-once: BRPOP, a task whose worker dies is lost) + "
        "`RedisAsyncResultBackend(result_ex_time=3600)`, worker via "
        "`taskiq.api.run_receiver_task(max_async_tasks=<in flight>)`; defaults otherwise: "
        "max_prefetch=0 (no acknowledgements), pool size 50, pickle results"
    )
