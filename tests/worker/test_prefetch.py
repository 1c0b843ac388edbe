"""`ProcessorSettings(prefetch=N)`: claimed tasks held, leased, started as slots free.

On fakeredis and on the real Redis. The backend here lets each task end only when the test
says so, so every step is driven by an event, never by time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from chatroom_async import (
    AsyncAIProcessor,
    FunctionBackend,
    ProcessorSettings,
    RetryPolicy,
    ServerError,
    TaskPriority,
)
from tests.conftest import InFlight, MakeProcessor, wait_until

CHAT = {"user_id": 1, "request_type": "chat_completion", "request_data": {"message": "hi"}}


class Turnstile:
    """A backend whose tasks each end when `finish(task_id)` is called; counts overlap."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.changed = asyncio.Event()
        self.in_flight = InFlight()
        self._gates: dict[str, asyncio.Event] = {}

    def _gate(self, task_id: str) -> asyncio.Event:
        return self._gates.setdefault(task_id, asyncio.Event())

    def finish(self, task_id: str) -> None:
        self._gate(task_id).set()

    async def complete(self, request: Any) -> dict[str, Any]:
        self.started.append(request.task_id)
        self.changed.set()
        try:
            with self.in_flight:
                await self._gate(request.task_id).wait()
        finally:
            self.changed.set()
        return {"response": request.task_id}


def held_ids(proc: AsyncAIProcessor) -> list[str]:
    assert proc.pool is not None
    return [run.task.task_id for run in proc.pool.slots.held]


def watch_launches(proc: AsyncAIProcessor) -> asyncio.Event:
    """An event set each time the pool has placed newly claimed tasks (run or held)."""
    assert proc.pool is not None
    pool, launched, original = proc.pool, asyncio.Event(), proc.pool._launch

    def launch(claimed: Any, now: float) -> None:
        original(claimed, now)
        launched.set()

    pool._launch = launch  # type: ignore[method-assign]
    return launched


