"""The whole offline path, browser protocol to HTTP provider, as `scripts/chat-offline.sh`
runs it: `chatroom-async serve --backend openai` against `chatroom-async sim-server`, ordered
by a scheduler class given on the command line (exercise 2's reference answer here; a
student names their own)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
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


async def test_the_chat_room_shows_what_a_students_handler_pushes(procs: Procs,
                                                                 namespace: str) -> None:
    # Exercise 1 in the browser: `serve --handler` streams the handler's delta frames.
    web = await procs.web(None, namespace, workers=2, extra=(
        "--handler", "solutions.streaming:StreamingResponseHandler"))
    client = await ChatClient.connect(web.ws_url("bob"))
    task_id = await client.chat("请解释一下合并推送", ref="1")
    final = await client.wait_for(lambda: client.ended(task_id), timeout=60)
    assert final["type"] == "task_completed"
    events = client.events(task_id)
    pushed = [e for e in events if e["type"] == "task_progress"]
    assert len(pushed) > 1  # the answer arrived in pieces, as the handler pushed them
    assert reply_text(events) == final["task"]["result"]["response"]
    await client.close()


async def test_a_handler_that_is_not_one_is_refused_in_one_line() -> None:
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatroom_async", "serve", "--handler", "solutions.scheduling:"
        "IntelligentTaskScheduler", stderr=asyncio.subprocess.PIPE)
    _, err = await done.communicate()
    assert done.returncode == 2
    assert err.decode().strip().count("\n") == 0 and "handle_streaming_response" in err.decode()


async def test_the_untouched_stub_handler_fails_the_reply(procs: Procs, namespace: str) -> None:
    # Proof the handler is in the path: the stub raises NotImplementedError, and the page
    # is told the reply failed (after the retries a bug in a backend gets).
    web = await procs.web(None, namespace, workers=2, extra=(
        "--handler", "exercises.streaming:StreamingResponseHandler"))
    client = await ChatClient.connect(web.ws_url("carol"))
    task_id = await client.chat("你好", ref="1")
    final = await client.wait_for(lambda: client.ended(task_id), timeout=60)
    assert final["type"] == "task_failed"
    assert "NotImplementedError" in json.dumps(final["task"], ensure_ascii=False)
    await client.close()
