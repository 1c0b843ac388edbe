"""The task model: the chapter's `TaskStatus`, `TaskPriority` and `AITask`, made exact.

Pure data, no I/O. `AITask.to_dict`/`from_dict` round-trip losslessly through JSON and never
mutate their input (the chapter's `from_dict` rewrote the caller's dict in place).
"""

from __future__ import annotations

import enum
import operator
from dataclasses import dataclass, field, fields
from typing import Any

import orjson


class TaskStatus(enum.StrEnum):
    """Where a task is in its life. The values are the strings stored in Redis and JSON."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RETRYING = "retrying"

    @property
    def finished(self) -> bool:
        """True for the three terminal states: completed, failed, cancelled."""
        return self in _FINISHED


_FINISHED = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


class TaskPriority(enum.IntEnum):
    """The chapter's four priorities; a higher value runs first."""

    LOW = 1
    NORMAL = 2
    HIGH = 3
    URGENT = 4

    @classmethod
    def parse(cls, value: object) -> TaskPriority:
        """Accept a TaskPriority, its value (1-4) or its name ("high", "URGENT").

        Raises:
            ValueError: for anything else (bools included).
        """
        if isinstance(value, TaskPriority):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        raise ValueError(f"not a task priority: {value!r} (use 1-4 or LOW/NORMAL/HIGH/URGENT)")


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(slots=True)
class AITask:
    """One AI request and everything known about its processing.

    The chapter's fields, plus `deliveries` (how many times a worker claimed it: each claim
    is an attempt, numbered 1, 2...; more than `retry_count + handed_back + 1` means a
    worker died holding it), `handed_back` (claims a stopping worker gave back unfinished;
    not held against the delivery limit), `error_type` (the error's class name, so a client
    can tell a timeout from a content filter; set only while the task is retrying or failed),
    `cached` (answered from the response cache), `progress` (the streamed chunk, on
    `task_progress` events) and `partial_text` (the text streamed so far by attempt
    `partial_attempt`: while it runs, and kept when that attempt failed or was cancelled).
    """

    task_id: str
    user_id: int | str  # an int >= 1 or a string id (see `submit_task`)
    request_type: str
    request_data: dict[str, Any]
    priority: TaskPriority = TaskPriority.NORMAL
    status: TaskStatus = TaskStatus.PENDING
    created_at: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    result: dict[str, Any] | None = None
    error_message: str | None = None
    retry_count: int = 0
    max_retries: int = 3
    timeout: float = 30.0
    error_type: str | None = None
    deliveries: int = 0
    cached: bool = False
    progress: dict[str, Any] | None = field(default=None, compare=False)
    handed_back: int = 0
    partial_text: str | None = None
    partial_attempt: int = 0

    def to_dict(self, *, copy: bool = True) -> dict[str, Any]:
        """A JSON-safe dict: enums become their values.

        Args:
            copy: deep-copy the nested dicts (the default), so the caller may change the
                result freely; False shares them, for a dict that is serialised at once.
        """
        data = dict(zip(_FIELD_NAMES, _field_values(self), strict=True))
        data["priority"] = int(self.priority)
        data["status"] = self.status.value
        if copy:
            for name in ("request_data", "result", "progress"):
                data[name] = _copy_json(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AITask:
        """Build a task from `to_dict` output (or a subset of it); `data` is not modified.

        Raises:
            ValueError: on unknown keys or values of the wrong kind.
        """
        unknown = set(data) - _FIELD_SET
        if unknown:
            raise ValueError(f"unknown AITask fields: {sorted(unknown)}")
        kwargs = {k: v for k, v in data.items()}
        kwargs["priority"] = TaskPriority.parse(data.get("priority", TaskPriority.NORMAL))
        kwargs["status"] = TaskStatus(data.get("status", TaskStatus.PENDING))
        kwargs["request_data"] = _copy_json(data.get("request_data") or {})
        for key in ("result", "progress"):
            kwargs[key] = _copy_json(data.get(key))
        for key in ("started_at", "completed_at"):
            kwargs[key] = _opt_float(data.get(key))
        kwargs["created_at"] = float(data.get("created_at", 0.0))
        kwargs["timeout"] = float(data.get("timeout", 30.0))
        return cls(**kwargs)

    def to_json(self) -> bytes:
        """`to_dict` as compact UTF-8 JSON."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> AITask:
        """Inverse of `to_json`."""
        return cls.from_dict(orjson.loads(raw))

    def copy(self, **changes: Any) -> AITask:
        """A shallow copy with some fields replaced (tasks handed to callbacks are copies).

        Written out rather than `dataclasses.replace`, which re-runs `__init__` and costs
        several times more on the worker's hot path.
        """
        unknown = changes.keys() - _FIELD_SET
        if unknown:
            raise TypeError(f"unknown AITask fields: {sorted(unknown)}")
        new = object.__new__(AITask)
        for name, value in zip(_FIELD_NAMES, _field_values(self), strict=True):
            object.__setattr__(new, name, value)
        for name, value in changes.items():
            object.__setattr__(new, name, value)
        return new

    @property
    def processing_time(self) -> float | None:
        """Seconds from start to finish of the last attempt, once finished."""
        if self.started_at is None or self.completed_at is None:
            return None
        return self.completed_at - self.started_at

    @property
    def latency(self) -> float | None:
        """Seconds from submit to finish, once finished."""
        return None if self.completed_at is None else self.completed_at - self.created_at


_FIELD_NAMES = tuple(f.name for f in fields(AITask))
_FIELD_SET = frozenset(_FIELD_NAMES)
_field_values = operator.attrgetter(*_FIELD_NAMES)  # every field's value, as a tuple, in C


def _copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (cheap through orjson)."""
    if value is None:
        return None
    return orjson.loads(orjson.dumps(value))


def status_dict(task: AITask, *, copy: bool = True, partial: bool = True) -> dict[str, Any]:
    """What `get_task_status` returns (and, with `partial=False`, what a lifecycle event
    carries): `to_dict` without the progress field. `copy=False` shares the nested dicts,
    for a dict serialised at once."""
    data = task.to_dict(copy=copy)
    data.pop("progress", None)
    if not partial:
        data.pop("partial_text", None)
        data.pop("partial_attempt", None)
    return data
