from __future__ import annotations

import copy

import pytest

from chatroom_async import AITask, TaskPriority, TaskStatus


def sample() -> AITask:
    return AITask(task_id="t1", user_id=7, request_type="translation",
                  request_data={"text": "你好", "target_language": "en", "nested": {"a": [1, 2]}},
                  priority=TaskPriority.URGENT, status=TaskStatus.FAILED, created_at=1.5,
                  started_at=2.0, completed_at=3.25, result={"x": 1}, error_message="boom",
                  retry_count=2, max_retries=5, timeout=12.0, error_type="ServerError",
                  deliveries=3, cached=True)


def test_round_trip_dict_and_json_is_lossless() -> None:
    task = sample()
    assert AITask.from_dict(task.to_dict()) == task
    assert AITask.from_json(task.to_json()) == task


def test_from_dict_does_not_mutate_its_input() -> None:
    data = sample().to_dict()
    before = copy.deepcopy(data)
    rebuilt = AITask.from_dict(data)
    assert data == before
    rebuilt.request_data["nested"]["a"].append(3)
    assert data["request_data"]["nested"]["a"] == [1, 2]


def test_to_dict_uses_plain_values() -> None:
    data = sample().to_dict()
    assert data["priority"] == 4 and data["status"] == "failed"
    assert type(data["priority"]) is int


def test_from_dict_rejects_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown AITask fields"):
        AITask.from_dict({**sample().to_dict(), "surprise": 1})
    with pytest.raises(ValueError):
        AITask.from_dict({**sample().to_dict(), "status": "exploded"})


def test_priority_parse() -> None:
    assert TaskPriority.parse("high") is TaskPriority.HIGH
    assert TaskPriority.parse(4) is TaskPriority.URGENT
    for bad in (True, 0, 5, "soon", None):
        with pytest.raises(ValueError):
            TaskPriority.parse(bad)


def test_finished_states() -> None:
    assert {s for s in TaskStatus if s.finished} == {
        TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}
