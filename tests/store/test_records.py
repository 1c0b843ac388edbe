"""The record's fields have one owner: `store/records.py` lists every one of them."""

from __future__ import annotations

import re
from pathlib import Path

from chatroom_async.store import records
from chatroom_async.store.records import (
    FIELDS,
    completed_fields,
    failed_fields,
    retrying_fields,
)

LUA = Path(records.__file__).parent / "lua"


def _arguments(call: str) -> list[str]:
    """Split a Lua argument list on its top-level commas (not those inside quotes)."""
    args, current, quote = [], "", ""
    for ch in call:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ",":
            args.append(current.strip())
            current = ""
            continue
        current += ch
    return [*args, current.strip()]


def _lua_hset_fields() -> set[str]:
    """Field names the scripts write: HSET key 'f1', v1, 'f2', v2... (every other argument,
    as long as it is a literal; `unpack(...)` passes the Python builders' fields)."""
    names: set[str] = set()
    for script in LUA.glob("*.lua"):
        if script.name == "limit.lua":  # the provider limiter's hash, not a task record
            continue
        for call in re.findall(r"'HSET',(.*?)\)\s*$", script.read_text("utf-8"),
                               flags=re.M | re.S):
            args = _arguments(call)[1:]  # past the key
            names.update(a.strip("'") for a in args[0::2] if re.fullmatch(r"'[a-z_]+'", a))
    return names


def test_every_field_the_scripts_write_is_documented() -> None:
    written = _lua_hset_fields()
    assert {"status", "lease", "started_at", "spec"} <= written  # the pattern still matches
    assert written - FIELDS == set()


def test_every_field_is_in_the_module_table() -> None:
    doc = records.__doc__ or ""
    for field in FIELDS:
        assert re.search(rf"^\s+{field}\s", doc, flags=re.M), field


def test_outcome_builders_write_only_documented_fields() -> None:
    built = {**completed_fields(1.0, "{}", cached=True), **failed_fields(2.0, "{}"),
             **retrying_fields(1, "{}")}
    assert set(built) <= FIELDS
    assert completed_fields(1.0, "{}", cached=False).get("cached") is None
    assert retrying_fields(3, "{}")["retry_count"] == "3"
