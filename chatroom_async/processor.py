"""`AsyncAIProcessor`: the chapter's facade, wired to the queue, the workers and the events.

It owns the Redis client (an embedded fakeredis when `redis_url` is None), builds the
parts, and offers the chapter's API: `start`/`stop`, `submit_task`, `get_task_status`,
`cancel_task`, `add_callback`, `get_stats`, plus `wait_for_task` and `submit_many`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import random
import socket
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from .backend import AIBackend, InstantBackend
from .clock import Clock, SystemClock
from .errors import (
    CorruptTaskError,
    ProcessorError,
    TaskAccessError,
    TaskNotFoundError,
    TaskWaitTimeout,
    ValidationError,
)
from .events import EventBus, EventType, TaskEvent, envelope
from .metrics import LocalMetrics
from .scheduler import PriorityScheduler, Scheduler
from .settings import ProcessorSettings
from .stats import build_stats
from .store.cache import ResponseCache
from .store.follow import FollowReader
from .store.keys import Keys
from .store.lane import without_retries
from .store.limiter import ProviderLimiter
from .store.queue import Emit, TaskQueue
from .store.records import spec_json, task_from_record
from .task import AITask, TaskPriority, TaskStatus, status_dict
from .validation import validate_request, validate_task_id
from .worker.attempt import Attempt
from .worker.pool import WorkerPool, make_worker_id

log = logging.getLogger("chatroom_async")

_STATUSES = frozenset(status.value for status in TaskStatus)

#: connections of the client a processor makes from its `redis_url`
MAX_CONNECTIONS = 100
# wait_for_task's read after its deadline: long enough for a round trip, short enough that a
# Redis that does not answer turns into TaskWaitTimeout soon after the deadline.
_LAST_LOOK_S = 1.0

UserContext = Callable[[int | str], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]


class AsyncAIProcessor:
    """Asynchronous AI task processor (异步AI处理器) on Redis.

    Args:
        redis_url: a Redis URL; None runs on an embedded fakeredis (one process only).
        max_workers: tasks this process runs at once; 0 makes a client that only submits,
            queries, cancels and listens.
        backend: the AI service; defaults to `InstantBackend`.
        namespace: prefix of every key, so processors can share a server.
        settings: leases, retries, limits, cache... (`ProcessorSettings`).
        scheduler: the ready queue's order; defaults to strict priority.
        clock: time source; `SystemClock` unless simulating.
        seed: seeds the retry jitter and the worker id, for reproducible runs.
        redis: an existing client to use instead of `redis_url` (not closed on stop). If it
            retries commands after connection errors, the processor uses a client of its
            own with the same settings that does not (see `lane.without_retries`).
        user_context: `fn(user_id)` returning what the scheduler may use about a user.
    """

    def __init__(self, redis_url: str | None = None, max_workers: int = 10,
                 backend: AIBackend | None = None, *, namespace: str = "chatroom_async",
                 settings: ProcessorSettings | None = None, scheduler: Scheduler | None = None,
                 clock: Clock | None = None, seed: int | None = None, redis: Redis | None = None,
                 user_context: UserContext | None = None) -> None:
        if not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 0:
            raise ProcessorError(f"max_workers must be an int >= 0, got {max_workers!r}")
        self.redis_url = redis_url
        self.max_workers = max_workers
        if backend is not None and not callable(getattr(backend, "complete", None)):
            raise ProcessorError(
                f"backend must have an async complete(request) method, got {backend!r}; "
                "(the chapter's third argument, max_concurrent_tasks, is gone: max_workers "
                "is the one concurrency limit)")
        self.backend: AIBackend = backend if backend is not None else InstantBackend()
        self.keys = Keys(namespace)
        self.settings = settings or ProcessorSettings()
        self.scheduler: Scheduler = scheduler or PriorityScheduler()
        self.clock: Clock = clock or SystemClock()
        self.rng = random.Random(seed)
        self.user_context = user_context
        self.worker_id = make_worker_id(self.rng, socket.gethostname(), os.getpid())
        self._given_redis = redis
        self.redis: Redis | None = None
        self.queue: TaskQueue | None = None
        self.bus = EventBus(self.worker_id, on_cancel=self._on_remote_cancel)
        self.metrics = LocalMetrics()
        self.pool: WorkerPool | None = None
        self.limiter: ProviderLimiter | None = None
        self._reader: FollowReader | None = None
        self.running = False

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect, listen for cancels (and for other processes' events, once a callback
        or waiter needs them), start the workers. Idempotent."""
        if self.running:
            return
        if self._given_redis is not None:
            self.redis = without_retries(self._given_redis) or self._given_redis
        elif self.redis_url:
            # A blocking pool: past MAX_CONNECTIONS commands at once (a web process following
            # hundreds of answers), a caller waits for a connection instead of failing with
            # MaxConnectionsError, which redis-py's plain pool raises at its cap of 100.
            self.redis = Redis.from_pool(BlockingConnectionPool.from_url(
                self.redis_url, decode_responses=True, max_connections=MAX_CONNECTIONS))
        else:
            from .store.embedded import embedded_redis  # fakeredis loads only when it is used

            self.redis = embedded_redis()
        try:
            await self._start_parts()
        except BaseException:
            await self.bus.close()
            if self.queue is not None:
                await self.queue.close()
            await self._close_own_client()
            raise
        self.running = True
        log.info("processor %s started with %d workers", self.worker_id, self.max_workers)

    async def _start_parts(self) -> None:
        assert self.redis is not None
        s = self.settings
        self.queue = TaskQueue(self.redis, self.keys, result_ttl_s=s.result_ttl_s,
                               dead_letter_cap=s.dead_letter_cap, stream_cap=s.stream_cap,
                               stream_ttl_s=s.stream_ttl_s)
        if s.publish_events:
            await self.bus.connect(self.redis, self.keys)
        if self.max_workers > 0:
            cache = ResponseCache(self.redis, self.keys, s.cache_ttl_s) if s.cache_ttl_s else None
            attempt = Attempt(backend=self.backend, clock=self.clock, retry=s.retry, rng=self.rng,
                              bus=self.bus, queue=self.queue if s.publish_events else None,
                              publish=s.publish_events, cache=cache, stream=s.stream,
                              coalesce_s=s.stream_coalesce_s, limiter=self._limiter())
            self.pool = WorkerPool(queue=self.queue, attempt=attempt, bus=self.bus, settings=s,
                                   clock=self.clock, concurrency=self.max_workers,
                                   worker_id=self.worker_id, metrics=self.metrics)
            await self.pool.start()

    def _limiter(self) -> ProviderLimiter | None:
        limits = self.settings.provider_limits
        if limits is None or not limits.any:
            return None
        assert self.redis is not None
        self.limiter = ProviderLimiter(self.redis, self.keys, limits, self.clock)
        return self.limiter

    async def stop(self, drain_timeout_s: float | None = None) -> None:
        """Drain running tasks up to the deadline, hand the rest back, close. Idempotent."""
        if not self.running:
            return
        self.running = False
        drained = released = 0
        if self.pool is not None:
            released = await self.pool.stop(self.settings.drain_timeout_s
                                             if drain_timeout_s is None else drain_timeout_s)
            drained = self.pool.drained
            self.pool = None
        if self.limiter is not None:
            await self.limiter.close()
            self.limiter = None
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        await self.bus.close()
        if self.queue is not None:
            await self.queue.close()
        await self._close_own_client()
        log.info("processor %s stopped: %d running tasks ended during the drain, %d handed "
                 "back to the queue", self.worker_id, drained, released)

    async def _close_own_client(self) -> None:
        """Close the client if this processor made it (not the one it was given)."""
        if self.redis is not None and self.redis is not self._given_redis:
            await self.redis.aclose()

    async def __aenter__(self) -> AsyncAIProcessor:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _queue(self) -> TaskQueue:
        if self.queue is None or not self.running:
            raise ProcessorError("the processor is not running: call `await processor.start()` "
                                 "or use `async with AsyncAIProcessor(...)`")
        return self.queue

    # -- submitting --------------------------------------------------------------------------
    async def submit_task(self, user_id: int | str, request_type: str,
                          request_data: dict[str, Any],
                          priority: TaskPriority | int | str = TaskPriority.NORMAL,
                          timeout: float = 30.0, *, max_retries: int = 3,
                          task_id: str | None = None) -> str:
        """Validate a request and queue it; return its task id at once.

        Args:
            user_id: who asks: an int from 1 to 2**63-1, or a string (a user name, a UUID, a
                session id) of 1-128 characters that is not blank and has no control
                characters. A string id is kept as given: "42" and 42 are different users.
            request_type: "chat_completion", "content_summary" or "translation".
            request_data: the request's fields, JSON-serialisable, with no NaN or infinity.
            priority: a `TaskPriority`, its value, or its name.
            timeout: seconds one attempt may take.
            max_retries: retries after failed attempts (rate limits have a budget of their
                own: `RetryPolicy.rate_limit_retries`).
            task_id: a caller-chosen id: 1-128 characters of A-Z a-z 0-9 _ . - ; a fresh
                UUID when None.

        Raises:
            ValidationError: the request is invalid (nothing was queued).
            ProcessorError: the processor is not running.
        """
        queue = self._queue()
        task = self._new_task(user_id, request_type, request_data, priority, timeout,
                              max_retries, task_id)
        score = await self._score(task)
        if not await queue.enqueue(task.task_id, spec_json(task), int(task.priority),
                                   task.max_retries, score):
            raise ValidationError(f"task id {task.task_id!r} is already taken", field="task_id")
        return task.task_id

    async def submit_many(self, requests: list[Mapping[str, Any]]) -> list[str]:
        """Queue several requests in one round trip. All are validated before any is queued.

        Each item takes the keyword arguments of `submit_task`. A caller-chosen `task_id`
        that already exists is the one failure found only while queueing: the error then
        names the ids that were queued and the ones that were not.
        """
        queue = self._queue()
        tasks = [self._new_task(**{"priority": TaskPriority.NORMAL, "timeout": 30.0,
                                   "max_retries": 3, "task_id": None, **r}) for r in requests]
        ids = [t.task_id for t in tasks]
        if len(set(ids)) != len(ids):
            raise ValidationError("the same task_id appears twice in one batch", field="task_id")
        scores = [await self._score(t) for t in tasks]
        done = await queue.enqueue_many([
            (t.task_id, spec_json(t), int(t.priority), t.max_retries, score)
            for t, score in zip(tasks, scores, strict=True)])
        taken = [t.task_id for t, ok in zip(tasks, done, strict=True) if not ok]
        if taken:  # the others were queued: say which, so the caller can track them
            queued = [t.task_id for t, ok in zip(tasks, done, strict=True) if ok]
            raise ValidationError(f"task ids already taken, not queued: {taken}; "
                                  f"queued: {queued}", field="task_id")
        return [t.task_id for t in tasks]

    def _new_task(self, user_id: Any, request_type: Any, request_data: Any, priority: Any,
                  timeout: Any, max_retries: Any, task_id: str | None) -> AITask:
        valid = validate_request(user_id=user_id, request_type=request_type,
                                 request_data=request_data, priority=priority, timeout=timeout,
                                 max_retries=max_retries, limits=self.settings.limits)
        return AITask(task_id=str(uuid.uuid4()) if task_id is None else validate_task_id(task_id),
                      user_id=valid.user_id, request_type=valid.request_type,
                      request_data=valid.request_data, priority=valid.priority,
                      created_at=self.clock.now(), max_retries=valid.max_retries,
                      timeout=valid.timeout)

    async def _score(self, task: AITask) -> float:
        context: Mapping[str, Any] = {}
        if self.user_context is not None:
            got = self.user_context(task.user_id)
            context = await got if inspect.isawaitable(got) else got
        score = self.scheduler.score(task, context)
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ProcessorError(f"scheduler {type(self.scheduler).__name__} returned "
                                 f"{score!r}; a score must be a finite number")
        return float(score)

    # -- querying ----------------------------------------------------------------------------
    async def get_task_status(self, task_id: str, *,
                              user_id: int | str | None = None) -> dict[str, Any] | None:
        """The task's record as a dict (any status), or None if unknown or expired.

        While the task runs, `partial_text` holds the text streamed so far by attempt
        `partial_attempt`; a failed or cancelled task keeps it, beside its error. A record
        that cannot be read (a field that does not parse, or a key that is not a hash) gives
        `{"task_id", "status", "error_type": "CorruptTaskError", "error_message"}`, with
        status "failed" unless the record names a valid one.

        Raises:
            TaskAccessError: `user_id` is given and the task is another user's (or its
                record cannot tell whose it is).
        """
        status = await self._status(task_id)
        if status is not None and user_id is not None and status.get("user_id") != user_id:
            raise TaskAccessError(f"task {task_id!r} is not user {user_id!r}'s")
        return status

    async def _status(self, task_id: str) -> dict[str, Any] | None:
        fields: dict[str, str] = {}
        try:
            fields = await self._queue().record(task_id)
            if not fields:
                return None
            return status_dict(task_from_record(task_id, fields))
        except (KeyError, ValueError) as exc:
            status = fields.get("status", "")
            return {"task_id": task_id,
                    "status": status if status in _STATUSES else "failed",
                    "error_type": CorruptTaskError.__name__, "error_message": str(exc)}

    async def wait_for_task(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait until the task finishes and return its final status dict. Event-driven.

        Only a record that says the task finished is returned: an event only wakes the
        wait to read the record again (a stale or forged event cannot end it early).

        Raises:
            TaskNotFoundError: no such task.
            TaskWaitTimeout: still unfinished after `timeout` seconds.
        """
        self._queue()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    fut = self.bus.waiter(task_id)  # registered before reading: no lost wake-up
                    try:
                        await self.bus.hear_others()  # and another process's ending reaches it
                        status = await self.get_task_status(task_id)
                        if status is None:
                            raise TaskNotFoundError(f"no task {task_id!r}")
                        if TaskStatus(status["status"]).finished:
                            return status
                        await fut
                    finally:
                        self.bus.drop_waiter(task_id, fut)
        except TimeoutError:
            pass
        # Out of time (the deadline also bounds the subscription, which waits while Redis
        # is unreachable): one last, short look, so a task that is done is not reported late.
        unfinished = TaskWaitTimeout(f"task {task_id} unfinished after {timeout} s")
        try:
            async with asyncio.timeout(_LAST_LOOK_S):
                status = await self.get_task_status(task_id)
        except (TimeoutError, RedisError, OSError) as exc:
            raise unfinished from exc
        if status is None:
            raise TaskNotFoundError(f"no task {task_id!r}")
        if TaskStatus(status["status"]).finished:
            return status
        raise unfinished

    async def follow(self, task_id: str, *, after: int = 0,
                     user_id: int | str | None = None) -> AsyncGenerator[TaskEvent, None]:
        """Yield the task's events from cursor `after` on, ending after its terminal event.

        What was sent already is replayed (from the start with `after=0`), then events come
        as they are sent, from whichever process runs the task: `task_started` (one per
        attempt: a new `attempt` voids the earlier attempts' text), `task_progress` (the
        streamed text, a few chunks per event), `task_retrying`, `task_handed_back`, and
        one of `task_completed` / `task_failed` / `task_cancelled`. Each has a `cursor`:
        after a dropped connection, follow again with `after=` the last one seen, and
        nothing is missed or repeated. Only this task's events reach this process; one
        connection serves all of its follows. `docs/events.md` has the shapes.

        Use `async with contextlib.aclosing(p.follow(...)) as events:` to stop early.

        Raises:
            TaskNotFoundError: no such task (or it expired).
            TaskAccessError: `user_id` is given and the task is another user's.
            ValueError: `after` is not a cursor of this task (negative, or past its last).
            ProcessorError: the processor stopped while following.
        """
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise ValueError(f"after must be a cursor (an int >= 0), got {after!r}")
        queue = self._queue()
        if not self.settings.publish_events:
            raise ProcessorError("follow reads the events tasks send: this processor has "
                                 "ProcessorSettings(publish_events=False)")
        status = await self.get_task_status(task_id, user_id=user_id)
        if status is None:
            raise TaskNotFoundError(f"no task {task_id!r}")
        if after and after > await queue.last_cursor(task_id):  # would wait for ever
            raise ValueError(f"cursor {after} is past the task's last event")
        if TaskStatus(status["status"]).finished:  # all there is, read at once
            async for event in self._replay_finished(queue, status, after):
                yield event
            return
        self._queue()  # (still running after those reads)
        if self._reader is None:
            self._reader = FollowReader(self.redis, self.keys, self.worker_id)  # type: ignore[arg-type]
        reader = self._reader
        follower = reader.add(task_id, after)
        try:
            await reader.wake()
            while True:
                item = await follower.queue.get()
                if item is None:
                    raise ProcessorError("the processor stopped while following a task")
                event = TaskEvent.from_json(*item)
                yield event
                if event.terminal:
                    return
        finally:
            reader.remove(follower)

    async def _replay_finished(self, queue: TaskQueue, status: dict[str, Any],
                               after: int) -> AsyncGenerator[TaskEvent, None]:
        """A finished task's events, read at once; its terminal event rebuilt from the
        record if the stream lacks it (trimmed, or its sender died before sending it)."""
        cursor = after
        while True:
            entries = await queue.read_stream(status["task_id"], cursor)
            for cursor, raw in entries:
                event = TaskEvent.from_json(cursor, raw)
                yield event
                if event.terminal:
                    return
            if not entries:
                break
        kind = {"completed": EventType.TASK_COMPLETED, "failed": EventType.TASK_FAILED,
                "cancelled": EventType.TASK_CANCELLED}[status["status"]]
        try:
            task = AITask.from_dict(status)
        except (TypeError, ValueError):  # a corrupt record: what it says of itself
            task = AITask(task_id=status["task_id"], user_id=0, request_type="",
                          request_data={}, status=TaskStatus(status["status"]),
                          error_type=status.get("error_type"),
                          error_message=status.get("error_message"))
        yield TaskEvent.from_json(cursor, envelope(kind, task, origin="record",
                                                   ts=task.completed_at or 0.0))

    async def hear_others(self) -> None:
        """Listen to other processes' events now, and return once they reach this process.

        A processor subscribes to them only when something would receive them (a callback,
        a `wait_for_task`): at `start()` for a callback added before it, else when the
        first one comes, so a callback added after `start()` hears them from about one
        round trip later; awaiting this tells that moment.
        """
        await self.bus.hear_others()

    async def cancel_task(self, task_id: str, *, user_id: int | str | None = None) -> bool:
        """Cancel a queued, waiting or running task (in any process).

        Returns:
            True if it is now cancelled; False if it had already finished or is unknown.

        Raises:
            TaskAccessError: `user_id` is given and the task is another user's.
        """
        queue = self._queue()
        if user_id is not None and await self.get_task_status(task_id, user_id=user_id) is None:
            return False  # (another user's task raised TaskAccessError)
        done, previous, fields = await queue.cancel(task_id, self.clock.now(),
                                                    publish=self.settings.publish_events)
        if done != 1:
            return False
        if previous == "processing" and self.pool is not None:
            self.pool.cancel_local(task_id)
        try:
            task = task_from_record(task_id, fields)
        except (KeyError, ValueError):  # cancelled; a record this corrupt has no event
            return True
        self.bus.fire(EventType.TASK_CANCELLED, task)
        if self.settings.publish_events:
            await self._announce_cancel(task)
        return True

    async def _announce_cancel(self, task: AITask) -> None:
        """The task_cancelled event, to the task's stream and other processes. Nothing can
        come between the cancel and it: the cancel cleared the lease, so no worker writes
        about the task any more."""
        event = envelope(EventType.TASK_CANCELLED, task, origin=self.worker_id,
                         ts=self.clock.now())
        try:
            await self._queue().emit([Emit(task.task_id, "", "end", task.deliveries, "", event)])
        except (RedisError, OSError) as exc:  # the record says cancelled all the same
            log.warning("task %s: cancelled, but its event was not sent: %r", task.task_id, exc)

    def add_callback(self, event_type: str, callback: Callable[[AITask], Any]) -> None:
        """Call `callback(task)` on every `event_type` event (sync or async callables).

        Events of tasks this process runs or cancels reach it at once; other processes'
        events from the moment this process listens to them: from `start()` on for a
        callback added before it, else from about one round trip later (`await
        processor.hear_others()` returns at that moment).
        """
        self.bus.add_callback(event_type, callback)

    async def get_stats(self) -> dict[str, Any]:
        """The chapter's statistics, shared by every process, plus queue and latency figures."""
        counts = await self._queue().counts(now=self.clock.now())
        local_in_flight = len(self.pool.running) if self.pool is not None else 0
        return build_stats(counts, self.metrics, now=self.clock.now(),
                           local_in_flight=local_in_flight, worker_count=self.max_workers)

    async def dead_letters(self, count: int = 100) -> list[str]:
        """Ids of the newest dead-lettered (failed) tasks."""
        return await self._queue().dead_letters(count)

    # -- plumbing ----------------------------------------------------------------------------
    def _on_remote_cancel(self, task_id: str) -> None:
        if self.pool is not None:
            self.pool.cancel_local(task_id)
