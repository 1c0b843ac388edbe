"""Request validation at submit (the diagram's 请求验证): reject bad requests before queueing.

Pure functions over plain values. A rejected request raises `ValidationError` naming the
field at fault; nothing reaches Redis. The chapter checked the request type only inside the
worker, after queueing and retrying; that was defect 6.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import ValidationError
from .task import TaskPriority

#: The required fields of each request type the processor accepts.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "chat_completion": ("message",),
    "content_summary": ("content",),
    "translation": ("text", "target_language"),
}

# Always used with fullmatch: `$` would also match before a final newline.
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?")
# No ":" (the key separator): a task id can never name another key of the namespace.
_TASK_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX_USER_ID = 2**63 - 1
#: The longest string user id (characters).
MAX_USER_ID_LENGTH = 128
# A string user id: printable text, no control characters or line separators.
_USER_ID = re.compile(rf"[^\x00-\x1f\x7f-\x9f\u2028\u2029]{{1,{MAX_USER_ID_LENGTH}}}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What submit accepts.

    Attributes:
        max_request_bytes: size of `request_data` as JSON, in bytes.
        max_timeout_s: the largest per-task timeout.
        max_retries_limit: the largest `max_retries`.
    """

    max_request_bytes: int = 64 * 1024
    max_timeout_s: float = 3600.0
    max_retries_limit: int = 10


@dataclass(frozen=True, slots=True)
class ValidRequest:
    """A request that passed validation, normalised."""

    user_id: int | str
    request_type: str
    request_data: dict[str, Any]
    priority: TaskPriority
    timeout: float
    max_retries: int


def validate_request(
    *,
    user_id: object,
    request_type: object,
    request_data: object,
    priority: object = TaskPriority.NORMAL,
    timeout: object = 30.0,
    max_retries: object = 3,
    limits: Limits = Limits(),
) -> ValidRequest:
    """Check one request; return it normalised or raise `ValidationError`."""
    uid = _check_user_id(user_id)
    rtype = _check_request_type(request_type)
    data = _check_request_data(rtype, request_data, limits)
    try:
        prio = TaskPriority.parse(priority)
    except ValueError as exc:
        raise ValidationError(str(exc), field="priority") from None
    tmo = _check_timeout(timeout, limits)
    retries = _check_max_retries(max_retries, limits)
    return ValidRequest(uid, rtype, data, prio, tmo, retries)


def validate_namespace(namespace: object) -> str:
    """A key namespace: 1-64 characters of ASCII letters, digits and `_.-`. No `:` (nor in
    a task id): "{ns}:" then starts the keys of one namespace only, and no namespace's task
    key can be another's ready set or match another's scan pattern."""
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise ValidationError(f"namespace must be 1-64 characters of A-Z a-z 0-9 _ . - (no "
                              f"':', which separates the parts of a key), got {namespace!r}",
                              field="namespace")
    return namespace


def validate_task_id(task_id: object) -> str:
    """A caller-chosen task id: 1-128 characters of ASCII letters, digits and `_.-` (no
    `:`, the separator of key names, so an id can never name another key)."""
    if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
        raise ValidationError(f"task_id must be 1-128 characters of A-Z a-z 0-9 _ . -, "
                              f"got {task_id!r}", field="task_id")
    return task_id


def _check_user_id(user_id: object) -> int | str:
    if isinstance(user_id, str):
        if not _USER_ID.fullmatch(user_id) or not user_id.strip():
            raise ValidationError(
                f"a string user_id must be 1-{MAX_USER_ID_LENGTH} characters of text, not "
                f"blank, without control characters, got {user_id[:MAX_USER_ID_LENGTH + 1]!r}",
                field="user_id")
        return user_id
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        raise ValidationError(f"user_id must be an int or a str, got {type(user_id).__name__}",
                              field="user_id")
    if not 0 < user_id <= _MAX_USER_ID:
        raise ValidationError(f"user_id must be between 1 and 2**63-1, got {user_id}",
                              field="user_id")
    return user_id


def _check_request_type(request_type: object) -> str:
    if not isinstance(request_type, str) or request_type not in REQUIRED_FIELDS:
        known = ", ".join(REQUIRED_FIELDS)
        raise ValidationError(f"unknown request_type {request_type!r}; expected one of: {known}",
                              field="request_type")
    return str(request_type)


def _check_request_data(rtype: str, data: object, limits: Limits) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError(f"request_data must be a dict, got {type(data).__name__}",
                              field="request_data")
    try:
        raw = orjson.dumps(data)
    except TypeError as exc:
        raise ValidationError(f"request_data is not JSON-serialisable: {exc}",
                              field="request_data") from None
    where = _non_finite(data, "request_data")
    if where is not None:  # JSON has no NaN or infinity: orjson would store null
        raise ValidationError(f"{where} is not a finite number (NaN and infinities cannot be "
                              "stored as JSON)", field="request_data")
    if len(raw) > limits.max_request_bytes:
        raise ValidationError(
            f"request_data is {len(raw)} bytes as JSON; the limit is {limits.max_request_bytes}",
            field="request_data")
    for name in REQUIRED_FIELDS[rtype]:
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"{rtype} needs a non-empty string request_data[{name!r}]",
                                  field=f"request_data.{name}")
    if rtype == "translation" and not _LANGUAGE.fullmatch(data["target_language"]):
        raise ValidationError(
            f"target_language must be a language code like 'en' or 'zh-CN', "
            f"got {data['target_language']!r}", field="request_data.target_language")
    copied: dict[str, Any] = orjson.loads(raw)  # the queue never shares the caller's dict
    return copied


def _non_finite(value: object, path: str) -> str | None:
    """The path of the first NaN or infinity in a JSON-like value, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{path}[{key!r}]")
        if found is not None:
            return found
    return None


def _check_timeout(timeout: object, limits: Limits) -> float:
    if (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
            or not math.isfinite(timeout) or not 0 < timeout <= limits.max_timeout_s):
        raise ValidationError(
            f"timeout must be a number of seconds in (0, {limits.max_timeout_s}], got {timeout!r}",
            field="timeout")
    return float(timeout)


def _check_max_retries(max_retries: object, limits: Limits) -> int:
    if (not isinstance(max_retries, int) or isinstance(max_retries, bool)
            or not 0 <= max_retries <= limits.max_retries_limit):
        raise ValidationError(
            f"max_retries must be an int in [0, {limits.max_retries_limit}], got {max_retries!r}",
            field="max_retries")
    return max_retries
