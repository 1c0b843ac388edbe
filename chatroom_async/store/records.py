"""The task record as stored in its Redis hash, and back. Pure functions.

A record keeps the immutable request in one JSON field (`spec`) and the mutable state in
small fields the Lua scripts update one by one (`status`, `retry_count`, `lease`...).
"""

from __future__ import annotations

import orjson

from ..task import AITask, TaskPriority, TaskStatus


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
            user_id=int(data["user_id"]),
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
    return task


def _float(value: str | None) -> float | None:
    return float(value) if value else None
