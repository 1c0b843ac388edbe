"""The Redis layer on its own: leases, reclaim, dead letters, garbage. Times are passed in,
so lease expiry is tested without waiting."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from chatroom_async.store.keys import Keys
from chatroom_async.store.queue import Outcome, TaskQueue

SPEC = '{"user_id":1,"request_type":"chat_completion","request_data":{"message":"hi"},' \
       '"timeout":30.0,"created_at":0.0}'


async def add(queue: TaskQueue, task_id: str, score: float = 1.0, max_retries: int = 0) -> None:
    assert await queue.enqueue(task_id, SPEC, 2, max_retries, score)


def done(task_id: str, token: str, text: str) -> Outcome:
    return Outcome(task_id, token, "completed",
                   {"status": "completed", "result": f'{{"response":"{text}"}}'},
                   event_json='{"event":"x"}')


async def test_enqueue_refuses_a_duplicate_id(queue: TaskQueue) -> None:
    await add(queue, "a")
    assert not await queue.enqueue("a", SPEC, 2, 0, 1.0)
    counts = await queue.counts()
    assert counts.ready_by_priority == {2: 1} and counts.counters["total_tasks"] == 1


async def test_claim_orders_by_score_and_batches(queue: TaskQueue) -> None:
    for task_id, score in (("c", 3.0), ("a", 1.0), ("b", 2.0)):
        await add(queue, task_id, score)
    got = await queue.claim(now=100.0, lease_s=10, max_count=2, worker_id="w1",
                            extra_deliveries=2)
    assert [c.task_id for c in got.claimed] == ["a", "b"]
    assert got.next_due == 110.0  # the earliest lease deadline
    counts = await queue.counts()
    assert counts.in_flight == 2 and counts.ready_by_priority == {2: 1}


async def test_a_claim_reports_the_ready_head_it_leaves_in_the_ready_sets_order(
        queue: TaskQueue) -> None:
    # Equal scores go by id, as Redis orders them; the head is what a worker holding tasks
    # compares them with (worker/pool.py). Scores are the ready set's, not the record's.
    for task_id, score in (("d", 3.0), ("c", 2.0), ("b", 2.0), ("a", 1.5)):
        await add(queue, task_id, score)
    await queue.redis.hset(queue.keys.task("a"), "score", "99")  # only the ready set counts
    got = await queue.claim(now=0.0, lease_s=10, max_count=2, worker_id="w1",
                            extra_deliveries=2)
    assert [(c.task_id, c.score) for c in got.claimed] == [("a", 1.5), ("b", 2.0)]
    assert got.head == (2.0, "c") and got.remaining == 1
    outcome = done("a", got.claimed[0].token, "x")
    recorded, more = await queue.finish_and_claim([outcome], publish=False, now=1.0,
                                                  lease_s=10, max_count=1, worker_id="w1",
                                                  extra_deliveries=2)
    assert recorded == [True] and [c.task_id for c in more.claimed] == ["c"]
    assert more.head == (3.0, "d")
    last = await queue.claim(now=2.0, lease_s=10, max_count=5, worker_id="w1",
                             extra_deliveries=2)
    assert [c.task_id for c in last.claimed] == ["d"] and last.head is None
    empty = await queue.claim(now=3.0, lease_s=10, max_count=0, worker_id="w1",
                              extra_deliveries=2)
    assert empty.claimed == [] and empty.head is None and empty.remaining == 0


async def test_the_in_flight_sets_anchor_is_never_counted_nor_due(queue: TaskQueue) -> None:
    await add(queue, "a")
    got = await queue.claim(now=100.0, lease_s=10, max_count=5, worker_id="w1",
                            extra_deliveries=2)
    assert (await queue.counts()).in_flight == 1
    assert await queue.finish([done("a", got.claimed[0].token, "x")]) == [True]
    # Only the anchor is left: nothing in flight, nothing due, nothing to reclaim.
    assert await queue.redis.zcard(queue.keys.inflight) == 1
    assert (await queue.counts()).in_flight == 0
    later = await queue.claim(now=1e12, lease_s=10, max_count=5, worker_id="w2",
                              extra_deliveries=2)
    assert later.claimed == [] and later.next_due is None
    assert (await queue.counts()).counters.get("reclaimed_tasks", 0) == 0


async def test_the_in_flight_set_stays_in_the_skiplist_encoding(real_redis: Redis,
                                                                 namespace: str) -> None:
    """The point of the anchor (see lua/claim.lua): a real Redis would otherwise keep a
    set of fewer than 129 short members in the listpack encoding."""
    try:
        limit = (await real_redis.config_get("zset-max-listpack-value")).get(
            "zset-max-listpack-value")
    except ResponseError:  # CONFIG disabled on this server
        limit = None
    if limit is None or int(limit) >= 72:  # the anchor is 72 bytes
        pytest.skip(f"this server keeps members of up to {limit} bytes in a listpack")
    queue = TaskQueue(real_redis, Keys(namespace))
    try:
        await add(queue, "a")
        await queue.claim(now=100.0, lease_s=10, max_count=5, worker_id="w1",
                          extra_deliveries=2)
        assert await real_redis.object("encoding", queue.keys.inflight) == "skiplist"
    finally:
        await queue.purge()
        await queue.close()


async def test_expired_lease_is_reclaimed_and_the_stale_worker_cannot_overwrite(
        queue: TaskQueue) -> None:
    await add(queue, "t")
    first = (await queue.claim(now=0.0, lease_s=5, max_count=1, worker_id="A",
                               extra_deliveries=2)).claimed[0]
    # Before the deadline, nobody else gets it.
    assert not (await queue.claim(now=4.0, lease_s=5, max_count=1, worker_id="B",
                                  extra_deliveries=2)).claimed
    second = (await queue.claim(now=6.0, lease_s=5, max_count=1, worker_id="B",
                                extra_deliveries=2)).claimed[0]
    assert second.deliveries == 2 and second.token != first.token
    assert await queue.finish([done("t", first.token, "stale")]) == [False]
    assert await queue.finish([done("t", second.token, "fresh")]) == [True]
    record = await queue.record("t")
    assert record["status"] == "completed" and "fresh" in record["result"]
    assert (await queue.counts()).counters["reclaimed_tasks"] == 1


async def test_renew_keeps_the_lease_and_reports_lost_ones(queue: TaskQueue) -> None:
    await add(queue, "t")
    c = (await queue.claim(now=0.0, lease_s=5, max_count=1, worker_id="A",
                           extra_deliveries=2)).claimed[0]
    assert await queue.renew([("t", c.token)], deadline=20.0) == []
    assert not (await queue.claim(now=10.0, lease_s=5, max_count=1, worker_id="B",
                                  extra_deliveries=2)).claimed
    assert await queue.renew([("t", "someone-else:1")], deadline=30.0) == ["t"]


async def test_too_many_deliveries_go_to_the_dead_letter_list(queue: TaskQueue) -> None:
    await add(queue, "t", max_retries=0)  # 1 attempt + 1 extra delivery allowed
    now = 0.0
    for _ in range(2):
        assert (await queue.claim(now=now, lease_s=1, max_count=1, worker_id="A",
                                  extra_deliveries=1)).claimed
        now += 2.0
    result = await queue.claim(now=now, lease_s=1, max_count=1, worker_id="A",
                               extra_deliveries=1)
    assert result.claimed == [] and result.dead == ["t"]
    record = await queue.record("t")
    assert record["status"] == "failed" and "DeliveryLimitExceeded" in record["error"]
    assert await queue.dead_letters() == ["t"]


async def test_a_ready_entry_without_record_is_set_aside(queue: TaskQueue) -> None:
    await queue.redis.zadd(queue.keys.ready, {"ghost": 0.5})
    await add(queue, "real")
    got = await queue.claim(now=0.0, lease_s=5, max_count=5, worker_id="A", extra_deliveries=2)
    assert [c.task_id for c in got.claimed] == ["real"]
    assert await queue.garbage() == [{"task_id": "ghost", "reason": "no task record"}]


async def test_retry_waits_in_the_delayed_set_until_due(queue: TaskQueue) -> None:
    await add(queue, "t", max_retries=3)
    c = (await queue.claim(now=0.0, lease_s=5, max_count=1, worker_id="A",
                           extra_deliveries=2)).claimed[0]
    retry = Outcome("t", c.token, "retry", {"status": "retrying", "retry_count": "1"},
                    event_json="{}", due=3.0)
    assert await queue.finish([retry]) == [True]
    early = await queue.claim(now=2.0, lease_s=5, max_count=1, worker_id="A",
                              extra_deliveries=2)
    assert early.claimed == [] and early.next_due == 3.0
    late = await queue.claim(now=3.5, lease_s=5, max_count=1, worker_id="A", extra_deliveries=2)
    assert [c.task_id for c in late.claimed] == ["t"] and late.claimed[0].retry_count == "1"


async def test_release_returns_tasks_counted_as_handed_back(queue: TaskQueue) -> None:
    await add(queue, "t")
    c = (await queue.claim(now=0.0, lease_s=5, max_count=1, worker_id="A",
                           extra_deliveries=2)).claimed[0]
    assert await queue.release([("t", c.token, ""), ("t", "wrong:9", "")]) == 1
    record = await queue.record("t")
    # deliveries counts claims, as documented; the hand-back is counted on its own
    assert record["status"] == "pending" and record["deliveries"] == "1"
    assert record["handed_back"] == "1"
    counts = await queue.counts()
    assert counts.in_flight == 0 and counts.counters["handed_back"] == 1


async def test_hand_backs_are_not_held_against_the_delivery_limit(queue: TaskQueue) -> None:
    await add(queue, "t")  # max_retries 0, so 1 + 0 extra deliveries are allowed
    for n in range(1, 4):
        [c] = (await queue.claim(now=0.0, lease_s=5, max_count=1, worker_id="A",
                                 extra_deliveries=0)).claimed
        assert c.deliveries == n and c.handed_back == n - 1
        assert await queue.release([("t", c.token, "")]) == 1


async def test_purge_deletes_only_this_namespace(queue: TaskQueue) -> None:
    await add(queue, "t")
    await queue.redis.set("someone-else:key", "keep")
    try:
        assert await queue.purge() >= 3
        assert await queue.redis.get("someone-else:key") == "keep"
    finally:
        await queue.redis.delete("someone-else:key")


async def test_batch_enqueue_survives_a_server_that_lost_its_scripts() -> None:
    from chatroom_async.store.embedded import embedded_redis
    from chatroom_async.store.keys import Keys

    redis = embedded_redis()
    queue = TaskQueue(redis, Keys("t"))
    try:
        assert await queue.enqueue_many([("a", SPEC, 2, 0, 1.0)]) == [True]
        await redis.script_flush()  # the embedded server only: never flush a shared one
        assert await queue.enqueue_many([("b", SPEC, 2, 0, 2.0), ("a", SPEC, 2, 0, 3.0)]) == [
            True, False]
        assert (await queue.counts()).ready_by_priority == {2: 2}
    finally:
        await queue.close()
        await redis.aclose()


async def test_an_idle_wait_outlasts_the_clients_socket_timeout(
        real_redis_short_timeout: Redis) -> None:
    # redis-py 8 gives clients a 5 s socket timeout by default; an idle worker's blocking
    # wait is longer, and must end as a wait, not as a TimeoutError.
    from chatroom_async.store.keys import Keys

    queue = TaskQueue(real_redis_short_timeout, Keys(f"t-{uuid.uuid4().hex[:8]}"))
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await queue.wait_for_work("w1", 0.8)  # longer than the 0.3 s socket timeout
        assert loop.time() - began >= 0.75
        await queue.poke("w1")  # and a wake-up still ends it at once
        async with asyncio.timeout(0.3):
            await queue.wait_for_work("w1", 30.0)
    finally:
        await queue.purge()
        await queue.close()


async def test_a_claim_behind_a_wait_runs_when_the_wait_ends_on_the_servers_clock(
        queue: TaskQueue) -> None:
    # The claim is sent behind the blocking wait, so the time it was sent at means nothing:
    # it runs on the server's clock plus the offset it is given, and its lease is as long
    # as asked from then (an offset of -1000 s makes the claim's time easy to tell apart).
    pending = asyncio.create_task(queue.wait_then_claim(
        worker_id="w1", block_s=10.0, offset=-1000.0, lease_s=30.0, max_count=2,
        extra_deliveries=2))
    await add(queue, "a")  # its wake-up token ends the wait; the claim then finds it
    got = await asyncio.wait_for(pending, 10)
    assert got is not None and [c.task_id for c in got.claimed] == ["a"]
    assert got.server_time is not None and abs(got.server_time - time.time()) < 5
    assert got.now == pytest.approx(got.server_time - 1000.0, abs=1e-3)
    deadline = await queue.redis.zscore(queue.keys.inflight, "a")
    assert deadline == pytest.approx(got.now + 30.0, abs=1e-3)
    started = await queue.redis.hget(queue.keys.task("a"), "started_at")
    assert float(started) == pytest.approx(got.now, abs=1e-3)
    # A plain claim reports the time it was given, and the server's.
    await add(queue, "b")
    plain = await queue.claim(now=50.0, lease_s=10, max_count=1, worker_id="w2",
                              extra_deliveries=2)
    assert plain.now == 50.0 and plain.server_time is not None
    assert await queue.redis.zscore(queue.keys.inflight, "b") == 60.0


async def test_claims_and_finishes_keep_a_workers_held_count_in_their_own_step(
        queue: TaskQueue) -> None:
    for n in range(8):
        await add(queue, f"t{n}", float(n))
    await queue.register_worker("w1", 2, now=0.0, deadline=100.0)

    async def shown() -> tuple[int, int]:
        counts = await queue.counts(now=1.0)
        return counts.in_flight, counts.held

    # Five claimed, two of them start at once: the other three count as held.
    got = (await queue.claim(now=0.0, lease_s=10, max_count=5, worker_id="w1",
                             extra_deliveries=2, starts=2)).claimed
    assert len(got) == 5 and await shown() == (2, 3)
    # The first run ended and a held task took its slot: the call that records the end
    # counts that one in flight (-1 held) and claims one more, held (starts=0).
    first = got[0]
    recorded, more = await queue.finish_and_claim(
        [done(first.task_id, first.token, "x")], publish=False, now=1.0, lease_s=10,
        max_count=1, worker_id="w1", extra_deliveries=2, held=-1, starts=0)
    assert recorded == [True] and len(more.claimed) == 1
    assert await shown() == (2, 3)
    assert await queue.finish([done(got[1].task_id, got[1].token, "y")], publish=False,
                              worker_id="w1", held=-1) == [True]
    assert await shown() == (2, 2)
    # Without `starts` a claim starts everything it takes: the count is not touched.
    await queue.claim(now=1.0, lease_s=10, max_count=1, worker_id="w1", extra_deliveries=2)
    assert await shown() == (3, 2)
    # A count set whole (after a failed call), and a count written by hand replaced.
    await queue.claim(now=1.0, lease_s=10, max_count=1, worker_id="w1", extra_deliveries=2,
                      starts=0, reset_held=True)
    assert await queue.redis.hget(queue.keys.held, "w1") == "1"
    await queue.redis.hset(queue.keys.held, "w1", "junk")
    await add(queue, "u1", 9.0)
    await add(queue, "u2", 9.0)
    await queue.claim(now=1.0, lease_s=10, max_count=2, worker_id="w1", extra_deliveries=2,
                      starts=0)
    assert await queue.redis.hget(queue.keys.held, "w1") == "2"
    await queue.adjust_held("w1", -2)
    assert await queue.redis.hget(queue.keys.held, "w1") == "0"
