"""One attempt at one task: call the backend under the task's timeout, stream progress,
and turn what happened into an outcome (completed, retry later, or failed).

The decision of what a failure means is `RetryPolicy.next_delay`; this module only applies
it, so a timeout, a 429 and a content filter each end where the policy says.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable
from contextlib import aclosing, asynccontextmanager, nullcontext
from typing import Any

import orjson

from ..backend import AIBackend, AIRequest
from ..clock import Clock
from ..errors import AIError, AITimeoutError, BadRequestError, RateLimitError, classify
from ..events import EventBus, EventType, envelope
from ..retry import RetryPolicy
from ..store.cache import ResponseCache
from ..store.limiter import ProviderLimiter
from ..store.queue import Emit, Outcome, TaskQueue
from ..store.records import completed_fields, failed_fields, rate_limited_fields, retrying_fields
from ..task import AITask, TaskStatus
from .chunks import ChunkCoalescer

log = logging.getLogger("chatroom_async.worker.attempt")

# A pool without shared provider limits takes its turn at once (no generator per attempt).
_NO_LIMITER = nullcontext()


class Attempt:
    """Runs attempts for one worker pool.

    Args:
        backend: the AI service.
        clock: time source.
        retry: the backoff policy.
        rng: jitter source (seeded for reproducible runs).
        bus: local event delivery, for progress.
        queue: where events are written (None: nowhere; nothing is followed then).
        publish: also publish progress on the namespace's progress channel.
        cache: the response cache, or None.
        stream: use `backend.stream()` when the backend has one.
        coalesce_s: the least time between two progress writes (`chunks.py`).
        limiter: the provider's shared limits, waited for before each call (None: none).
    """

    def __init__(self, *, backend: AIBackend, clock: Clock, retry: RetryPolicy,
                 rng: random.Random, bus: EventBus, queue: TaskQueue | None, publish: bool,
                 cache: ResponseCache | None, stream: bool, coalesce_s: float = 0.05,
                 limiter: ProviderLimiter | None = None) -> None:
        self.backend, self.clock, self.retry, self.rng = backend, clock, retry, rng
        self.bus, self.queue, self.publish, self.cache = bus, queue, publish, cache
        self.stream = stream and callable(getattr(backend, "stream", None))
        self.coalesce_s = coalesce_s
        self.limiter = limiter

    async def run(self, task: AITask, token: str,
                  rate_limited: int = 0, ready: Awaitable[object] | None = None,
                  ) -> tuple[Outcome, str, AITask]:
        """Run one attempt; return the outcome to record, its event and the final task.

        `rate_limited` counts the task's earlier attempts a provider's rate limit ended:
        those retry on a budget of their own (`RetryPolicy.rate_limit_delay`). `ready` is
        awaited before the first progress write (the attempt's "started" event is out).
        """
        try:
            hit = await self._cache_get(task) if self.cache is not None else None
            if hit is not None:  # before the limiter: a cached answer costs the provider nothing
                return self._completed(task, token, hit, True)
            # Every attempt has its own number, rate-limited ones included: a simulated
            # outcome is drawn by (task, attempt), and a repeated number repeats the outcome.
            request = AIRequest(task.task_id, task.retry_count + rate_limited + 1,
                                task.user_id, task.request_type, task.request_data)
            turn = _NO_LIMITER if self.limiter is None else self._provider_turn(request, token)
            async with turn:  # its wait is not the AI's time
                async with asyncio.timeout(task.timeout):
                    result = await self._call(task, request, token, ready)
            return self._completed(task, token, result, False)
        except TimeoutError:
            error: AIError = AITimeoutError(f"no answer within the task timeout of "
                                            f"{task.timeout:g} s")
        except Exception as exc:  # noqa: BLE001 - every failure becomes an outcome
            error = classify(exc)
        if isinstance(error, RateLimitError) and error.retry_after and self.limiter is not None:
            try:  # the provider said when: every worker of the namespace waits that long
                await self.limiter.pause(error.retry_after)
            except Exception as exc:  # noqa: BLE001 - the retry policy still honours it
                log.warning("could not share a retry_after pause: %r", exc)
        return self._failed(task, token, error, rate_limited)

    @asynccontextmanager
    async def _provider_turn(self, request: AIRequest, token: str) -> AsyncIterator[None]:
        """Hold a turn at the provider (its shared limits) for the length of one call."""
        assert self.limiter is not None
        charge = getattr(self.backend, "tokens_charged", None)
        tokens = charge(request) if callable(charge) else self.limiter.limits.default_tokens
        call_id = f"{request.task_id}:{token}"
        await self.limiter.acquire(call_id, int(tokens))
        try:
            yield
        finally:
            try:
                await self.limiter.release(call_id)
            except Exception as exc:  # noqa: BLE001 - the slot's lease frees it later
                log.warning("could not release a provider call slot: %r", exc)

    async def _call(self, task: AITask, request: AIRequest, token: str,
                    ready: Awaitable[object] | None) -> dict[str, Any]:
        if self.stream:
            result = await self._stream(task, request, token, ready)
        else:
            result = await self.backend.complete(request)
        if not isinstance(result, dict):
            raise BadRequestError(f"the backend returned {type(result).__name__}, not a dict")
        if self.cache is not None:
            try:
                await self.cache.put(task.request_type, task.request_data, result)
            except Exception as exc:  # noqa: BLE001 - the answer stands without the cache
                log.warning("response cache unavailable, not stored: %r", exc)
        return result

    async def _cache_get(self, task: AITask) -> dict[str, Any] | None:
        """A cached answer, or None; a cache that cannot be read is a miss, not a failure."""
        assert self.cache is not None
        try:
            return await self.cache.get(task.request_type, task.request_data)
        except Exception as exc:  # noqa: BLE001 - the backend can still answer
            log.warning("response cache unavailable, calling the backend: %r", exc)
            return None

    async def _stream(self, task: AITask, request: AIRequest, token: str,
                      ready: Awaitable[object] | None) -> dict[str, Any]:
        final: dict[str, Any] | None = None
        writer = None
        if self.queue is not None:
            writer = ChunkCoalescer(lambda p: self._write(task, token, p),
                                    interval_s=self.coalesce_s, ready=ready)
        try:
            async with aclosing(self.backend.stream(request)) as chunks:  # type: ignore[attr-defined]
                async for chunk in chunks:
                    if chunk.result is not None:
                        final = dict(chunk.result)
                    if not chunk.text and chunk.finish_reason is None:
                        continue
                    if writer is not None:
                        writer.add(chunk)
                    if self.bus.has_callbacks(EventType.TASK_PROGRESS):
                        progress = {"index": chunk.index, "count": 1, "text": chunk.text,
                                    "finish_reason": chunk.finish_reason}
                        self.bus.fire(EventType.TASK_PROGRESS, task.copy(progress=progress))
        except BaseException:
            if writer is not None:  # what arrived before the failure is still written
                await asyncio.shield(writer.settle())
            raise
        if writer is not None:
            await writer.close()
        if final is None:
            raise BadRequestError("the stream ended without a final chunk carrying the result")
        return final

    async def _write(self, task: AITask, token: str, progress: dict[str, Any]) -> None:
        """One coalesced chunk to the task's stream (while this attempt holds the lease)."""
        assert self.queue is not None
        event = envelope(EventType.TASK_PROGRESS, task.copy(progress=progress),
                         origin=self.bus.origin, ts=self.clock.now())
        await self.queue.emit([Emit(task.task_id, token, "progress", task.deliveries,
                                    progress["text"], event)], publish=self.publish)

    def _completed(self, task: AITask, token: str, result: dict[str, Any],
                   cached: bool) -> tuple[Outcome, str, AITask]:
        now = self.clock.now()
        try:
            result_json = orjson.dumps(result).decode()
        except TypeError as exc:
            return self._failed(task, token, BadRequestError(f"result is not JSON: {exc}"))
        final = task.copy(status=TaskStatus.COMPLETED, completed_at=now, result=result,
                          cached=cached, error_type=None, error_message=None)
        fields = completed_fields(now, result_json, cached=cached)
        outcome = Outcome(task.task_id, token, "completed", fields,
                          self._event(EventType.TASK_COMPLETED, final),
                          seconds=now - (task.started_at or now))
        return outcome, "task_completed", final

    def _failed(self, task: AITask, token: str, error: AIError,
                rate_limited: int = 0) -> tuple[Outcome, str, AITask]:
        now = self.clock.now()
        error_json = orjson.dumps(error.to_record()).decode()
        common = {"error_type": type(error).__name__, "error_message": error.message}
        wait = self.retry.rate_limit_delay(error, rate_limited, self.rng)
        if wait is not None:  # the provider said "not now": not one of the task's retries
            final = task.copy(status=TaskStatus.RETRYING, **common)
            fields = rate_limited_fields(rate_limited + 1, error_json)
            return (Outcome(task.task_id, token, "retry", fields,
                            self._event(EventType.TASK_RETRYING, final), due=now + wait),
                    "task_retrying", final)
        delay = self.retry.next_delay(error, task.retry_count, task.max_retries, self.rng)
        if delay is None:
            final = task.copy(status=TaskStatus.FAILED, completed_at=now, **common)
            fields = failed_fields(now, error_json)
            return (Outcome(task.task_id, token, "failed", fields,
                            self._event(EventType.TASK_FAILED, final)), "task_failed", final)
        retries = task.retry_count + 1
        final = task.copy(status=TaskStatus.RETRYING, retry_count=retries, **common)
        fields = retrying_fields(retries, error_json)
        return (Outcome(task.task_id, token, "retry", fields,
                        self._event(EventType.TASK_RETRYING, final), due=now + delay),
                "task_retrying", final)

    def _event(self, event: EventType, task: AITask) -> str:
        """The event's envelope, or nothing when no events are sent."""
        if self.queue is None:
            return ""
        return envelope(event, task, origin=self.bus.origin, ts=self.clock.now())
