from __future__ import annotations

import math

import pytest

from chatroom_async import Limits, TaskPriority, ValidationError
from chatroom_async.validation import validate_request, validate_task_id

OK = {"user_id": 1, "request_type": "chat_completion", "request_data": {"message": "hi"}}


@pytest.mark.parametrize("rtype,data", [
    ("chat_completion", {"message": "你好"}),
    ("content_summary", {"content": "long text"}),
    ("translation", {"text": "你好", "target_language": "en"}),
    ("translation", {"text": "hi", "target_language": "zh-CN"}),
])
def test_valid_requests(rtype: str, data: dict[str, str]) -> None:
    valid = validate_request(user_id=3, request_type=rtype, request_data=data,
                             priority="urgent", timeout=5)
    assert valid.request_data == data and valid.request_data is not data
    assert valid.priority is TaskPriority.URGENT and valid.timeout == 5.0


@pytest.mark.parametrize("change,field", [
    ({"request_type": "image_generation"}, "request_type"),
    ({"request_data": {"msg": "hi"}}, "request_data.message"),
    ({"request_data": {"message": "   "}}, "request_data.message"),
    ({"request_data": {"message": 42}}, "request_data.message"),
    ({"request_data": ["message"]}, "request_data"),
    ({"request_data": {"message": "hi", "blob": object()}}, "request_data"),
    ({"request_type": "translation", "request_data": {"text": "x"}},
     "request_data.target_language"),
    ({"request_type": "translation", "request_data": {"text": "x", "target_language": "english!"}},
     "request_data.target_language"),
    ({"user_id": 0}, "user_id"),
    ({"user_id": -5}, "user_id"),
    ({"user_id": ""}, "user_id"),
    ({"user_id": 1.0}, "user_id"),
    ({"user_id": True}, "user_id"),
    ({"user_id": 2**64}, "user_id"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": -1.0}, "timeout"),
    ({"timeout": math.inf}, "timeout"),
    ({"timeout": math.nan}, "timeout"),
    ({"timeout": 10_000}, "timeout"),
    ({"priority": 9}, "priority"),
    ({"priority": "asap"}, "priority"),
    ({"max_retries": -1}, "max_retries"),
    ({"max_retries": 99}, "max_retries"),
])
def test_invalid_requests_name_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_request(**{**OK, **change})  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(info.value)


def test_size_limit() -> None:
    limits = Limits(max_request_bytes=100)
    validate_request(**OK, limits=limits)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="bytes"):
        validate_request(user_id=1, request_type="chat_completion",
                         request_data={"message": "x" * 200}, limits=limits)


def test_task_id_rules() -> None:
    assert validate_task_id("sim-000001") == "sim-000001"
    for bad in ("", "has space", "x" * 129, 5, "a*b"):
        with pytest.raises(ValidationError):
            validate_task_id(bad)