def note_idle_waits(proc: AsyncAIProcessor, state: Callable[[], Any]) -> list[Any]:
    """`state()` at every idle wait the pool starts, through either way to wait for work
    (`wait_for_work`, or `wait_then_claim`, which a pool on the system clock uses). Install
    before the pool's first claim."""
    assert proc.queue is not None
    queue, noted = proc.queue, []
    for name in ("wait_for_work", "wait_then_claim"):
        original = getattr(queue, name)

        async def noting(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            noted.append(state())
            return await _original(*args, **kwargs)

        setattr(queue, name, noting)
    return noted


class StalledRecording:
    """Holds a worker's outcome-recording calls (`finish`, `finish_and_claim`) until `go`
    is set; `calls` counts the calls that came, and `arrived` is set by each."""

    def __init__(self, proc: AsyncAIProcessor, arrived: asyncio.Event | None = None) -> None:
        assert proc.queue is not None
        self.go, self.arrived, self.calls = asyncio.Event(), arrived or asyncio.Event(), 0
        for name in ("finish", "finish_and_claim"):
            setattr(proc.queue, name, self._stalled(getattr(proc.queue, name)))

    def _stalled(self, original: Any) -> Any:
        async def stalled(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            self.arrived.set()
            await self.go.wait()
            return await original(*args, **kwargs)

        return stalled


def test_prefetch_must_be_a_non_negative_int() -> None:
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="prefetch"):
            ProcessorSettings(prefetch=bad)  # type: ignore[arg-type]
    for bad in (0, -0.5, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="prefetch_below_s"):
            ProcessorSettings(prefetch_below_s=bad)  # type: ignore[arg-type]
    defaults = ProcessorSettings()
    assert defaults.prefetch == 10 and defaults.prefetch_below_s == 0.25


async def test_held_tasks_start_as_slots_free_never_beyond_max_workers(
        make_processor: MakeProcessor) -> None:
    client = await make_processor(max_workers=0)
    ids = [await client.submit_task(**CHAT) for _ in range(8)]
    backend = Turnstile()
    worker = await make_processor(max_workers=2, backend=backend, prefetch=3,
                                  prefetch_below_s=None)
    await wait_until(lambda: len(backend.started) == 2, backend.changed)
    # Two running and three held, all five leased; three still ready in Redis. Every
    # process's stats count the held ones apart: the claim that took them counted them.
    assert held_ids(worker) == ids[2:5]
    stats = await client.get_stats()
    assert (stats["active_tasks_count"], stats["in_flight"], stats["held"]) == (2, 2, 3)
    assert stats["current_queue_size"] == 3
    for task_id in ids:
        backend.finish(task_id)
    for task_id in ids:
        assert (await client.wait_for_task(task_id, timeout=10))["status"] == "completed"
    stats = await client.get_stats()
    assert (stats["in_flight"], stats["held"]) == (0, 0)
    # Equal priority: submit order, held ones included (later claims may overlap).
    assert backend.started[:5] == ids[:5] and sorted(backend.started) == sorted(ids)
    assert backend.in_flight.peak == 2


async def test_every_process_counts_running_and_held_tasks_exactly_as_they_change(
        make_processor: MakeProcessor) -> None:
    """The held count changes in the same step as the calls that claim and record: right
    after each task's end is heard, another process's stats show exactly the tasks running
    in flight, and a sampler reading all along never sees more in flight than the slots."""
    client = await make_processor(max_workers=0)
    total = 14
    ids = [await client.submit_task(**CHAT) for _ in range(total)]
    backend = Turnstile()
    worker = await make_processor(max_workers=3, backend=backend, prefetch=4,
                                  prefetch_below_s=None)
    assert worker.queue is not None
    corrected, adjust = asyncio.Event(), worker.queue.adjust_held

    async def adjust_and_tell(worker_id: str, delta: int) -> None:
        await adjust(worker_id, delta)
        corrected.set()

    worker.queue.adjust_held = adjust_and_tell  # type: ignore[method-assign]
    samples: list[tuple[int, int]] = []
    sampling = True

    async def sample() -> None:
        while sampling:
            stats = await client.get_stats()
            samples.append((stats["in_flight"], stats["held"]))

    sampler = asyncio.create_task(sample())
    rng = random.Random(5)
    ended: set[str] = set()
    await wait_until(lambda: len(backend.started) == 3, backend.changed)
    cancelled = held_ids(worker)[-1]  # a held task cancelled from another process
    assert await client.cancel_task(cancelled) is True
    await wait_until(lambda: cancelled not in held_ids(worker) and corrected.is_set(),
                     corrected)
    left = total - 1
    while left:
        running = [t for t in backend.started if t not in ended]
        task_id = rng.choice(running)
        backend.finish(task_id)
        ended.add(task_id)
        assert (await client.wait_for_task(task_id, timeout=10))["status"] == "completed"
        left -= 1
        stats = await client.get_stats()
        assert stats["in_flight"] == min(3, left)
        assert stats["in_flight"] + stats["held"] + stats["current_queue_size"] == left
    sampling = False
    await sampler
    assert sorted(ended) == sorted(set(ids) - {cancelled})
    assert (await client.get_stats())["held"] == 0
    assert len(samples) > 10 and max(i for i, _ in samples) <= 3
    assert max(i + h for i, h in samples) <= 3 + 4


async def test_a_held_count_left_wrong_by_a_failed_call_is_set_whole_once_idle(
        make_processor: MakeProcessor) -> None:
    client = await make_processor(max_workers=0)
    ids = [await client.submit_task(**CHAT) for _ in range(4)]
    backend = Turnstile()
    worker = await make_processor(max_workers=1, backend=backend, prefetch=3,
                                  prefetch_below_s=None)
    assert worker.queue is not None
    failed, adjust = asyncio.Event(), worker.queue.adjust_held

    async def unreachable_once(worker_id: str, delta: int) -> None:
        if not failed.is_set():
            failed.set()
            raise ConnectionError("Redis went away")
        await adjust(worker_id, delta)

    worker.queue.adjust_held = unreachable_once  # type: ignore[method-assign]
    await wait_until(lambda: len(backend.started) == 1 and len(held_ids(worker)) == 3,
                     backend.changed)
    assert await client.cancel_task(ids[3]) is True  # held: the count must come down by 1
    await wait_until(failed.is_set, failed)
    assert (await client.get_stats())["held"] == 3  # one too many: the correction failed
    for task_id in ids[:3]:
        await wait_until(lambda t=task_id: t in backend.started, backend.changed)
        backend.finish(task_id)
        assert (await client.wait_for_task(task_id, timeout=10))["status"] == "completed"
    # The claim sent as the last attempt ended set the count whole.
    late = await client.submit_task(**CHAT)
    await wait_until(lambda: late in backend.started, backend.changed)
    backend.finish(late)
    assert (await client.wait_for_task(late, timeout=10))["status"] == "completed"
    stats = await client.get_stats()
    assert (stats["in_flight"], stats["held"]) == (0, 0)


async def test_a_pool_holds_once_its_attempts_prove_short(
        make_processor: MakeProcessor) -> None:
    # With `prefetch_below_s` as it comes, nothing is held before an attempt has ended; a
    # short one opens the holds (up to `prefetch`; here the four tasks left).
    client = await make_processor(max_workers=0)
    ids = await client.submit_many([CHAT] * 6)
    backend = Turnstile()
    worker = await make_processor(max_workers=1, backend=backend, prefetch=10)
    await wait_until(lambda: len(backend.started) == 1, backend.changed)
    assert held_ids(worker) == []
    assert (await client.get_stats())["current_queue_size"] == 5
    backend.finish(ids[0])  # ends within milliseconds: well under prefetch_below_s
    await wait_until(lambda: len(backend.started) == 2 and len(held_ids(worker)) == 4,
                     backend.changed, timeout=10)
    assert backend.started == ids[:2] and held_ids(worker) == ids[2:]
    for task_id in ids:
        backend.finish(task_id)
    for task_id in ids:
        assert (await client.wait_for_task(task_id, timeout=10))["status"] == "completed"
    assert backend.started == ids and backend.in_flight.peak == 1


async def test_holds_follow_the_moving_average_of_attempt_times(
        make_processor: MakeProcessor) -> None:
    worker = await make_processor(max_workers=1, backend=Turnstile(), prefetch=3,
                                  prefetch_below_s=1.0)
    pool = worker.pool
    assert pool is not None and pool.slots.prefetch == 0  # none before the first attempt
    pool._attempt_took(0.2)
    assert pool.slots.prefetch == 3
    pool._attempt_took(5.0)  # one long attempt: 0.2 + 0.2 * 4.8 = 1.16 >= 1.0
    assert pool.slots.prefetch == 0
    pool._attempt_took(5.0)  # 1.928
    opened = []
    for _ in range(4):  # 1.58, 1.31, 1.08, then 0.91: the fourth short one opens them
        pool._attempt_took(0.2)
        opened.append(pool.slots.prefetch)
    assert opened == [0, 0, 0, 3]
    assert pool._mean_attempt_s == pytest.approx(0.2 + 1.728 * 0.8 ** 4)


async def test_holds_go_back_to_the_queue_once_attempts_grow_long(
        make_processor: MakeProcessor) -> None:
    # Held through long attempts, tasks would keep whatever falls due meanwhile (a retry)
    # waiting behind them, with no claim to sweep it in. So when the average crosses
    # `prefetch_below_s`, the tasks still held go back to the ready set, in their places,
    # and the next claims take them in order; their claims are not held against their
    # delivery limit (`handed_back`).
    client = await make_processor(max_workers=0)
    ids = await client.submit_many([CHAT] * 5)
    backend = Turnstile()
    worker = await make_processor(max_workers=1, backend=backend, prefetch=3,
                                  prefetch_below_s=1.0)
    pool, queue = worker.pool, worker.queue
    assert pool is not None and queue is not None
    released, handed_back = asyncio.Event(), []
    release = queue.release

    async def noting_release(runs: Any, **kwargs: Any) -> int:
        count = await release(runs, **kwargs)
        handed_back.append([task_id for task_id, _token, _event in runs])
        released.set()
        return count

    queue.release = noting_release  # type: ignore[method-assign]
    launched = watch_launches(worker)
    await wait_until(lambda: len(backend.started) == 1, backend.changed)
    backend.finish(ids[0])  # short: the holds open
    await wait_until(lambda: len(held_ids(worker)) == 3, launched)
    assert backend.started == ids[:2] and held_ids(worker) == ids[2:]
    pool._attempt_took(30.0)  # as if attempts had grown long: holds are off
    assert pool.slots.prefetch == 0 and held_ids(worker) == ids[2:]
    backend.finish(ids[1])  # its slot goes to the first held task; the other two go back
    await wait_until(lambda: bool(handed_back), released)
    assert handed_back == [ids[3:]] and held_ids(worker) == []
    assert backend.started == ids[:3]
    counts = await queue.counts()
    assert sum(counts.ready_by_priority.values()) == 2
    for task_id in ids:
        backend.finish(task_id)
    for task_id in ids:
        record = await client.wait_for_task(task_id, timeout=10)
        assert record["status"] == "completed"
    assert backend.started == ids and backend.in_flight.peak == 1
    back = [await client.get_task_status(task_id) for task_id in ids[3:]]
    assert [(r["deliveries"], r["handed_back"]) for r in back] == [(2, 1), (2, 1)]


async def test_outcomes_waiting_to_be_recorded_keep_their_places(
        make_processor: MakeProcessor) -> None:
    # A run frees its slot when its attempt ends but keeps its place until its outcome is
    # recorded: with recording stalled, 2 slots + 1 held place let exactly 3 tasks through,
    # and the other 7 stay queued (no unbounded backlog of unrecorded, unrenewed leases).
    done, ended = [], asyncio.Event()

    async def instant(request: Any) -> dict[str, Any]:
        done.append(request.task_id)
        ended.set()
        return {"response": "ok"}

    worker = await make_processor(max_workers=2, backend=FunctionBackend(instant), prefetch=1,
                                  prefetch_below_s=None)
    assert worker.pool is not None
    stall = StalledRecording(worker, arrived=ended)
    client = await make_processor(max_workers=0)
    ids = await client.submit_many([CHAT] * 10)
    await wait_until(lambda: len(done) >= 3 and stall.calls > 0, ended)
    stats = await client.get_stats()
    assert len(done) == 3 and stats["current_queue_size"] == 7
    assert worker.pool.slots.free() <= 0  # the stalled call has promised the 3 places
    stall.go.set()
    for task_id in ids:
        assert (await client.wait_for_task(task_id, timeout=10))["status"] == "completed"


async def test_a_held_task_starts_before_the_previous_outcome_is_recorded(
        make_processor: MakeProcessor) -> None:
    # The point of holding: no round trip between one task and the next. Recording is
    # stalled here; the held task must start anyway, and then everything completes.
    client = await make_processor(max_workers=0)
    first, second = [await client.submit_task(**CHAT) for _ in range(2)]
    backend = Turnstile()
    worker = await make_processor(max_workers=1, backend=backend, prefetch=1, prefetch_below_s=None)
    stall = StalledRecording(worker)
    await wait_until(lambda: backend.started == [first], backend.changed)
    backend.finish(first)
    await wait_until(lambda: backend.started == [first, second], backend.changed)
    assert (await client.get_task_status(first))["status"] == "processing"  # type: ignore[index]
    stall.go.set()
    backend.finish(second)
    one, two = [await client.wait_for_task(t, timeout=10) for t in (first, second)]
    assert one["status"] == two["status"] == "completed"
    assert stall.calls  # the outcomes did go through the stalled calls
    # Both were claimed together; the record of the held one says when it really started.
    assert two["started_at"] >= one["completed_at"] > one["started_at"]


class VipFirst:
    """A scheduler that puts user 99 first whatever the priority (lower scores run first)."""

    def score(self, task: Any, user_context: Any) -> float:
        return task.created_at - (1000.0 if task.user_id == 99 else 0.0)


@pytest.mark.parametrize("ahead", ["urgent", "vip of low priority"])
async def test_a_task_scored_ahead_and_claimed_later_goes_ahead_of_held_ones(
        make_processor: MakeProcessor, ahead: str) -> None:
    # Strict order would run u right after a. With prefetch it waits behind b, which was
    # already held when u was submitted (the documented price), but ahead of c: held tasks
    # keep the ready set's order, the scheduler's score, not just the priority.
    if ahead == "urgent":
        client = await make_processor(max_workers=0)
        late = {**CHAT, "priority": TaskPriority.URGENT}
    else:
        client = await make_processor(max_workers=0, scheduler=VipFirst())
        late = {**CHAT, "user_id": 99, "priority": TaskPriority.LOW}
    a, b, c = [await client.submit_task(**CHAT) for _ in range(3)]
    backend = Turnstile()
    worker = await make_processor(max_workers=1, backend=backend, prefetch=2, prefetch_below_s=None)
    launched = watch_launches(worker)
    await wait_until(lambda: backend.started == [a], backend.changed)
    assert held_ids(worker) == [b, c]
    u = await client.submit_task(**late)
    backend.finish(a)  # b starts at once; recording a claims u for the free place
    await wait_until(lambda: held_ids(worker) == [u, c], launched)
    assert backend.started == [a, b]
    for task_id in (b, u, c):
        backend.finish(task_id)
    for task_id in (b, u, c):
        assert (await client.wait_for_task(task_id, timeout=10))["status"] == "completed"
    assert backend.started == [a, b, u, c]


async def test_held_tasks_are_renewed_cancelled_and_handed_back_on_stop(
        make_processor: MakeProcessor) -> None:
    client = await make_processor(max_workers=0)
    a, b, c = [await client.submit_task(**CHAT) for _ in range(3)]
    backend = Turnstile()
    worker = await make_processor(max_workers=1, backend=backend, prefetch=2,
                                  prefetch_below_s=None, lease_s=1.0)
    assert worker.queue is not None
    renewed, original = asyncio.Event(), worker.queue.renew
    renewals: list[set[str]] = []

    async def counting_renew(leases: Any, deadline: float) -> list[str]:
        lost = await original(leases, deadline)
        renewals.append({task_id for task_id, _ in leases})
        renewed.set()
        return lost

    worker.queue.renew = counting_renew  # type: ignore[method-assign]
    await wait_until(lambda: backend.started == [a], backend.changed)
    assert held_ids(worker) == [b, c]
    assert worker.pool is not None
    cancelled, cancel_local = asyncio.Event(), worker.pool.cancel_local
    answers: list[bool] = []

    def cancel_and_tell(task_id: str) -> bool:
        answers.append(cancel_local(task_id))
        cancelled.set()
        return answers[-1]

    worker.pool.cancel_local = cancel_and_tell  # type: ignore[method-assign]
    assert await client.cancel_task(b) is True  # reaches the worker over pub/sub
    await wait_until(lambda: bool(answers), cancelled)
    assert answers == [True] and held_ids(worker) == [c]

    # Three renewals span more than the 1 s lease: had c's lease lapsed, the idle worker
    # started meanwhile would have reclaimed and run it.
    other = Turnstile()
    await make_processor(max_workers=2, backend=other, lease_s=1.0)
    await wait_until(lambda: len(renewals) >= 3 and b not in renewals[-1], renewed)
    assert renewals[-1] == {a, c} and held_ids(worker) == [c]
    assert other.started == []

    stats = await client.get_stats()
    assert (stats["in_flight"], stats["held"]) == (1, 1)  # a, and c held
    await worker.stop(drain_timeout_s=0.05)  # a is cut short; both go back to the queue
    assert (await client.get_stats())["held"] == 0  # the holds left with the registration
    await wait_until(lambda: sorted(other.started) == sorted([a, c]), other.changed)
    for task_id in (a, c):
        other.finish(task_id)
        final = await client.wait_for_task(task_id, timeout=10)
        assert final["status"] == "completed"
        assert final["deliveries"] == 2 and final["handed_back"] == 1  # claimed twice
    assert (await client.get_task_status(b))["status"] == "cancelled"  # type: ignore[index]
    assert backend.started == [a] and b not in other.started


async def test_a_held_task_whose_lease_was_lost_is_dropped_not_run(
        make_processor: MakeProcessor) -> None:
    # The worker's renewals leave out the held task h until `include` is set, so h's lease
    # lapses and another worker reclaims and runs it. The next full renewal hears that h is
    # lost: the first worker must drop h, not run it when its slot frees.
    client = await make_processor(max_workers=0)
    r, h = [await client.submit_task(**CHAT) for _ in range(2)]
    first = Turnstile()
    worker = await make_processor(max_workers=1, backend=first, prefetch=1,
                                  prefetch_below_s=None, lease_s=1.0)
    assert worker.queue is not None
    include, renewed, original = asyncio.Event(), asyncio.Event(), worker.queue.renew
    lost_seen: list[str] = []

    async def renew_without_h(leases: Any, deadline: float) -> list[str]:
        sent = leases if include.is_set() else [(t, k) for t, k in leases if t != h]
        lost = await original(sent, deadline)
        lost_seen.extend(lost)
        renewed.set()
        return lost

    worker.queue.renew = renew_without_h  # type: ignore[method-assign]
    await wait_until(lambda: first.started == [r], first.changed)
    assert held_ids(worker) == [h]
    other = Turnstile()
    await make_processor(max_workers=1, backend=other, lease_s=1.0)
    await wait_until(lambda: other.started == [h], other.changed)  # reclaimed once lapsed
    include.set()
    await wait_until(lambda: h in lost_seen, renewed)
    assert held_ids(worker) == []
    first.finish(r)
    other.finish(h)
    for task_id in (r, h):
        assert (await client.wait_for_task(task_id, timeout=10))["status"] == "completed"
    assert first.started == [r] and other.started == [h]
    assert (await client.get_task_status(h))["deliveries"] == 2  # type: ignore[index]


async def test_retries_with_prefetch_all_end_once_within_the_limits(
        make_processor: MakeProcessor) -> None:
    # Every task fails its first attempt with a retryable error due at once: retry outcomes
    # settle their places like any other, the retries come back through the same claims,
    # and every task completes exactly once, never more than 3 at a time.
    attempts: dict[str, int] = {}
    in_flight = InFlight()
    done, ended = [], asyncio.Event()

    async def flaky(request: Any) -> dict[str, Any]:
        attempts[request.task_id] = attempts.get(request.task_id, 0) + 1
        with in_flight:
            await asyncio.sleep(0)
            if attempts[request.task_id] == 1:
                raise ServerError("try again")
        done.append(request.task_id)
        ended.set()
        return {"response": "ok"}

    client = await make_processor(max_workers=0)
    ids = await client.submit_many([CHAT] * 30)
    await make_processor(max_workers=3, backend=FunctionBackend(flaky), prefetch=2,
                         prefetch_below_s=None,
                         retry=RetryPolicy(base_s=0.0, jitter="none"))
    await wait_until(lambda: len(done) == 30, ended, timeout=30)
    for task_id in ids:
        final = await client.wait_for_task(task_id, timeout=10)
        assert final["status"] == "completed" and final["retry_count"] == 1
    assert sorted(done) == sorted(ids) and set(attempts.values()) == {2}
    assert in_flight.peak == 3  # the slots were used, and never beyond


async def test_a_worker_holding_tasks_leaves_the_wake_up_to_an_idle_one(
        make_processor: MakeProcessor) -> None:
    # Redis keeps one wake-up token and hands it to the worker that has waited longest. A
    # worker that holds tasks has no free slot: were it waiting too, it would take the token
    # and start nothing, and the idle worker would sleep on (60 s here).
    client = await make_processor(max_workers=0)
    a, b = [await client.submit_task(**CHAT) for _ in range(2)]
    busy = Turnstile()
    holder = await make_processor(max_workers=1, backend=busy, prefetch=2, prefetch_below_s=None,
                                  max_idle_wait_s=60.0)
    assert holder.pool is not None
    pool = holder.pool
    held_while_waiting = note_idle_waits(holder, lambda: len(pool.slots.held))
    await wait_until(lambda: busy.started == [a], busy.changed)
    assert held_ids(holder) == [b]
    assert held_while_waiting == []  # its claim came back short, yet it did not wait
    idle = Turnstile()
    await make_processor(max_workers=2, backend=idle, max_idle_wait_s=60.0)
    late = await client.submit_task(**CHAT)
    await wait_until(lambda: idle.started == [late], idle.changed)
    for backend, task_id in ((busy, a), (busy, b), (idle, late)):
        backend.finish(task_id)
    for task_id in (a, b, late):
        assert (await client.wait_for_task(task_id, timeout=10))["status"] == "completed"
    assert not any(held_while_waiting)


async def test_a_full_pool_holding_nothing_leaves_the_wake_up_to_an_idle_one(
        make_processor: MakeProcessor) -> None:
    # Holds allowed, the queue empty after its claim: its one slot is busy and it holds
    # nothing. Waiting for work now, it would take the token of the next task and hold it
    # while the idle worker slept on: it waits for its own slot instead.
    client = await make_processor(max_workers=0)
    a = await client.submit_task(**CHAT)
    busy = Turnstile()
    holder = await make_processor(max_workers=1, backend=busy, prefetch=2, prefetch_below_s=None,
                                  max_idle_wait_s=60.0)
    assert holder.pool is not None
    pool = holder.pool
    busy_while_waiting = note_idle_waits(holder, lambda: not pool.slots.slot_open())
    await wait_until(lambda: busy.started == [a], busy.changed)
    idle = Turnstile()
    await make_processor(max_workers=1, backend=idle, max_idle_wait_s=60.0)
    late = await client.submit_task(**CHAT)
    await wait_until(lambda: idle.started == [late], idle.changed)
    assert held_ids(holder) == [] and not any(busy_while_waiting)
    for backend, task_id in ((busy, a), (idle, late)):
        backend.finish(task_id)
    for task_id in (a, late):
        assert (await client.wait_for_task(task_id, timeout=10))["status"] == "completed"


async def test_a_held_task_claimed_again_by_its_own_worker_runs_once(
        make_processor: MakeProcessor) -> None:
    # h2's first lease is never renewed, so it lapses while h2 is held. When r's outcome is
    # recorded, the same call sweeps h2 back and claims it again, for this very worker:
    # the stale delivery must go, or h2 would run twice (the first run's result bouncing).
    client = await make_processor(max_workers=0)
    r, h1, h2 = [await client.submit_task(**CHAT) for _ in range(3)]
    backend = Turnstile()
    worker = await make_processor(max_workers=1, backend=backend, prefetch=2,
                                  prefetch_below_s=None, lease_s=1.0)
    assert worker.queue is not None and worker.pool is not None
    pool, renewed, original = worker.pool, asyncio.Event(), worker.queue.renew
    first: list[tuple[str, str]] = []  # h2's first lease: (id, token)
    renewals = 0

    async def renew_but_h2s_first_lease(leases: Any, deadline: float) -> list[str]:
        nonlocal renewals
        first.extend(lease for lease in leases if lease[0] == h2 and not first)
        lost = await original([lease for lease in leases if lease not in first], deadline)
        renewals += 1
        renewed.set()
        return lost

    worker.queue.renew = renew_but_h2s_first_lease  # type: ignore[method-assign]
    launched = watch_launches(worker)
    await wait_until(lambda: backend.started == [r], backend.changed)
    assert held_ids(worker) == [h1, h2]
    await wait_until(lambda: renewals >= 4, renewed)  # > 1 s: h2's first lease has lapsed
    backend.finish(r)
    await wait_until(lambda: [(x.task.task_id, x.task.deliveries) for x in pool.slots.held]
                     == [(h2, 2)], launched)  # the stale hold is gone, the new one kept
    assert backend.started == [r, h1]
    for task_id in (h1, h2):
        backend.finish(task_id)
    for task_id in (r, h1, h2):
        assert (await client.wait_for_task(task_id, timeout=10))["status"] == "completed"
    assert backend.started == [r, h1, h2]
    assert (await client.get_task_status(h2))["deliveries"] == 2  # type: ignore[index]


async def test_a_claim_that_returns_during_stop_is_handed_back_unrun(
        make_processor: MakeProcessor) -> None:
    # No prefetch: the worker's first claim is held up until stop() has begun. What it
    # brings back must not start (the pool is stopping) and goes back to the queue.
    client = await make_processor(max_workers=0)
    ids = [await client.submit_task(**CHAT) for _ in range(2)]
    backend = Turnstile()
    worker = await make_processor(max_workers=2, backend=backend, prefetch=0)
    assert worker.queue is not None
    entered, go, claim = asyncio.Event(), asyncio.Event(), worker.queue.claim

    async def held_up_claim(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await go.wait()
        return await claim(*args, **kwargs)

    worker.queue.claim = held_up_claim  # type: ignore[method-assign]  # before its 1st claim
    await entered.wait()
    stopping = asyncio.create_task(worker.stop(drain_timeout_s=5.0))
    await asyncio.sleep(0)  # one step of stop(): it marks the pool as stopping at once
    assert worker.pool is not None and worker.pool._stopping
    go.set()  # the claim comes back to a stopping pool
    await stopping
    assert backend.started == []
    for task_id in ids:
        record = await client.get_task_status(task_id)
        assert record is not None and record["status"] == "pending"
        # claimed once (deliveries counts claims) and handed back unrun: not held against
        # the delivery limit
        assert record["deliveries"] == 1 and record["handed_back"] == 1
    assert (await client.get_stats())["current_queue_size"] == 2


def watch_releases(proc: AsyncAIProcessor) -> asyncio.Event:
    """An event set each time the pool has given a run's slot back (and filled what it
    would)."""
    assert proc.pool is not None
    pool, released, original = proc.pool, asyncio.Event(), proc.pool._release

    def release(run: Any) -> None:
        original(run)
        released.set()

    pool._release = release  # type: ignore[method-assign]
    return released


async def test_a_held_task_waits_for_a_task_the_latest_claim_saw_ready_ahead_of_it(
        make_processor: MakeProcessor) -> None:
    # a1, a2 run and b, c are held when u1 and u2 (urgent) are submitted. a1's outcome
    # claims u1 and the reply says u2 is ready, ahead of c. With recording stalled, u1 takes
    # a2's slot, and b's slot must wait for u2: c, held since before u1 and u2 were
    # submitted, may not start ahead of a task the worker knows is ready before it.
    client = await make_processor(max_workers=0)
    a1, a2, b, c = [await client.submit_task(**CHAT) for _ in range(4)]
    backend = Turnstile()
    worker = await make_processor(max_workers=2, backend=backend, prefetch=2, prefetch_below_s=None)
    assert worker.pool is not None
    pool = worker.pool
    launched, released = watch_launches(worker), watch_releases(worker)
    await wait_until(lambda: backend.started == [a1, a2], backend.changed)
    assert held_ids(worker) == [b, c]
    urgent = {**CHAT, "priority": TaskPriority.URGENT}
    u1, u2 = [await client.submit_task(**urgent) for _ in range(2)]
    backend.finish(a1)  # b starts at once: the worker's latest claim saw no u yet
    await wait_until(lambda: held_ids(worker) == [u1, c], launched)
    assert backend.started == [a1, a2, b]
    stall = StalledRecording(worker)
    try:
        backend.finish(a2)  # u1 is ahead of u2, the ready head the last claim reported
        await wait_until(lambda: backend.started == [a1, a2, b, u1], backend.changed)
        backend.finish(b)
        await wait_until(lambda: b in pool.running and pool.running[b].released, released)
        assert held_ids(worker) == [c] and backend.started == [a1, a2, b, u1]
        assert pool.slots.slot_open()  # kept for u2
    finally:
        stall.go.set()  # a2's outcome goes, and its claim brings u2 into the open slot
    await wait_until(lambda: backend.started == [a1, a2, b, u1, u2], backend.changed)
    assert held_ids(worker) == [c]
    for task_id in (u1, u2, c):
        backend.finish(task_id)
    for task_id in (a1, a2, b, u1, u2, c):
        assert (await client.wait_for_task(task_id, timeout=10))["status"] == "completed"
    assert backend.started == [a1, a2, b, u1, u2, c] and backend.in_flight.peak == 2


async def test_a_slot_kept_for_a_ready_task_is_filled_when_no_outcome_claims_it(
        make_processor: MakeProcessor) -> None:
    # b is cancelled while running: no outcome follows, so no outcome's claim will fetch
    # u2, known to be ready ahead of the held c. The fetcher claims it instead; u2 starts
    # while u1 still runs, and c starts after.
    client = await make_processor(max_workers=0)
    a1, a2, b, c = [await client.submit_task(**CHAT) for _ in range(4)]
    backend = Turnstile()
    worker = await make_processor(max_workers=2, backend=backend, prefetch=2, prefetch_below_s=None)
    launched = watch_launches(worker)
    await wait_until(lambda: backend.started == [a1, a2], backend.changed)
    urgent = {**CHAT, "priority": TaskPriority.URGENT}
    u1, u2 = [await client.submit_task(**urgent) for _ in range(2)]
    backend.finish(a1)
    await wait_until(lambda: held_ids(worker) == [u1, c], launched)
    assert await client.cancel_task(a2) is True  # its slot goes to u1 (ahead of u2)
    await wait_until(lambda: backend.started == [a1, a2, b, u1], backend.changed)
    assert await client.cancel_task(b) is True  # c may not take its slot: u2 is ahead
    await wait_until(lambda: backend.started == [a1, a2, b, u1, u2], backend.changed)
    assert held_ids(worker) == [c]
    for task_id in (u1, u2, c):
        backend.finish(task_id)
    for task_id in (a1, u1, u2, c):
        assert (await client.wait_for_task(task_id, timeout=10))["status"] == "completed"
    assert backend.started == [a1, a2, b, u1, u2, c] and backend.in_flight.peak == 2


async def test_held_tasks_stay_leased_and_go_back_to_their_place_unrun(
        make_processor: MakeProcessor) -> None:
    # While held, b and c are leased to the worker like the running a. Handed back (stop),
    # they are ready again at their own score, in their order, unleased, with no attempt
    # counted against them (deliveries counts claims, handed_back the returns).
    client = await make_processor(max_workers=0)
    a, b, c = [await client.submit_task(**CHAT) for _ in range(3)]
    assert client.queue is not None
    redis, keys = client.queue.redis, client.queue.keys
    before = {t: await redis.zscore(keys.ready, t) for t in (a, b, c)}
    backend = Turnstile()
    worker = await make_processor(max_workers=1, backend=backend, prefetch=2, prefetch_below_s=None)
    assert worker.pool is not None
    await wait_until(lambda: backend.started == [a], backend.changed)
    assert held_ids(worker) == [b, c]
    for run in worker.pool.slots.held:
        record = await client.get_task_status(run.task.task_id)
        assert record is not None and record["status"] == "processing"
        assert await redis.hget(keys.task(run.task.task_id), "lease") == run.token
        assert await redis.zscore(keys.inflight, run.task.task_id) is not None
    await worker.stop(drain_timeout_s=0.05)  # a is cut short; all three go back
    assert await redis.zrange(keys.ready, 0, -1) == [a, b, c]
    for task_id in (a, b, c):
        assert await redis.zscore(keys.ready, task_id) == before[task_id]
        assert await redis.zscore(keys.inflight, task_id) is None
        record = await client.get_task_status(task_id)
        assert record is not None and record["status"] == "pending"
        assert record["retry_count"] == 0
        assert record["deliveries"] == 1 and record["handed_back"] == 1
        assert await redis.hget(keys.task(task_id), "lease") == ""
    assert backend.started == [a]
