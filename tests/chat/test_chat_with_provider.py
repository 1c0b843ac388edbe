"""The whole offline path, browser protocol to HTTP provider, as `scripts/chat-offline.sh`
runs it: `chatroom-async serve --backend openai` against `chatroom-async sim-server`, ordered
by a scheduler class given on the command line (exercise 2's reference answer here; a
student names their own)."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from pathlib import Path

from tests.browser.conftest import free_port
from tests.chat.conftest import ChatClient, Proc, Procs, _read_until, reply_text

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "chat-offline.sh"


async def test_the_chat_room_streams_from_an_http_provider(procs: Procs) -> None:
    port, chat_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        "bash", str(SCRIPT), "--scheduler", "solutions.scheduling:IntelligentTaskScheduler",
        env=dict(os.environ, SIM_PORT=str(port), CHAT_PORT=str(chat_port)),
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
    procs.started.append(web := Proc(process, chat_port))
    assert process.stderr is not None
    await _read_until(process.stderr, b"Uvicorn running on")
    web.keep_reading(process.stderr)
    client = await ChatClient.connect(web.ws_url("alice"))
    task_id = await client.chat("用两句话介绍异步处理", ref="1")
    final = await client.wait_for(lambda: client.ended(task_id), timeout=60)
    assert final["type"] == "task_completed"
    events = client.events(task_id)
    assert sum(1 for e in events if e["type"] == "task_progress") > 1  # streamed, not whole
    assert reply_text(events) == final["task"]["result"]["response"]
    stats = await asyncio.to_thread(lambda: json.loads(urllib.request.urlopen(
        f"http://127.0.0.1:{port}/sim/stats", timeout=10).read()))
    assert stats["backend"]["completed"] == 1  # the reply came over HTTP from sim-server
    await client.close()
