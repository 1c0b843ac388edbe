"""Events: the one envelope (`EventType`, `envelope`, `TaskEvent`), in-process callbacks,
waiters for `wait_for_task`, and the Redis pub/sub bridge. `docs/events.md` is the contract.

Every event of a task goes to its stream (`follow` reads it; the store writes it) and out
on the namespace's channels: lifecycle events on one, progress on another. A process fires
the events it causes to its own callbacks at once; it hears everyone else's through one
subscription and fires those too, skipping its own (each envelope names its origin). So a
chat server that runs no workers still gets `task_completed` for a reply computed in a
worker process. A process subscribes to the lifecycle channel only once it has a callback
or a waiter, and to the progress channel only once it has a `task_progress` callback: a
worker with neither would receive every other worker's events just to drop them.

Pub/sub forgets what it sent while a subscriber was disconnected. The listener reconnects
(redis-py subscribes again) and then wakes every waiter with None, "look at the record
again", since a task may have finished unheard. `follow` loses nothing: it reads the stream.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from .errors import ProcessorError
from .task import AITask, status_dict

log = logging.getLogger("chatroom_async.events")


class EventType(enum.StrEnum):
    """Every event a task can have; the values are the names on the wire and in
    `add_callback` (`docs/events.md` describes each)."""

    TASK_STARTED = "task_started"
    TASK_COMPLETED = "task_completed"
    TASK_FAILED = "task_failed"
    TASK_PROGRESS = "task_progress"
    TASK_RETRYING = "task_retrying"
    TASK_CANCELLED = "task_cancelled"
    TASK_HANDED_BACK = "task_handed_back"

    @property
    def terminal(self) -> bool:
        """True for the three events that end a task (nothing follows them)."""
        return self in TERMINAL_EVENTS


#: Every event name `add_callback` accepts (the values of `EventType`).
EVENT_TYPES: tuple[str, ...] = tuple(e.value for e in EventType)
TERMINAL_EVENTS = frozenset({EventType.TASK_COMPLETED, EventType.TASK_FAILED,
                             EventType.TASK_CANCELLED})

Callback = Callable[[AITask], Any]

# What a progress event's "task" carries: the task's identity, not its request or result.
_IDENTITY = ("task_id", "user_id", "request_type", "priority", "status", "retry_count",
             "deliveries")


class Channels(Protocol):
    """The pub/sub channels of a namespace (`store.keys.Keys` has them)."""

    @property
    def events(self) -> str:
        """Where lifecycle events are published."""
        ...

    @property
    def progress(self) -> str:
        """Where progress events are published."""
        ...

    @property
    def cancel(self) -> str:
        """Where cancels of running tasks are published."""
        ...


def envelope(event: EventType | str, task: AITask, *, origin: str, ts: float) -> str:
    """One event as JSON: the only place the envelope is built (`docs/events.md`).

    `origin` comes first, so that a process can skip its own messages by their prefix.
    A progress event's "task" holds the task's identity and `progress` (the chunk); any
    other event's holds the task's status dict, as `get_task_status` returns it.
    """
    kind = EventType(event)
    if kind is EventType.TASK_PROGRESS:
        full = task.to_dict(copy=False)
        body = {name: full[name] for name in _IDENTITY}
        body["progress"] = task.progress
    else:
        body = status_dict(task, copy=False, partial=False)
    return orjson.dumps({"origin": origin, "type": kind.value, "task_id": task.task_id,
                         "attempt": task.deliveries, "ts": ts, "task": body}).decode()


def message_json(events: list[str]) -> str:
    """Envelopes (JSON documents) as one pub/sub message: a JSON array of them."""
    return "[" + ",".join(events) + "]"


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One event of one task, as `AsyncAIProcessor.follow` yields it.

    Attributes:
        cursor: the event's place in the task's stream (1, 2, ...): pass it as `after=`
            to resume right after this event.
        type: what happened.
        task_id: whose event.
        attempt: the delivery it belongs to (1 for the first run); a `task_started` with a
            new attempt means the text of earlier attempts is void.
        ts: when it was sent (the sender's clock, seconds).
        origin: the id of the process that sent it.
        task: the task's status dict (lifecycle events) or its identity plus `progress`.
    """

    cursor: int
    type: EventType
    task_id: str
    attempt: int
    ts: float
    origin: str
    task: dict[str, Any]

    @classmethod
    def from_json(cls, cursor: int, raw: str | bytes) -> TaskEvent:
        data = orjson.loads(raw)
        return cls(cursor=cursor, type=EventType(data["type"]), task_id=data["task_id"],
                   attempt=int(data["attempt"]), ts=float(data["ts"]), origin=data["origin"],
                   task=data["task"])

    @property
    def terminal(self) -> bool:
        return self.type.terminal

    @property
    def text(self) -> str:
        """A progress event's text ("" for any other event)."""
        progress = self.task.get("progress") if self.type is EventType.TASK_PROGRESS else None
        return str(progress.get("text", "")) if progress else ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for a client (the chat room sends this over its WebSocket)."""
        return {"cursor": self.cursor, "type": self.type.value, "task_id": self.task_id,
                "attempt": self.attempt, "ts": self.ts, "origin": self.origin,
                "task": self.task}


def _done_future() -> asyncio.Future[None]:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


class EventBus:
    """Callbacks, waiters and the pub/sub bridge of one processor.

    Args:
        origin: this process's id, to skip its own published events.
        on_cancel: called with a task id when another process cancels a running task.
    """

    def __init__(self, origin: str, on_cancel: Callable[[str], None] | None = None) -> None:
        self.origin = origin
        self._own_prefix = '[{"origin":' + orjson.dumps(origin).decode() + ","
        self.on_cancel = on_cancel
        self._callbacks: dict[str, list[Callback]] = {name: [] for name in EVENT_TYPES}
        # None wakes a waiter to read the task's record again (see the module docstring).
        self._waiters: dict[str, list[asyncio.Future[AITask | None]]] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._channels: Channels | None = None
        self._subscribing: asyncio.Future[None] | None = None  # to the event channel
        self._subscribing_progress: asyncio.Future[None] | None = None  # to progress
        self._hearing: asyncio.Event | None = None  # the server confirmed that subscription
        self._closing = False
        self._lost = False  # the connection dropped; set again once resubscribed
        self.callback_errors = 0
        self.lost_connections = 0

    def add_callback(self, event: str, callback: Callback) -> None:
        """Register `callback(task)` (sync or async) for `event`.

        Events of this process reach it at once. Other processes' events reach it once this
        process is subscribed to them: from start() on if a callback was added before it,
        else about one round trip after the first callback is added (`hear_others` waits
        for that moment). Events published while the connection is down are not heard.

        Raises:
            ValueError: for an unknown event name (the chapter ignored those silently).
            TypeError: if `callback` is not callable.
        """
        if event not in self._callbacks:
            raise ValueError(f"unknown event {event!r}; expected one of {', '.join(EVENT_TYPES)}")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        self._callbacks[event].append(callback)
        if self._pubsub is not None:
            if event == EventType.TASK_PROGRESS:
                self._subscribe_progress_soon()
            else:
                self._subscribe_soon()

    def has_callbacks(self, event: str) -> bool:
        return bool(self._callbacks[event])

    def fire(self, event: str, task: AITask) -> None:
        """Deliver an event to callbacks and waiters, in this process only."""
        if event in TERMINAL_EVENTS:
            for fut in self._waiters.pop(task.task_id, ()):
                if not fut.done():
                    fut.set_result(task)
        for callback in self._callbacks[event]:
            try:
                outcome = callback(task.copy())
            except Exception:
                self.callback_errors += 1
                log.exception("callback %r for %s raised", callback, event)
                continue
            if inspect.isawaitable(outcome):
                pending = asyncio.ensure_future(self._guard(outcome, event))
                self._pending.add(pending)
                pending.add_done_callback(self._pending.discard)

    async def _guard(self, awaitable: Any, event: str) -> None:
        try:
            await awaitable
        except Exception:
            self.callback_errors += 1
            log.exception("async callback for %s raised", event)

    def waiter(self, task_id: str) -> asyncio.Future[AITask | None]:
        """A future resolved with the task when it finishes (registered before reading), or
        with None when the task may have finished unheard: read its record again."""
        fut: asyncio.Future[AITask | None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(task_id, []).append(fut)
        return fut

    def drop_waiter(self, task_id: str, fut: asyncio.Future[AITask | None]) -> None:
        waiters = self._waiters.get(task_id)
        if waiters and fut in waiters:
            waiters.remove(fut)
            if not waiters:
                del self._waiters[task_id]

    async def connect(self, redis: Redis, channels: Channels) -> None:
        """Subscribe to the namespace's cancel channel, and to its event channel if a
        callback is registered already (else on the first callback or waiter); then start
        listening."""
        self._channels = channels
        self._pubsub = redis.pubsub()
        self._hearing = asyncio.Event()  # made here: an Event belongs to one event loop
        self._closing = self._lost = False
        self._subscribing = None
        self._subscribing_progress = None
        subscribe = [channels.cancel]
        if any(self._callbacks[e] for e in EVENT_TYPES if e != EventType.TASK_PROGRESS):
            subscribe.append(channels.events)
            self._subscribing = _done_future()
        if self._callbacks[EventType.TASK_PROGRESS]:
            subscribe.append(channels.progress)
            self._subscribing_progress = _done_future()
        await self._pubsub.subscribe(*subscribe)  # sent before we return
        self._listener = asyncio.create_task(self._listen(), name="chatroom_async.events")

    def _subscribe_soon(self) -> None:
        """Start subscribing to the event channel, once per connection."""
        if self._subscribing is not None or self._closing:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            log.warning("a callback added outside the event loop hears other processes' "
                        "events only after the next wait_for_task or hear_others()")
            return
        assert self._channels is not None
        self._subscribing = asyncio.create_task(self._subscribe(self._channels.events),
                                                name="chatroom_async.events.subscribe")

    def _subscribe_progress_soon(self) -> None:
        """Start subscribing to the progress channel (only a task_progress callback wants
        every process's chunks; a follower reads its task's stream instead)."""
        if self._subscribing_progress is not None or self._closing or self._channels is None:
            return
        self._subscribing_progress = asyncio.ensure_future(self._subscribe(self._channels.progress))

    async def _subscribe(self, channel: str) -> None:
        """Send SUBSCRIBE for a channel, again with backoff while Redis cannot be reached
        (redis-py remembers a channel only once the command went out)."""
        assert self._pubsub is not None
        delay = 0.05
        while not self._closing:
            try:
                await self._pubsub.subscribe(channel)
                return
            except (RedisError, OSError) as exc:
                log.warning("could not subscribe to other processes' events (%r); trying "
                            "again in %.2f s", exc, delay)
                await self._pause(delay)
                delay = min(2 * delay, 2.0)

    async def hear_others(self) -> None:
        """Subscribe to other processes' events if this process is not yet, and return once
        the server has confirmed it (or the bus is closed): every event published after
        that reaches this process. Does nothing before `connect`. While Redis cannot be
        reached this waits: bound it with a timeout."""
        if self._pubsub is None or self._listener is None or self._hearing is None:
            return
        self._subscribe_soon()
        if not self._hearing.is_set():
            heard = asyncio.ensure_future(self._hearing.wait())
            try:  # the listener ends only with close(): then nothing will be heard
                await asyncio.wait({heard, self._listener}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                heard.cancel()

    async def _listen(self) -> None:
        """Deliver messages until close(). A lost connection is retried with backoff."""
        assert self._pubsub is not None
        delay = 0.05
        while self._pubsub.subscribed:
            try:
                async for message in self._pubsub.listen():
                    if message["type"] == "message":  # a connection that works: reset
                        delay = 0.05
                    self._dispatch(message)
                return  # unsubscribed: close()
            except (RedisError, OSError) as exc:
                self.lost_connections += 1
                self._lost = True
                if self._hearing is not None:
                    self._hearing.clear()
                log.warning("events connection lost (%r); listening again in %.2f s", exc, delay)
                await self._pause(delay)
                delay = min(2 * delay, 2.0)

    async def _pause(self, seconds: float) -> None:
        """The backoff before listening again after a lost connection (not a poll)."""
        await asyncio.sleep(seconds)

    def _dispatch(self, message: dict[str, Any]) -> None:
        assert self._channels is not None and self._hearing is not None
        kind = message["type"]
        if kind == "subscribe" and message["channel"] == self._channels.events:
            self._hearing.set()
            if self._lost:  # subscribed again: whatever ended meanwhile went unheard
                self._lost = False
                for waiters in list(self._waiters.values()):
                    for fut in waiters:
                        if not fut.done():
                            fut.set_result(None)
        if kind != "message":
            return
        try:
            self._on_message(message["channel"], message["data"])
        except Exception:
            log.exception("bad message on %s", message.get("channel"))

    def _on_message(self, channel: str, data: str) -> None:
        assert self._channels is not None
        if channel == self._channels.cancel:
            if self.on_cancel is not None:
                self.on_cancel(data)
            return
        if data.startswith(self._own_prefix):
            return  # our own events, already delivered here: skip without parsing them
        # A process stays subscribed after its last waiter is gone: with nobody here to
        # deliver to, or nobody for this event, the task is not even rebuilt.
        if not self._waiters and not any(self._callbacks.values()):
            return
        for item in orjson.loads(data):
            if item.get("origin") == self.origin:
                continue
            event, body = item["type"], item["task"]
            if self._callbacks[event] or (event in TERMINAL_EVENTS
                                          and body.get("task_id") in self._waiters):
                self.fire(event, AITask.from_dict(body))

    async def close(self) -> None:
        """Stop listening and wait for running async callbacks (cancelled after 5 s)."""
        self._closing = True
        for subscribing in (self._subscribing, self._subscribing_progress):
            if subscribing is not None:
                subscribing.cancel()  # a retry loop while Redis is unreachable
                await asyncio.gather(subscribing, return_exceptions=True)
        self._subscribing = self._subscribing_progress = None
        if self._pubsub is not None and self._listener is not None:
            # Unsubscribing ends `listen()` cleanly; cancelling a read in flight can leave
            # the connection (fakeredis's especially) unable to close.
            try:
                await self._pubsub.unsubscribe()
                await asyncio.wait_for(asyncio.shield(self._listener), timeout=2.0)
            except Exception:  # noqa: BLE001 - the connection is going away anyway
                log.debug("pub/sub listener did not end cleanly; cancelling it")
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        self._listener = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
        if self._pending:
            _, late = await asyncio.wait(set(self._pending), timeout=5.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for waiters in self._waiters.values():  # a wait_for_task still waiting: tell it why
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(ProcessorError("the processor stopped during the wait"))
        self._waiters.clear()
