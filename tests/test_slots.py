"""The slot ledger on its own: places, slots, holds and claims in flight."""

from __future__ import annotations

import pytest

from chatroom_async.slots import Run, SlotLedger
from chatroom_async.task import AITask, TaskPriority


def run(task_id: str, priority: TaskPriority = TaskPriority.NORMAL, token: str = "t") -> Run:
    return Run(AITask(task_id=task_id, user_id=1, request_type="chat_completion",
                      request_data={}, priority=priority), token)


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


async def test_holds_are_most_urgent_first_then_in_claim_order() -> None:
    ledger = SlotLedger(concurrency=1, prefetch=4)
    for held in (run("n1"), run("u1", TaskPriority.URGENT), run("n2"),
                 run("u2", TaskPriority.URGENT)):
        ledger.hold(held)
    assert [r.task.task_id for r in ledger.held] == ["u1", "u2", "n1", "n2"]
    assert all(r.held for r in ledger.held) and ledger.free() == 1
    first = ledger.next_held()
    assert first is not None and first.task.task_id == "u1"
    assert not ledger.drop_held("n1", token="other") and ledger.drop_held("n1")
    assert [r.task.task_id for r in ledger.take_held()] == ["u2", "n2"]
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
