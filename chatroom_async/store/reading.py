"""Reading what is in Redis when it may not be what the package wrote: counts edited by
hand, a record's score, a key of another type, an entry of the garbage list. One bad value
is skipped or reported, never a reason for a whole read to fail."""

from __future__ import annotations

import math

import orjson


class CorruptRecordError(ValueError):
    """A task's key holds something the package cannot read as a task record."""


def number(raw: object) -> float | None:
    """A counter's value, or None when it is not a finite number (written by hand)."""
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def count(raw: object) -> int:
    """A count as the package writes it (an integer >= 0); 0 when absent or not one."""
    return int(raw) if isinstance(raw, str) and raw.isdigit() else 0


def int_counts(raw: dict[str, str]) -> dict[int, int]:
    """Ready tasks per priority; a field or count that is not an integer is skipped, so
    no single bad value can break the statistics."""
    counts: dict[int, int] = {}
    for priority, n in raw.items():
        try:
            counts[int(priority)] = max(0, int(n))
        except (TypeError, ValueError):
            continue
    return counts


def score(raw: str) -> float:
    """A ready-set score as claim.lua returns it (Redis's text for a double, "inf" and
    "-inf" included); anything else sorts first."""
    try:
        return float(raw)
    except (TypeError, ValueError):
        return float("-inf")


def garbage_entry(raw: str | bytes) -> dict[str, str]:
    """One entry of the garbage list: `{"task_id", "reason"}` (claim.lua writes JSON)."""
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        entry = None
    if isinstance(entry, dict):
        return {str(k): str(v) for k, v in entry.items()}
    text = raw.decode() if isinstance(raw, bytes) else raw
    return {"task_id": text, "reason": "unknown"}
