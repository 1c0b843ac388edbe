"""Bad input gets a clear error and queues nothing; a bad record costs no good task; a
provider's rate limit does not fail chats under the documented defaults."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import orjson
import pytest

from chatroom_async import (
    AITask,
    AsyncAIProcessor,
    FunctionBackend,
    ProcessorSettings,
    RateLimitError,
    SimulatedAIBackend,
    ValidationError,
)
from chatroom_async.clock import LoopClock
from chatroom_async.events import envelope, message_json
from chatroom_async.simulation.vtime import run_virtual
from chatroom_async.store.keys import Keys
from chatroom_async.validation import validate_request, validate_task_id
from chatroom_async.worker.pool import make_worker_id
from tests.conftest import MakeProcessor

CHAT = {"user_id": 1, "request_type": "chat_completion", "request_data": {"message": "hi"}}


@pytest.mark.parametrize("request_type", [["chat_completion"], {"a": 1}, {1, 2}])
def test_an_unhashable_request_type_is_a_validation_error(request_type: Any) -> None:
    with pytest.raises(ValidationError) as info:
        validate_request(user_id=1, request_type=request_type, request_data={"message": "x"})
    assert info.value.field == "request_type"


@pytest.mark.parametrize("task_id", ["abc\n", "x:ready", "a:b", "a b", "", "é", "x" * 129])
def test_task_ids_are_matched_whole_and_cannot_name_another_key(task_id: str) -> None:
    with pytest.raises(ValidationError, match="task_id"):
        validate_task_id(task_id)


@pytest.mark.parametrize("language", ["en\n", "zh-CN\n", "e", "english"])
def test_a_target_language_is_matched_whole(language: str) -> None:
    with pytest.raises(ValidationError, match="target_language"):
        validate_request(user_id=1, request_type="translation",
                         request_data={"text": "hi", "target_language": language})


@pytest.mark.parametrize("namespace", ["a:b", "ns\n", "a*", "", "x" * 65, "聊天"])
def test_a_namespace_cannot_alias_another_namespaces_keys(namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        Keys(namespace)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["top", "nested", "list"])
def test_nan_and_infinities_in_request_data_are_rejected(value: float, where: str) -> None:
    data: dict[str, Any] = {"message": "hi"}
    if where == "top":
        data["temperature"] = value
    elif where == "nested":
        data["options"] = {"a": {"b": value}}
    else:
        data["weights"] = [1.0, value]
    with pytest.raises(ValidationError, match="not a finite number") as info:
        validate_request(user_id=1, request_type="chat_completion", request_data=data)
    assert info.value.field == "request_data"


@pytest.mark.parametrize("user_id", ["alice", "550e8400-e29b-41d4-a716-446655440000", "张三",
                                     "x" * 128])
def test_string_user_ids_are_accepted(user_id: str) -> None:
    assert validate_request(user_id=user_id, request_type="chat_completion",
                            request_data={"message": "x"}).user_id == user_id


@pytest.mark.parametrize("user_id", ["", "   ", "a\nb", "tab\there", "x" * 129, b"alice", 2.0])
def test_bad_user_ids_are_rejected(user_id: Any) -> None:
    with pytest.raises(ValidationError) as info:
        validate_request(user_id=user_id, request_type="chat_completion",
                         request_data={"message": "x"})
    assert info.value.field == "user_id"


async def test_a_string_user_id_goes_through_the_queue_as_given(
        make_processor: MakeProcessor) -> None:
    seen: list[Any] = []

    async def echo(request: Any) -> dict[str, Any]:
        seen.append(request.user_id)
        return {"response": "ok"}

    proc = await make_processor(max_workers=1, backend=FunctionBackend(echo))
    task_id = await proc.submit_task("alice", "chat_completion", {"message": "hi"})
    final = await proc.wait_for_task(task_id, timeout=10)
    assert final["user_id"] == "alice" and seen == ["alice"]


def test_an_envelope_stays_json_whatever_the_origin() -> None:
    origin = 'host"with\\quotes\n-1'
    task = AITask(task_id="t", user_id="u", request_type="chat_completion", request_data={})
    message = orjson.loads(message_json([envelope("task_started", task, origin=origin, ts=0.0)]))
    assert message[0]["origin"] == origin and message[0]["type"] == "task_started"
    worker = make_worker_id(__import__("random").Random(1), 'evil"host:name', 7)
    assert worker.startswith("evil_host_name-7-")


async def test_a_published_outcome_stays_json_whatever_the_origin(
        make_processor: MakeProcessor) -> None:
    proc = await make_processor(max_workers=1)
    assert proc.pool is not None and proc.redis is not None
    pubsub = proc.redis.pubsub()
    await pubsub.subscribe(proc.keys.events)
    proc.bus.origin = 'a"b\\c'  # what a worker id with quotes would have made
    task_id = await proc.submit_task(**CHAT)
    await proc.wait_for_task(task_id, timeout=10)
    async with asyncio.timeout(10):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                payload = orjson.loads(message["data"])
                done = [e for e in payload if e["type"] == "task_completed"]
                if done:
                    break
    assert done[0]["origin"] == 'a"b\\c'
    await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_the_issues_reproduction_a_worker_runs_the_good_tasks(
        make_processor: MakeProcessor) -> None:
    client = await make_processor(max_workers=0)
    assert client.redis is not None
    await client.redis.set(client.keys.task("bad"), "garbage")
    await client.redis.zadd(client.keys.ready, {"bad": -1})
    ids = [await client.submit_task(**CHAT) for _ in range(3)]
    worker = await make_processor(max_workers=4)
    finals = [await worker.wait_for_task(task_id, timeout=10) for task_id in ids]
    assert [f["status"] for f in finals] == ["completed"] * 3
    stats = await worker.get_stats()
    assert stats["garbage"] == 1 and stats["current_queue_size"] == 0


async def test_a_non_numeric_priority_never_breaks_the_stats(
        make_processor: MakeProcessor) -> None:
    client = await make_processor(max_workers=0)
    assert client.redis is not None
    task_id = await client.submit_task(**CHAT)
    await client.redis.hset(client.keys.task(task_id), "priority", "urgent!")
    good = await client.submit_task(**CHAT)
    worker = await make_processor(max_workers=2)
    assert (await worker.wait_for_task(good, timeout=10))["status"] == "completed"
    bad = await worker.wait_for_task(task_id, timeout=10)
    assert bad["status"] == "failed" and bad["error_type"] == "CorruptTaskError"
    stats = await worker.get_stats()
    assert stats["completed_tasks"] == 1 and stats["failed_tasks"] == 1
    await client.redis.hset(client.keys.depth, "urgent!", "1")  # as the old claim wrote it
    assert set((await client.get_stats())["queue_depth"]) == {"urgent", "high", "normal", "low"}


async def test_status_of_a_key_of_another_type_is_a_corrupt_record(
        make_processor: MakeProcessor) -> None:
    client = await make_processor(max_workers=0)
    assert client.redis is not None
    await client.redis.rpush(client.keys.task("listy"), "x")
    status = await client.get_task_status("listy")
    assert status is not None and status["status"] == "failed"
    assert status["error_type"] == "CorruptTaskError" and "listy" in status["error_message"]
    assert await client.cancel_task("listy") is False
    assert (await client.wait_for_task("listy", timeout=5))["status"] == "failed"


def test_twenty_chats_on_twenty_slots_against_the_default_simulated_api_all_complete() -> None:
    """The README's worker (`--concurrency 20`, the default simulated backend, which takes 5
    calls at a time and turns the rest away with 429/1302): every chat completes."""

    async def main() -> tuple[list[dict[str, Any]], Any]:
        clock = LoopClock(1_767_225_600.0)
        backend = SimulatedAIBackend.from_profile("realistic", seed=0, clock=clock)
        async with AsyncAIProcessor(max_workers=20, backend=backend, clock=clock, seed=0,
                                    settings=ProcessorSettings()) as proc:
            # fixed ids: the simulated outcomes are drawn by (task id, attempt), so the run replays
            ids = [await proc.submit_task(1, "chat_completion", {"message": f"你好 {i}"},
                                          task_id=f"chat-{i}")
                   for i in range(20)]
            finals = [await proc.wait_for_task(task_id, timeout=600) for task_id in ids]
        return finals, backend.stats()

    finals, stats = run_virtual(main)
    assert [f["status"] for f in finals] == ["completed"] * 20
    assert stats.errors.get("concurrency_limit", 0) > 0  # the limit was met, and waited out
    assert stats.peak_in_flight == 5


async def test_rate_limits_retry_on_their_own_budget_then_fail(
        make_processor: MakeProcessor) -> None:
    from chatroom_async import RetryPolicy

    calls: list[int] = []

    async def limited(request: Any) -> dict[str, Any]:
        calls.append(request.attempt)
        raise RateLimitError("busy", retry_after=0.01)

    proc = await make_processor(max_workers=1, backend=FunctionBackend(limited),
                                retry=RetryPolicy(base_s=0.01, cap_s=0.02,
                                                  rate_limit_retries=3))
    task_id = await proc.submit_task(**CHAT, max_retries=1)
    final = await proc.wait_for_task(task_id, timeout=10)
    assert final["status"] == "failed" and final["error_type"] == "RateLimitError"
    # 3 on the rate limits' budget (not the task's retries), then its one; every attempt
    # has its own number
    assert calls == [1, 2, 3, 4, 5] and final["retry_count"] == 1 and final["deliveries"] == 5


async def test_stop_logs_one_line_with_the_drain_and_hand_back_counts(
        make_processor: MakeProcessor, caplog: pytest.LogCaptureFixture) -> None:
    from tests.conftest import Gate, wait_until

    gate = Gate()
    proc = await make_processor(max_workers=2, backend=gate)
    for _ in range(2):
        await proc.submit_task(**CHAT)
    await wait_until(lambda: len(gate.started) == 2, gate.entered)
    with caplog.at_level(logging.INFO, logger="chatroom_async"):
        await proc.stop(drain_timeout_s=0.05)
    [line] = [r.getMessage() for r in caplog.records if "stopped:" in r.getMessage()]
    assert line.endswith("stopped: 0 running tasks ended during the drain, 2 handed back to "
                         "the queue")
