"""A bad record never costs good tasks: every script checks a task's key and fields before it
writes anything about it, sets an unusable entry aside with the reason, and goes on."""

from __future__ import annotations

import pytest

from chatroom_async.store.queue import CorruptRecordError, Outcome, TaskQueue
from tests.store.test_queue import SPEC, add

GOOD = ("g1", "g2", "g3")


def record(**fields: str) -> dict[str, str]:
    base = {"spec": SPEC, "priority": "2", "max_retries": "3", "score": "0",
            "status": "pending", "retry_count": "0", "deliveries": "0"}
    return {**base, **fields}


async def plant(queue: TaskQueue, task_id: str, kind: str) -> None:
    """A ready entry whose record is of the given kind of bad."""
    key = queue.keys.task(task_id)
    if kind == "string":
        await queue.redis.set(key, "garbage")
    elif kind == "list":
        await queue.redis.rpush(key, "x")
    elif kind == "no spec":
        await queue.redis.hset(key, mapping={"status": "pending", "priority": "2"})
    else:
        field, value = kind.split("=")
        await queue.redis.hset(key, mapping=record(**{field: value}))
    await queue.redis.zadd(queue.keys.ready, {task_id: -1})


BAD_KINDS = ["string", "list", "no spec", "max_retries=three", "deliveries=1.5",
             "retry_count=x", "priority=urgent", "priority=9999999999999999", "rate_limited=?"]


@pytest.mark.parametrize("kind", BAD_KINDS)
async def test_a_bad_entry_does_not_cost_the_good_tasks_claimed_with_it(
        queue: TaskQueue, kind: str) -> None:
    await plant(queue, "bad", kind)
    for task_id in GOOD:
        await add(queue, task_id)
    got = await queue.claim(now=0.0, lease_s=5, max_count=10, worker_id="A", extra_deliveries=2)
    assert [c.task_id for c in got.claimed] == list(GOOD)
    assert [c.deliveries for c in got.claimed] == [1, 1, 1]
    [aside] = await queue.garbage()
    assert aside["task_id"] == "bad" and aside["reason"]
    counts = await queue.counts()  # the stats still read, and hold no bad priority
    assert counts.ready_by_priority == {2: 0} and counts.in_flight == 3 and counts.garbage == 1
    if kind not in ("string", "list"):  # a hash of ours: it fails, so a waiter sees an end
        fields = await queue.record("bad")
        assert fields["status"] == "failed" and "CorruptTaskError" in fields["error"]
        assert got.dead == ["bad"] and counts.counters["failed_tasks"] == 1
    else:
        assert got.dead == []


async def test_the_issues_reproduction_string_key_in_the_ready_set(queue: TaskQueue) -> None:
    await queue.redis.set(queue.keys.task("bad"), "garbage")
    await queue.redis.zadd(queue.keys.ready, {"bad": -1})
    for task_id in GOOD:
        await add(queue, task_id)
    got = await queue.claim(now=0.0, lease_s=5, max_count=1, worker_id="A", extra_deliveries=2)
    assert got.claimed == [] and got.remaining == 1  # only the bad one was popped
    got = await queue.claim(now=0.0, lease_s=5, max_count=5, worker_id="A", extra_deliveries=2)
    assert [c.task_id for c in got.claimed] == list(GOOD)
    assert await queue.garbage() == [{"task_id": "bad",
                                      "reason": "the task record is a string, not a hash"}]


@pytest.mark.parametrize("kind", ["string", "score=soon", "priority=high"])
async def test_a_bad_entry_waiting_for_a_retry_is_set_aside_when_due(
        queue: TaskQueue, kind: str) -> None:
    await plant(queue, "bad", kind)
    await queue.redis.zrem(queue.keys.ready, "bad")
    await queue.redis.zadd(queue.keys.delayed, {"bad": 1.0})
    await add(queue, "g1")
    got = await queue.claim(now=2.0, lease_s=5, max_count=5, worker_id="A", extra_deliveries=2)
    assert [c.task_id for c in got.claimed] == ["g1"]
    assert [g["task_id"] for g in await queue.garbage()] == ["bad"]
    assert await queue.redis.zcard(queue.keys.delayed) == 0


