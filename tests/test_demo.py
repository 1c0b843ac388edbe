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


def test_the_console_script_runs_the_demo() -> None:
    """What `bash scripts/demo.sh` ends with: the installed `chatroom-async demo`."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("chatroom-async")
    done = subprocess.run([str(script), "demo"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "completed_tasks=5" in done.stdout and "cancelled_tasks=1" in done.stdout
