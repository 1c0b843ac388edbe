"""The event bus's side of other processes' events: what it builds and delivers, and what
it skips because nobody in this process would receive it."""

from __future__ import annotations

import asyncio

import pytest

from chatroom_async import AITask, TaskStatus
from chatroom_async.events import EventBus, event_json, message_json
from chatroom_async.keys import Keys

KEYS = Keys("events-test")


def task(task_id: str, status: TaskStatus) -> AITask:
    return AITask(task_id=task_id, user_id=7, request_type="chat_completion",
                  request_data={"message": "hi"}, status=status)


def message(*events: tuple[str, AITask], origin: str = "elsewhere") -> str:
    return message_json(origin, [event_json(name, t) for name, t in events])


@pytest.fixture
def bus() -> EventBus:
    bus = EventBus("here")
    bus._keys = KEYS  # what connect() sets; the tests feed messages without a server
    return bus


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the tasks the bus rebuilt from messages."""
    ids: list[str] = []
    from_dict = AITask.from_dict

    def counting(data: dict[str, object]) -> AITask:
        ids.append(str(data["task_id"]))
        return from_dict(data)

    monkeypatch.setattr(AITask, "from_dict", staticmethod(counting))
    return ids


async def test_with_nobody_listening_nothing_is_parsed(bus: EventBus, built: list[str]) -> None:
    bus._on_message(KEYS.events, message(("task_started", task("a", TaskStatus.PROCESSING))))
    bus._on_message(KEYS.events, "not json at all")  # never even parsed
    assert built == []


async def test_only_events_someone_receives_are_built(bus: EventBus, built: list[str]) -> None:
    started: list[AITask] = []
    bus.add_callback("task_started", started.append)
    waiter = bus.waiter("b")
    bus._on_message(KEYS.events, message(
        ("task_completed", task("a", TaskStatus.COMPLETED)),  # no callback, no waiter
        ("task_started", task("b", TaskStatus.PROCESSING)),  # a callback
        ("task_completed", task("b", TaskStatus.COMPLETED)),  # a waiter
    ))
    assert built == ["b", "b"]
    assert [t.task_id for t in started] == ["b"]
    finished = await asyncio.wait_for(waiter, 1)
    assert finished.task_id == "b" and finished.status is TaskStatus.COMPLETED


async def test_own_events_are_skipped(bus: EventBus, built: list[str]) -> None:
    got: list[AITask] = []
    bus.add_callback("task_completed", got.append)
    bus._on_message(KEYS.events, message(("task_completed", task("a", TaskStatus.COMPLETED)),
                                         origin="here"))
    assert built == [] and got == []
    bus._on_message(KEYS.events, message(("task_completed", task("a", TaskStatus.COMPLETED))))
    assert built == ["a"] and [t.task_id for t in got] == ["a"]
