"""The slot ledger on its own: places, slots, holds and claims in flight."""

from __future__ import annotations

import pytest

from chatroom_async.task import AITask, TaskPriority
from chatroom_async.worker.slots import Run, SlotLedger


def run(task_id: str, score: float = 0.0, token: str = "t") -> Run:
    return Run(AITask(task_id=task_id, user_id=1, request_type="chat_completion",
                      request_data={}, priority=TaskPriority.NORMAL), token, score)


async def test_a_run_keeps_its_place_after_its_slot_until_it_settles() -> None:
    ledger = SlotLedger(concurrency=2, prefetch=1)
    a = run("a")
    ledger.occupy()
    assert ledger.free() == 2 and ledger.slot_open()
    ledger.occupy()
    assert not ledger.slot_open()
    assert ledger.release(a) and not ledger.release(a)  # once only
    assert ledger.slot_open() and ledger.free() == 1  # the slot, not the place
    assert ledger.settle(a) and not ledger.settle(a)
    assert ledger.free() == 2 and ledger.freed.is_set()


async def test_holds_follow_the_ready_sets_order_then_claim_order() -> None:
    ledger = SlotLedger(concurrency=1, prefetch=4)
    for held in (run("b1", 2.0), run("a1", 1.0), run("b2", 2.0), run("a2", 1.0)):
        ledger.hold(held)  # a later claim (a*) scored ahead goes ahead; ties keep their order
    assert [r.task.task_id for r in ledger.held] == ["a1", "a2", "b1", "b2"]
    assert all(r.held for r in ledger.held) and ledger.free() == 1
    first = ledger.next_held()
    assert first is not None and first.task.task_id == "a1"
    assert not ledger.drop_held("b1", token="other") and ledger.drop_held("b1")
    assert [r.task.task_id for r in ledger.take_held()] == ["a2", "b2"]
    assert ledger.next_held() is None and ledger.free() == 5


async def test_a_claim_in_flight_holds_its_places_even_when_it_fails() -> None:
    ledger = SlotLedger(concurrency=3, prefetch=0)
    with ledger.claim(2):
        assert ledger.free() == 1
    assert ledger.free() == 3
    with pytest.raises(ConnectionError), ledger.claim(3):
        assert ledger.free() == 0
        raise ConnectionError("server gone")
    assert ledger.free() == 3 and ledger.freed.is_set()


async def test_a_held_task_is_not_taken_while_a_ready_task_is_known_ahead_of_it() -> None:
    ledger = SlotLedger(concurrency=1, prefetch=2)
    for held in (run("c", 2.0), run("b", 2.0)):
        ledger.hold(held)
    assert ledger.next_held((1.0, "z")) is None  # a better score is ready
    assert ledger.next_held((2.0, "a")) is None  # the same score, an id Redis puts first
    assert [r.task.task_id for r in ledger.held] == ["b", "c"]  # nothing taken
    first = ledger.next_held((2.0, "bb"))  # ready behind b: b goes
    assert first is not None and first.task.task_id == "b"
    last = ledger.next_held(None)  # nothing known ready
    assert last is not None and last.task.task_id == "c" and ledger.next_held() is None
