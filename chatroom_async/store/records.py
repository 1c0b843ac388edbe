"""The task record as stored in its Redis hash (`Keys.task(id)`), and back. Pure functions.

This module owns the record's fields: the table below is every field there is, and the
Python that writes outcomes builds its fields here (`completed_fields`, `failed_fields`,
`retrying_fields`); the Lua scripts write the fields named beside them and no others
(`tests/store/test_records.py` checks both). The immutable request is one JSON field
(`spec`); the mutable state is small fields the scripts update one by one.

    field        value                                   written by
    spec         JSON: user_id, request_type, request_data, timeout, created_at
                                                         enqueue.lua
    priority     TaskPriority as an int ("0".."3")       enqueue.lua
    max_retries  int                                     enqueue.lua
    score        float: its place in the ready set (the scheduler's), for a retry or a
                 hand-back to come back to the same place      enqueue.lua
    retry_count  int: retries scheduled so far           enqueue.lua, retrying_fields
    deliveries   int: claims so far (a worker took it; each claim is an attempt, and the
                 attempt number of its events)       enqueue.lua, claim.lua
    rate_limited int: attempts a provider's rate limit (429) ended; they retry on a
                 budget of their own and add to the delivery limit   rate_limited_fields
    handed_back  int: claims a stopping worker gave back unfinished (not held against the
                 delivery limit)                         release.lua
    status       TaskStatus value                        every script; the outcome builders
    lease        the holder's token, '' when none        claim.lua, finish.lua, release.lua,
                                                         cancel.lua
    started_at   float seconds: the latest claim         claim.lua
    completed_at float seconds: when it ended            finish/cancel/claim.lua (dead)
    result       JSON: the AI's result                   completed_fields
    cached       "1" when the result came from the cache completed_fields
    error        JSON {error_type, error_message, ...}: why the task is retrying or failed;
                 '' once it completed or was cancelled (no stale error)
                                                         failed_fields, retrying_fields,
                                                         completed_fields, cancel.lua,
                                                         claim.lua (DeliveryLimitExceeded)
    partial      the text streamed so far by attempt `partial_attempt` (kept after a failure
                 or a cancel)                            emit.lua
    partial_attempt  int: the attempt `partial` belongs to   emit.lua
"""

from __future__ import annotations

import orjson

from ..task import AITask, TaskPriority, TaskStatus

#: Every field a record can hold (the table above).
FIELDS = frozenset({"spec", "priority", "max_retries", "score", "retry_count", "deliveries",
                    "status", "lease", "started_at", "completed_at", "result", "cached",
                    "error", "rate_limited", "handed_back", "partial", "partial_attempt"})


def completed_fields(now: float, result_json: str, *, cached: bool) -> dict[str, str]:
    """The fields a successful attempt records."""
    fields = {"status": TaskStatus.COMPLETED.value, "completed_at": repr(now),
              "result": result_json, "error": ""}  # an earlier attempt's error is past
    if cached:
        fields["cached"] = "1"
    return fields


def failed_fields(now: float, error_json: str) -> dict[str, str]:
    """The fields of a task that failed for good."""
    return {"status": TaskStatus.FAILED.value, "completed_at": repr(now), "error": error_json}


def retrying_fields(retry_count: int, error_json: str) -> dict[str, str]:
    """The fields of a task waiting in the delayed set for its next attempt."""
    return {"status": TaskStatus.RETRYING.value, "retry_count": str(retry_count),
            "error": error_json}


def spec_json(task: AITask) -> str:
    """The immutable part of a task, as stored in the `spec` field."""
    return orjson.dumps({
        "user_id": task.user_id,
        "request_type": task.request_type,
        "request_data": task.request_data,
        "timeout": task.timeout,
        "created_at": task.created_at,
    }).decode()


def task_from_spec(task_id: str, spec: str, priority: str, max_retries: str,
                   retry_count: str, deliveries: int) -> AITask:
    """Rebuild a claimed task from what the claim script returns.

    Raises:
        ValueError: when the spec does not parse (a corrupt record).
    """
    try:
        data = orjson.loads(spec)
        return AITask(
            task_id=task_id,
            user_id=_user_id(data["user_id"]),
            request_type=str(data["request_type"]),
            request_data=dict(data["request_data"]),
            priority=TaskPriority(int(priority)),
            status=TaskStatus.PROCESSING,
            created_at=float(data["created_at"]),
            retry_count=int(retry_count),
            max_retries=int(max_retries),
            timeout=float(data["timeout"]),
            deliveries=int(deliveries),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"corrupt task record {task_id!r}: {type(exc).__name__}: {exc}") from None


def task_from_record(task_id: str, fields: dict[str, str]) -> AITask:
    """Rebuild the full task from its hash (HGETALL).

    Raises:
        ValueError: when the record is corrupt.
    """
    task = task_from_spec(task_id, fields["spec"], fields.get("priority", "2"),
                          fields.get("max_retries", "0"), fields.get("retry_count", "0"),
                          int(fields.get("deliveries", "0")))
    task.status = TaskStatus(fields.get("status", "pending"))
    task.started_at = _float(fields.get("started_at"))
    task.completed_at = _float(fields.get("completed_at"))
    if fields.get("result"):
        task.result = orjson.loads(fields["result"])
    if fields.get("error"):
        error = orjson.loads(fields["error"])
        task.error_type = error.get("error_type")
        task.error_message = error.get("error_message")
    task.cached = fields.get("cached") == "1"
    task.handed_back = int(fields.get("handed_back") or 0)
    if task.status is not TaskStatus.COMPLETED and "partial" in fields:
        task.partial_text = fields["partial"]
        task.partial_attempt = int(fields.get("partial_attempt") or 0)
    return task


def rate_limited_fields(rate_limited: int, error_json: str) -> dict[str, str]:
    """The fields of a task a rate limit turned away, waiting for its next attempt (its
    `retry_count` stays: see `RetryPolicy.rate_limit_delay`)."""
    return {"status": TaskStatus.RETRYING.value, "rate_limited": str(rate_limited),
            "error": error_json}


def _user_id(value: object) -> int | str:
    """An int user id, or a string one as it was given."""
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return value
    raise ValueError(f"user_id is {value!r}, not an int or a str")


def _float(value: str | None) -> float | None:
    return float(value) if value else None
