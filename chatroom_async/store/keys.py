"""Every Redis key and channel the processor uses, named in one place.

All names live under one namespace (default "chatroom_async"), so several processors,
tests and benchmarks can share a server and clean up only their own keys. No other module
concatenates key names.

    {ns}:task:{task_id}   hash   the task record, from submit until its TTL after finishing
    {ns}:stream:{task_id} stream the task's events, ids 0-1, 0-2... (the follow cursor); capped,
                                 and expiring stream_ttl_s after the task has finished
    {ns}:ready            zset   tasks waiting to run; score from the scheduler, lowest first
    {ns}:inflight         zset   claimed tasks; score = lease deadline (epoch seconds)
                                 (and one +inf anchor member: see lua/claim.lua)
    {ns}:delayed          zset   tasks waiting for a retry; score = when they are due
    {ns}:wake             list   wake-up token for idle workers (at most one)
    {ns}:ctl:{worker_id}  list   a worker's private wake-up (used to stop it promptly)
    {ns}:dead             list   dead letters: ids of failed tasks, newest last, capped
    {ns}:garbage          list   ready entries that had no record, set aside
    {ns}:stats            hash   counters shared by every process
    {ns}:workers          zset   the worker pools alive, "{worker_id} {slots}"; score = the
                                 deadline of their registration (renewed with the leases)
    {ns}:held             hash   claimed tasks a worker pool holds for a slot (prefetch), by
                                 worker id: leased, but not running (see `counts`)
    {ns}:depth            hash   ready tasks per priority value
    {ns}:cache:{digest}   string a cached response, with its own TTL
    {ns}:provider         hash   the provider's shared limits: bucket levels, a 429's pause
    {ns}:provider:calls   zset   AI calls in flight; score = the call's lease deadline
    {ns}:provider:free    list   wake-ups for workers waiting for a call slot
    {ns}:follow:{origin}  stream wakes one process's follow reader when it follows more tasks
    {ns}:events           channel  lifecycle events, a JSON array of envelopes (docs/events.md)
    {ns}:progress         channel  progress events, likewise: only for task_progress callbacks
    {ns}:cancel           channel  ids of running tasks to cancel
"""

from __future__ import annotations

from dataclasses import dataclass

from ..validation import validate_namespace


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builders for one namespace."""

    namespace: str = "chatroom_async"

    def __post_init__(self) -> None:
        validate_namespace(self.namespace)  # a ValidationError (a ValueError) if bad

    @property
    def task_prefix(self) -> str:
        return f"{self.namespace}:task:"

    def task(self, task_id: str) -> str:
        return f"{self.namespace}:task:{task_id}"

    def stream(self, task_id: str) -> str:
        return f"{self.namespace}:stream:{task_id}"

    @property
    def stream_prefix(self) -> str:
        return f"{self.namespace}:stream:"

    def follow_control(self, origin: str) -> str:
        return f"{self.namespace}:follow:{origin}"

    def control(self, worker_id: str) -> str:
        return f"{self.namespace}:ctl:{worker_id}"

    def cache(self, digest: str) -> str:
        return f"{self.namespace}:cache:{digest}"

    @property
    def ready(self) -> str:
        return f"{self.namespace}:ready"

    @property
    def inflight(self) -> str:
        return f"{self.namespace}:inflight"

    @property
    def delayed(self) -> str:
        return f"{self.namespace}:delayed"

    @property
    def wake(self) -> str:
        return f"{self.namespace}:wake"

    @property
    def dead(self) -> str:
        return f"{self.namespace}:dead"

    @property
    def garbage(self) -> str:
        return f"{self.namespace}:garbage"

    @property
    def stats(self) -> str:
        return f"{self.namespace}:stats"

    @property
    def workers(self) -> str:
        return f"{self.namespace}:workers"

    @property
    def held(self) -> str:
        return f"{self.namespace}:held"

    @property
    def depth(self) -> str:
        return f"{self.namespace}:depth"

    @property
    def events(self) -> str:
        return f"{self.namespace}:events"

    @property
    def progress(self) -> str:
        return f"{self.namespace}:progress"

    @property
    def cancel(self) -> str:
        return f"{self.namespace}:cancel"

    @property
    def provider(self) -> str:
        return f"{self.namespace}:provider"

    @property
    def provider_calls(self) -> str:
        return f"{self.namespace}:provider:calls"

    @property
    def provider_free(self) -> str:
        return f"{self.namespace}:provider:free"

    @property
    def pattern(self) -> str:
        """A SCAN/KEYS pattern matching every key of this namespace."""
        return f"{self.namespace}:*"
