from __future__ import annotations

import io

from chatroom_async.demo import REQUESTS, run_demo


async def test_demo_runs_every_request_and_prints_results() -> None:
    out = io.StringIO()
    assert await run_demo(out) == 0
    text = out.getvalue()
    assert "rejected at submit" in text
    assert text.count("status=completed") == len(REQUESTS) - 1
    assert text.count("status=cancelled") == 1
    assert "streaming" in text  # progress events were shown
    assert "completed_tasks=5" in text and "cancelled_tasks=1" in text