async def test_an_expired_lease_of_a_key_gone_bad_is_set_aside(queue: TaskQueue) -> None:
    for task_id in GOOD:
        await add(queue, task_id)
    await queue.claim(now=0.0, lease_s=1, max_count=5, worker_id="A", extra_deliveries=2)
    await queue.redis.delete(queue.keys.task("g2"))
    await queue.redis.rpush(queue.keys.task("g2"), "overwritten")
    await queue.redis.hset(queue.keys.task("g3"), "priority", "x")
    got = await queue.claim(now=5.0, lease_s=1, max_count=5, worker_id="B", extra_deliveries=2)
    assert [c.task_id for c in got.claimed] == ["g1"] and got.claimed[0].deliveries == 2
    assert sorted(g["task_id"] for g in await queue.garbage()) == ["g2", "g3"]


async def test_a_hand_written_depth_or_counter_does_not_break_the_counts(
        queue: TaskQueue) -> None:
    await add(queue, "g1")
    await queue.redis.hset(queue.keys.depth, mapping={"urgent": "1", "3": "lots"})
    await queue.redis.hset(queue.keys.stats, "completed_tasks", "many")
    counts = await queue.counts()
    assert counts.ready_by_priority == {2: 1} and "completed_tasks" not in counts.counters
    await queue.redis.hset(queue.keys.depth, "2", "x")  # the claim's count replaces it
    await queue.claim(now=0.0, lease_s=5, max_count=5, worker_id="A", extra_deliveries=2)
    assert (await queue.counts()).ready_by_priority == {2: 0}


async def test_reading_a_key_of_another_type_is_a_corrupt_record_error(queue: TaskQueue) -> None:
    await queue.redis.set(queue.keys.task("bad"), "garbage")
    with pytest.raises(CorruptRecordError, match="'bad'"):
        await queue.record("bad")
    assert await queue.cancel("bad", 0.0) == (0, "corrupt", {})


async def test_finish_renew_release_skip_a_key_gone_bad_and_do_the_rest(queue: TaskQueue) -> None:
    for task_id in GOOD:
        await add(queue, task_id)
    got = await queue.claim(now=0.0, lease_s=30, max_count=5, worker_id="A", extra_deliveries=2)
    c1, c2, c3 = got.claimed
    await queue.redis.delete(queue.keys.task("g1"))
    await queue.redis.set(queue.keys.task("g1"), "overwritten")
    leases = [(c.task_id, c.token) for c in got.claimed]
    assert await queue.renew(leases, 60.0) == ["g1"]
    recorded = await queue.finish(
        [Outcome(c.task_id, c.token, "completed", {"status": "completed"}, "")
         for c in (c1, c2)])
    assert recorded == [False, True]
    await queue.redis.hset(queue.keys.task("g3"), "priority", "x")
    assert await queue.release([(c1.task_id, c1.token, ""), (c3.task_id, c3.token, "")]) == 0
    assert (await queue.record("g2"))["status"] == "completed"


async def test_release_hands_back_the_good_ones_of_a_batch(queue: TaskQueue) -> None:
    for task_id in GOOD:
        await add(queue, task_id)
    got = await queue.claim(now=0.0, lease_s=30, max_count=5, worker_id="A", extra_deliveries=2)
    await queue.redis.set(queue.keys.task("g2"), "overwritten")
    assert await queue.release([(c.task_id, c.token, "") for c in got.claimed]) == 2
    again = await queue.claim(now=1.0, lease_s=30, max_count=5, worker_id="B",
                              extra_deliveries=2)
    assert [c.task_id for c in again.claimed] == ["g1", "g3"]
