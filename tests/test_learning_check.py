"""The checks of notebook 10 pass right answers and fail the stubs and typical wrong ones.

The notebook itself runs under nbval with the stubs only (its answers are blank), so this
is where a right answer is shown to pass each check.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "notebooks"))

import learning_check as lc  # noqa: E402


def outcome(item: int) -> bool | None:
    return lc.board[lc.ITEMS[item - 1]]


async def test_prediction_blank_right_and_wrong() -> None:
    measured = await lc.measure_sync_async()
    assert measured == {"sync": 0.5, "async": 5.0}
    lc.check_prediction(None, 5.0, measured)
    assert outcome(1) is None
    lc.check_prediction(5.0, 5.0, measured)
    assert outcome(1) is False
    lc.check_prediction(0.55, 4.5, measured)
    assert outcome(1) is True


async def stub(p: Any, messages: list[str]) -> list[str]:
    return []


async def one_by_one(p: Any, messages: list[str]) -> list[str]:
    out = []
    for m in messages:
        task_id = await p.submit_task(1, "chat_completion", {"message": m})
        out.append((await p.wait_for_task(task_id, timeout=60))["result"]["response"])
    return out


async def completion_order(p: Any, messages: list[str]) -> list[str]:
    ids = [await p.submit_task(1, "chat_completion", {"message": m}) for m in messages]
    return [(await f)["result"]["response"]
            for f in asyncio.as_completed([p.wait_for_task(t, timeout=60) for t in ids])]


async def right(p: Any, messages: list[str]) -> list[str]:
    ids = [await p.submit_task(1, "chat_completion", {"message": m}) for m in messages]
    finals = await asyncio.gather(*(p.wait_for_task(t, timeout=60) for t in ids))
    return [f["result"]["response"] for f in finals]


async def broken(p: Any, messages: list[str]) -> list[str]:
    raise KeyError("response")


@pytest.mark.parametrize(("fn", "ok"), [(stub, False), (one_by_one, False),
                                        (completion_order, False), (broken, False),
                                        (right, True)])
async def test_ask_all(fn: Any, ok: bool) -> None:
    await lc.check_ask_all(fn)
    assert outcome(3) is ok


def test_classification() -> None:
    lc.check_classification({name: True for name in lc.ERRORS})
    assert outcome(4) is False
    lc.check_classification({name: cls.retryable for name, cls in lc.ERRORS.items()})
    assert outcome(4) is True


@pytest.mark.parametrize(("workers", "ok"), [(5, False), (16, True), (40, False)])
async def test_design(workers: int, ok: bool, capsys: pytest.CaptureFixture[str]) -> None:
    await lc.check_design(workers)
    assert outcome(2) is ok
    if workers == 40:
        assert "429" in capsys.readouterr().out


@pytest.mark.parametrize(("knee", "ok"), [(16, True), (6, False)])
async def test_knee(knee: int, ok: bool) -> None:
    await lc.check_knee(knee)
    assert outcome(5) is ok


@pytest.mark.parametrize(("stdout", "stderr", "code", "ok"), [
    (json.dumps({"earned": 200, "total": 200, "exercises": {}}), "", 0, True),
    (json.dumps({"earned": 30, "total": 200, "exercises": {}}), "", 1, False),
    ("", "usage: ... invalid choice: 'grade'", 2, None),
])
def test_grade_is_read_or_explained(monkeypatch: pytest.MonkeyPatch, stdout: str, stderr: str,
                                    code: int, ok: bool | None) -> None:
    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert cmd[-2:] == ["grade", "--json"]
        return subprocess.CompletedProcess(cmd, code, stdout, stderr)
    monkeypatch.setattr(lc.subprocess, "run", fake_run)
    lc.read_grade()
    assert outcome(6) is ok
